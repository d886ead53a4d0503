package processor_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	srclient "github.com/twmb/franz-go/pkg/sr"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/promread"
	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/processor"
	"github.com/esignflow/esignflow/schemas"
)

// The tests of this file are the processing protocol's (DESIGN.md): Redis
// is a cache of what Kafka committed, proved exact per partition before it
// is used, whatever it loses or gains.

// produceAll produces events in order and returns how many.
func (h *harness) produceAll(evs []schemas.EnvelopeEvent) int64 {
	h.t.Helper()
	for _, ev := range evs {
		h.produce(h.eventRecord(ev))
	}
	return int64(len(evs))
}

// Redis put back to an earlier snapshot of itself — what a restart from an
// AOF everysec or RDB file, or a failover to a lagging replica, does —
// keeps the checkpoint that belongs to that snapshot; the processor sees it
// is behind what it committed and restores the partitions from their
// changelog, so no version is published twice and every envelope ends at
// its in-order state.
func TestRedisRollbackIsRestored(t *testing.T) {
	for _, tc := range []struct {
		name string
		// rebalance stops the member before Redis goes back and starts
		// another after: the rollback is caught at assignment, not at the
		// running member's next batch.
		rebalance bool
	}{
		{"under a running member", false},
		{"before a rebalance", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			w := newWorkload(11, 40)
			sr := h.readStatus()
			a := h.start(h.config("a"))
			third := len(w.events) / 3
			n := h.produceAll(w.events[:third])
			h.waitConsumed(n, 60*time.Second)
			old := h.snapshot(t)
			n += h.produceAll(w.events[third : 2*third])
			h.waitConsumed(n, 60*time.Second)
			waitFinal(t, sr, newWorkloadFrom(w.events[:2*third]), 60*time.Second)
			if tc.rebalance {
				if err := a.stop(); err != nil {
					t.Fatal(err)
				}
			}
			h.putBack(t, old)
			if tc.rebalance {
				h.start(h.config("b"))
			}
			h.produceAll(w.events[2*third:])
			waitFinal(t, sr, w, 90*time.Second)
			checkExactlyOnce(t, sr.snapshot(), w.final)
		})
	}
}

// Member b has written Redis and produced a batch whose transaction is not
// committed yet; Redis is flushed; member a joins; b commits. A restore
// that read what was committed before b's commit would miss b's changes,
// and the next events would publish their versions again. The owner of a
// partition restores it, after the stable offset fetch waited for b's
// transaction and once no transaction is open on its changelog partition.
func TestRestoreRacesOpenTransaction(t *testing.T) {
	h := newHarness(t)
	w := newWorkload(12, 40)
	sr := h.readStatus()
	var armed atomic.Bool
	paused, release := make(chan struct{}), make(chan struct{})
	var once, released sync.Once
	cfgB := h.config("b")
	cfgB.Crash = func(p processor.Point) bool {
		if p == processor.AfterProduce && armed.Load() {
			once.Do(func() { close(paused); <-release })
		}
		return false
	}
	h.start(cfgB)
	t.Cleanup(func() { released.Do(func() { close(release) }) }) // before b's own cleanup waits for it
	half := len(w.events) / 2
	n := h.produceAll(w.events[:half])
	h.waitConsumed(n, 60*time.Second)
	armed.Store(true)
	h.produceAll(w.events[half : half+1])
	select {
	case <-paused:
	case <-time.After(60 * time.Second):
		t.Fatal("b never reached its transaction's commit")
	}
	h.redis.Flush(t)
	h.start(h.config("a"))
	// a has asked to join: the group is rebalancing, waiting for b.
	adm := kadm.NewClient(h.prod)
	group := h.kafka.Group("esignflow-processor-events")
	waitFor(t, 60*time.Second, "a joining the group", func() bool {
		gs, err := adm.DescribeGroups(context.Background(), group)
		if err != nil {
			return false
		}
		g, ok := gs[group]
		return ok && g.Err == nil && (g.State == "PreparingRebalance" || len(g.Members) >= 2)
	})
	released.Do(func() { close(release) })
	h.produceAll(w.events[half+1:])
	waitFinal(t, sr, w, 90*time.Second)
	checkExactlyOnce(t, sr.snapshot(), w.final)
}

