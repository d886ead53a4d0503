package processor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/processor"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

// harness is one test's system: its Kafka (kfake, or its own topics and
// groups on the real broker), srfake, a Redis and the codec.
type harness struct {
	t       *testing.T
	kafka   *fakes.Kafka
	brokers []string
	codec   *schemas.Codec
	redis   *redistest.Redis
	store   *store.Store
	prod    *kgo.Client
}

func quietLogger() *slog.Logger {
	if os.Getenv("ESIGNFLOW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	k, codec := fakes.T(t, 4)
	r := redistest.New(t)
	st, err := store.New(store.Config{Client: r.Client, Prefix: r.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, kafka: k, brokers: k.Brokers, codec: codec, redis: r, store: st}
	h.prod, err = kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.prod.Close)
	return h
}

func (h *harness) config(instance string) processor.Config {
	return processor.Config{
		Brokers: h.brokers, Codec: h.codec, Store: h.store, InstanceID: instance, Group: h.kafka.Group("esignflow-processor"),
		Providers: map[string]processor.Creator{"sim": refuseAll{}},
		MaxBatch:  25, Topics: topics.Config{Partitions: 4}, Logger: quietLogger(),
		RetryMax:  200 * time.Millisecond,
		KafkaOpts: []kgo.Opt{kgo.TransactionTimeout(5 * time.Second), kgo.FetchMaxWait(50 * time.Millisecond)},
	}
}

// refuseAll is a provider for tests that send no requests.
type refuseAll struct{}

func (refuseAll) Create(context.Context, string, schemas.SigningRequest) (pv provider.Envelope, err error) {
	return pv, errors.New("no provider in this test")
}

// running is a processor started by start.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// stop cancels the processor and returns what Run returned (and leaves
// it for the test's cleanup, which waits for it too).
func (r *running) stop() error {
	r.cancel()
	err := <-r.done
	r.done <- err
	return err
}

func (h *harness) start(cfg processor.Config) *running {
	h.t.Helper()
	p, err := processor.New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	h.t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// produce writes records synchronously.
func (h *harness) produce(recs ...*kgo.Record) {
	h.t.Helper()
	if err := h.prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) eventRecord(ev schemas.EnvelopeEvent) *kgo.Record {
	h.t.Helper()
	b, err := h.codec.Encode(&ev)
	if err != nil {
		h.t.Fatal(err)
	}
	return &kgo.Record{Topic: h.codec.Topics().Events, Key: []byte(ev.EnvelopeID), Value: b}
}

// statusReader follows the status topic read_committed, as a downstream
// consumer would.
type statusReader struct {
	mu      sync.Mutex
	changes []schemas.EnvelopeStatusChanged
	err     error
}

func (h *harness) readStatus() *statusReader {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(h.codec.Topics().Status),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		h.t.Fatal(err)
	}
	sr := &statusReader{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil || fs.IsClientClosed() {
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				var ch schemas.EnvelopeStatusChanged
				err := h.codec.Decode(ctx, r.Value, &ch)
				sr.mu.Lock()
				if err != nil && sr.err == nil {
					sr.err = err
				}
				sr.changes = append(sr.changes, ch)
				sr.mu.Unlock()
			})
		}
	}()
	h.t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return sr
}

func (s *statusReader) snapshot() []schemas.EnvelopeStatusChanged {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]schemas.EnvelopeStatusChanged(nil), s.changes...)
}

// latest returns each envelope's highest version seen.
func (s *statusReader) latest() map[string]int64 {
	out := map[string]int64{}
	for _, c := range s.snapshot() {
		out[c.EnvelopeID] = max(out[c.EnvelopeID], c.Version)
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// workload is a set of envelopes' events and what in-order delivery makes
// of them.
type workload struct {
	events []schemas.EnvelopeEvent // in order per envelope, interleaved
	final  map[string]envelope.Envelope
}

// newWorkload makes n envelopes with their whole lifecycle: created, sent,
// each recipient's progress, the terminal status, and a confirming poll.
func newWorkload(seed uint64, n int) workload {
	rng := rand.New(rand.NewPCG(seed, 1))
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	per := make([][]schemas.EnvelopeEvent, n)
	for i := range n {
		id := fmt.Sprintf("env-%03d", i)
		// Every event carries the request id, as each webhook and poll
		// answer of an envelope esignflow created does (its provider
		// metadata): without it, one shuffled before the create result
		// would be taken for a foreign envelope's.
		rid := "req-" + id
		at := t0
		tick := func() time.Time { at = at.Add(time.Duration(1+rng.IntN(30)) * time.Second); return at }
		st := func(s schemas.Status, src schemas.Source, eid string) schemas.EnvelopeEvent {
			return schemas.EnvelopeEvent{EventID: id + "-" + eid, Provider: "sim", EnvelopeID: id, RequestID: &rid, Source: src, Type: string(s),
				Status: &s, OccurredAt: tick(), Recipients: []schemas.RecipientUpdate{}, Metadata: map[string]string{}}
		}
		evs := []schemas.EnvelopeEvent{st(schemas.StatusCreated, schemas.SourceAPI, "api"), st(schemas.StatusSent, schemas.SourceWebhook, "sent")}
		for r := range 1 + rng.IntN(2) {
			for _, rs := range []schemas.RecipientStatus{schemas.RecipientSent, schemas.RecipientDelivered, schemas.RecipientViewed, schemas.RecipientSigned} {
				evs = append(evs, schemas.EnvelopeEvent{EventID: fmt.Sprintf("%s-r%d-%s", id, r, rs), Provider: "sim", EnvelopeID: id, RequestID: &rid,
					Source: schemas.SourceWebhook, Type: "recipient", OccurredAt: tick(), Metadata: map[string]string{},
					Recipients: []schemas.RecipientUpdate{{RecipientID: fmt.Sprintf("r%d", r), Status: rs}}})
			}
		}
		done := st(schemas.StatusCompleted, schemas.SourceWebhook, "done")
		poll := st(schemas.StatusCompleted, schemas.SourcePoll, "poll")
		poll.OccurredAt = done.OccurredAt
		per[i] = append(evs, done, poll)
	}
	w := workload{final: map[string]envelope.Envelope{}}
	// Interleave envelopes, keeping each one's order.
	for len(per) > 0 {
		i := rng.IntN(len(per))
		w.events = append(w.events, per[i][0])
		if per[i] = per[i][1:]; len(per[i]) == 0 {
			per = append(per[:i], per[i+1:]...)
		}
	}
	for _, ev := range w.events {
		w.final[ev.EnvelopeID], _ = w.final[ev.EnvelopeID].Apply(ev, t0)
	}
	return w
}

// checkExactlyOnce asserts that every (envelope, version) appears once,
// versions run from 1 without gaps, and the last state of each envelope is
// the in-order one.
func checkExactlyOnce(t *testing.T, changes []schemas.EnvelopeStatusChanged, want map[string]envelope.Envelope) {
	t.Helper()
	type key struct {
		env string
		v   int64
	}
	seen := map[key]int{}
	last := map[string]schemas.EnvelopeStatusChanged{}
	for _, c := range changes {
		seen[key{c.EnvelopeID, c.Version}]++
		if c.Version > last[c.EnvelopeID].Version {
			last[c.EnvelopeID] = c
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s version %d emitted %d times", k.env, k.v, n)
		}
	}
	for id, w := range want {
		got := last[id]
		for v := int64(1); v <= w.State.Version; v++ {
			if seen[key{id, v}] == 0 {
				t.Errorf("%s: version %d missing (final %d)", id, v, w.State.Version)
			}
		}
		if got.Version != w.State.Version || *got.State.Status != *w.State.Status || fmt.Sprint(got.State.Recipients) != fmt.Sprint(w.State.Recipients) {
			t.Errorf("%s: final v%d %s %v, want v%d %s %v", id, got.Version, got.Status, got.State.Recipients, w.State.Version, *w.State.Status, w.State.Recipients)
		}
		var chain []schemas.AuditEntry
		for _, c := range changes {
			if c.EnvelopeID == id {
				chain = append(chain, c.Audit...)
			}
		}
		sortBySeq(chain)
		if err := envelope.Verify(chain); err != nil {
			t.Errorf("%s: audit chain: %v", id, err)
		}
	}
}

func sortBySeq(es []schemas.AuditEntry) {
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && es[j].Seq < es[j-1].Seq; j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}

// waitConsumed waits until the processor's events group has committed n
// offsets of the events topic: every record produced so far, when the
// producer is not transactional.
func (h *harness) waitConsumed(n int64, d time.Duration) {
	h.t.Helper()
	h.waitCommitted("events", h.codec.Topics().Events, n, d)
}

// waitRequestsConsumed is waitConsumed for the requests session: once it
// returns, the first n requests' batches have committed, with their dead
// letters and their API events.
func (h *harness) waitRequestsConsumed(n int64, d time.Duration) {
	h.t.Helper()
	h.waitCommitted("requests", h.codec.Topics().Requests, n, d)
}

// waitCommitted waits until the processor's session loop has committed n
// offsets of topic, summed over its partitions.
func (h *harness) waitCommitted(loop, topic string, n int64, d time.Duration) {
	h.t.Helper()
	adm := kadm.NewClient(h.prod)
	waitFor(h.t, d, fmt.Sprintf("%d records of %s consumed", n, topic), func() bool {
		offs, err := adm.FetchOffsets(context.Background(), h.kafka.Group("esignflow-processor-"+loop))
		if err != nil {
			return false
		}
		var at int64
		offs.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topic && o.Err == nil {
				at += o.At
			}
		})
		return at >= n
	})
}

// waitStored waits until the status topic shows every envelope of w at the
// version the store holds for it.
func (h *harness) waitStored(sr *statusReader, w workload, d time.Duration) {
	h.t.Helper()
	ids := make([]string, 0, len(w.final))
	for id := range w.final {
		ids = append(ids, id)
	}
	waitFor(h.t, d, "the status topic at every envelope's stored version", func() bool {
		stored, err := h.stored(ids)
		if err != nil {
			return false
		}
		latest := sr.latest()
		for _, id := range ids {
			if latest[id] != stored[id].State.Version {
				return false
			}
		}
		return true
	})
}

// partitionOf is the events partition an envelope's events go to: the
// producers' partitioner, over the harness's 4 partitions.
func partitionOf(id string) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic("").Partition(&kgo.Record{Key: []byte(id)}, 4))
}

// stored reads the stored state of envelopes, each from its partition.
func (h *harness) stored(ids []string) (map[string]envelope.Envelope, error) {
	refs := make([]store.Stale, len(ids))
	for i, id := range ids {
		refs[i] = store.Stale{EnvelopeID: id, Partition: partitionOf(id)}
	}
	return h.store.EnvelopesOf(context.Background(), refs)
}

// waitFinal waits until the status topic shows every envelope at its
// in-order final version.
func waitFinal(t *testing.T, sr *statusReader, w workload, d time.Duration) {
	t.Helper()
	waitFor(t, d, "every envelope's final version on the status topic", func() bool {
		got := sr.latest()
		for id, e := range w.final {
			if got[id] < e.State.Version {
				return false
			}
		}
		return true
	})
}