// Member a stops in the middle of a batch (after applying its first
// chunk) — a frozen process, a long GC pause — and is replaced: b joins
// the group with a's static instance id, as a restarted replica does,
// which fences a out of the group and hands b its partitions; b claims
// them. When a goes on, its next write is refused: Redis is exactly what
// b left.
func TestZombieCannotWriteRedis(t *testing.T) {
	h := newHarness(t)
	w := newWorkload(13, 20)
	sr := h.readStatus()
	paused, release := make(chan struct{}), make(chan struct{})
	var once, released sync.Once
	static := kgo.InstanceID("replica-1")
	cfgA := h.config("a")
	cfgA.ApplyChunk = 1 // a batch's records of one partition make several writes
	cfgA.KafkaOpts = append(cfgA.KafkaOpts, static)
	cfgA.Crash = func(p processor.Point) bool {
		switch p {
		case processor.AfterStore:
			once.Do(func() { close(paused); <-release })
		case processor.Fenced:
			return true // end a here: what it did is what we check
		}
		return false
	}
	n := h.produceAll(w.events)
	a := h.start(cfgA)
	t.Cleanup(func() { released.Do(func() { close(release) }) }) // before a's own cleanup waits for it
	select {
	case <-paused:
	case <-time.After(60 * time.Second):
		t.Fatal("a never applied a chunk")
	}
	t.Logf("%s: a is stuck in its batch with a chunk applied", time.Now().Format("15:04:05.000"))
	cfgB := h.config("b")
	cfgB.KafkaOpts = append(cfgB.KafkaOpts, static)
	h.start(cfgB)
	h.waitConsumed(n, 90*time.Second)
	waitFinal(t, sr, w, 90*time.Second)
	t.Logf("%s: b has processed every event", time.Now().Format("15:04:05.000"))
	before := h.snapshot(t)
	released.Do(func() { close(release) })
	select {
	case err := <-a.done:
		if !errors.Is(err, processor.ErrCrashed) {
			t.Fatalf("a ended with %v, want its batch fenced", err)
		}
		a.done <- nil
	case <-time.After(60 * time.Second):
		t.Fatal("a's next write was not fenced")
	}
	if after := h.snapshot(t); after.String() != before.String() {
		t.Errorf("the zombie changed Redis:\nbefore %s\nafter  %s", before, after)
	}
	checkExactlyOnce(t, sr.snapshot(), w.final)
}

// A restore that meets a record it cannot decode fails, writes no
// checkpoint, and is tried again; the partition is not processed on a
// partial state meanwhile, while the other partitions go on.
func TestRestoreFailsLoudly(t *testing.T) {
	h := newHarness(t)
	w := newWorkload(14, 24)
	sr := h.readStatus()
	reg := prometheus.NewRegistry()
	cfg := h.config("a")
	cfg.Metrics = reg
	h.start(cfg)
	half := len(w.events) / 2
	n := h.produceAll(w.events[:half])
	h.waitConsumed(n, 60*time.Second)
	firstHalf := newWorkloadFrom(w.events[:half])
	waitFinal(t, sr, firstHalf, 60*time.Second)

	// An undecodable record on the changelog partition of one envelope.
	bad := partitionOf(w.events[0].EnvelopeID)
	manual, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer manual.Close()
	if err := manual.ProduceSync(context.Background(), &kgo.Record{Topic: h.codec.Topics().Envelopes, Partition: bad,
		Key: []byte("garbage"), Value: []byte("not avro")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	h.redis.Flush(t)
	h.produceAll(w.events[half:])

	// The others finish; the bad partition's restore fails again and
	// again, without a checkpoint.
	rest := newWorkloadFrom(nil)
	for id, e := range w.final {
		if partitionOf(id) != bad {
			rest.final[id] = e
		}
	}
	waitFinal(t, sr, rest, 90*time.Second)
	waitFor(t, 60*time.Second, "the restore tried again", func() bool {
		v, _, _ := promread.Sum(reg, "esignflow_processor_restore_failures_total", nil)
		return v >= 2
	})
	ckpts, err := h.store.Checkpoints(context.Background(), []int32{bad})
	if err != nil {
		t.Fatal(err)
	}
	if ckpts[0] != nil {
		t.Fatalf("partition %d has checkpoint %+v over a failed restore", bad, ckpts[0])
	}
	latest := sr.latest()
	for id, e := range firstHalf.final {
		if partitionOf(id) == bad && latest[id] != e.State.Version {
			t.Errorf("%s of the unrestored partition moved to v%d (v%d before the flush)", id, latest[id], e.State.Version)
		}
	}
	checkExactlyOnce(t, sr.snapshot(), rest.final)
}

// A restore that takes longer than a batch may is not a batch's work: it
// completes.
func TestRestoreOutlastsBatchDeadline(t *testing.T) {
	h := newHarness(t)
	w := newWorkload(15, 30)
	sr := h.readStatus()
	const batchTimeout = 2 * time.Second
	reg := prometheus.NewRegistry()
	cfg := h.config("a")
	cfg.Metrics, cfg.BatchTimeout = reg, batchTimeout
	var slowed atomic.Int64
	cfg.Crash = func(p processor.Point) bool {
		if p == processor.Restoring {
			slowed.Add(1)
			time.Sleep(2 * batchTimeout) // every restore slower than any batch may be
		}
		return false
	}
	h.start(cfg)
	half := len(w.events) / 2
	n := h.produceAll(w.events[:half])
	h.waitConsumed(n, 60*time.Second)
	waitFinal(t, sr, newWorkloadFrom(w.events[:half]), 60*time.Second)
	h.redis.Flush(t)
	h.produceAll(w.events[half:])
	waitFinal(t, sr, w, 90*time.Second)
	checkExactlyOnce(t, sr.snapshot(), w.final)
	if slowed.Load() == 0 {
		t.Fatal("no restore ran")
	}
}

// A Redis that outlived its Kafka cluster, or whose events topic was
// deleted and re-created, belongs to another history: its envelopes are
// not the new topics' and are never trusted.
func TestForeignHistoryIsNotTrusted(t *testing.T) {
	h := newHarness(t)
	first := newWorkload(16, 10)
	sr := h.readStatus()
	a := h.start(h.config("a"))
	h.waitConsumed(h.produceAll(first.events), 60*time.Second)
	waitFinal(t, sr, first, 60*time.Second)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}

	// The same Redis (same keys) under new topics and groups: another
	// history, whose envelopes happen to have the same ids.
	k, codec := fakes.T(t, 4)
	h2 := &harness{t: t, kafka: k, brokers: k.Brokers, codec: codec, redis: h.redis, store: h.store}
	var err error
	h2.prod, err = kgo.NewClient(kgo.SeedBrokers(h2.brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h2.prod.Close)
	second := newWorkload(17, 10)
	sr2 := h2.readStatus()
	h2.start(h2.config("a"))
	h2.produceAll(second.events)
	waitFinal(t, sr2, second, 60*time.Second)
	checkExactlyOnce(t, sr2.snapshot(), second.final)
	for _, c := range sr2.snapshot() {
		if c.Version == 1 && c.PreviousStatus != nil {
			t.Errorf("%s v1 follows %s: the old history's state was trusted", c.EnvelopeID, *c.PreviousStatus)
		}
	}
}

// A changelog whose partition count differs from the events topic's would
// put an envelope's state where its events are not: the processor refuses
// to start, naming both counts.
func TestChangelogPartitionMismatchStops(t *testing.T) {
	h := newHarness(t)
	adm := kadm.NewClient(h.prod)
	resp, err := adm.CreatePartitions(context.Background(), 2, h.codec.Topics().Envelopes)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	r := h.start(h.config("a"))
	select {
	case err := <-r.done:
		r.done <- err
		if !errors.Is(err, processor.ErrPartitionMismatch) || !strings.Contains(err.Error(), "has 4 partitions") || !strings.Contains(err.Error(), "has 6") {
			t.Fatalf("Run = %v, want ErrPartitionMismatch naming 4 and 6 partitions", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the processor started on a changelog of another partition count")
	}
}

// An event applied by an attempt that did not commit, whose schema id the
// registry no longer answers for when it is consumed again, is
// dead-lettered — but only after its partition is restored, so its change,
// in Redis and never on the status topic, does not stay there: the next
// event's version follows the last one published.
func TestUnreadableAppliedRecordIsRestoredFirst(t *testing.T) {
	ctx := context.Background()
	k := fakes.NewKafka(t, 4)
	reg, codecA, err := fakes.Registry(ctx, schemas.WithNames(k.Names))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	// A second version of the events schema (the same fields, another
	// doc): a schema id a can read and b's registry does not know.
	text, err := schemas.Text(schemas.TopicEvents)
	if err != nil {
		t.Fatal(err)
	}
	// The same record with one more optional field at the end (written
	// as its null branch): a schema of its own, not a duplicate.
	end := strings.LastIndex(text, "]")
	other := text[:end] + `, {"name": "only_a_saw_this", "type": ["null", "string"], "default": null}` + text[end:]
	otherID, _, err := reg.RegisterSchema(schemas.Subject(k.Names.Events), srclient.Schema{Schema: other})
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := codecA.ID(k.Names.Events); id == otherID {
		t.Fatalf("the other schema got the events schema's id %d", id)
	}
	r := redistest.New(t)
	st, err := store.New(store.Config{Client: r.Client, Prefix: r.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, kafka: k, brokers: k.Brokers, codec: codecA, redis: r, store: st}
	if h.prod, err = kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.prod.Close)
	status := h.readStatus()

	w := newWorkload(18, 1)
	evs := w.events // one envelope's lifecycle
	first, unreadable, rest := evs[:2], evs[2], evs[3:]
	cfgA := h.config("a")
	var crashed atomic.Bool
	cfgA.Crash = func(p processor.Point) bool { return p == processor.AfterStore && crashed.Load() }
	a := h.start(cfgA)
	n := h.produceAll(first)
	h.waitConsumed(n, 60*time.Second)
	waitFinal(t, status, newWorkloadFrom(first), 60*time.Second)

	// The third event, under the other schema id: a applies it to Redis
	// and dies before its transaction commits.
	crashed.Store(true)
	rec := h.eventRecord(unreadable)
	binary.BigEndian.PutUint32(rec.Value[1:5], uint32(otherID))
	rec.Value = append(rec.Value, 0) // only_a_saw_this: null
	h.produce(rec)
	select {
	case err := <-a.done:
		if !errors.Is(err, processor.ErrCrashed) {
			t.Fatalf("a: %v", err)
		}
		a.done <- nil
	case <-time.After(60 * time.Second):
		t.Fatal("a never applied the event")
	}

	// b reads from a registry that does not know the other id (a
	// follower that lost it, a registry restored from a backup): its own
	// schemas have the ids they have on a's.
	reg2, codecB, err := fakes.Registry(ctx, schemas.WithNames(k.Names))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg2.Close)
	for _, topic := range k.Names.All() {
		idA, errA := codecA.ID(topic)
		idB, errB := codecB.ID(topic)
		if errA != nil || errB != nil || idA != idB {
			t.Fatalf("%s: schema id %d (%v) on a's registry, %d (%v) on b's", topic, idA, errA, idB, errB)
		}
	}
	cfgB := h.config("b")
	cfgB.Codec = codecB
	h.start(cfgB)
	h.produceAll(rest)
	want := newWorkloadFrom(append(append([]schemas.EnvelopeEvent{}, first...), rest...))
	waitFinal(t, status, want, 60*time.Second)
	checkExactlyOnce(t, status.snapshot(), want.final)
	if dls := h.readDeadLetters(1, 30*time.Second); !strings.Contains(dls[0].Error, "unknown schema") {
		t.Fatalf("dead letter: %+v, want the unreadable event", dls[0])
	}
}
