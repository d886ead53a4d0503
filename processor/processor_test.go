package processor_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/processor"
	"github.com/esignflow/esignflow/schemas"
)

func TestCleanDelivery(t *testing.T) {
	h := newHarness(t)
	w := newWorkload(1, 20)
	sr := h.readStatus()
	h.start(h.config("a"))
	for _, ev := range w.events {
		h.produce(h.eventRecord(ev))
	}
	waitFinal(t, sr, w, 60*time.Second)
	checkExactlyOnce(t, sr.snapshot(), w.final)
}

// The processor is killed at each point of the protocol, several times,
// and restarted with the same instance id (so its new life fences the old
// one's open transaction). A read_committed consumer sees every change once.
func TestExactlyOnceAcrossCrashes(t *testing.T) {
	h := newHarness(t)
	w := newWorkload(2, 40)
	sr := h.readStatus()
	for _, ev := range w.events {
		h.produce(h.eventRecord(ev))
	}
	points := []processor.Point{processor.AfterStore, processor.AfterProduce, processor.AfterStore, processor.AfterProduce}
	for i, at := range points {
		var batches atomic.Int64
		cfg := h.config("crashy")
		after := int64(2 + i) // crash on the events session's nth batch at this point
		cfg.Crash = func(p processor.Point) bool { return p == at && batches.Add(1) == after }
		r := h.start(cfg)
		select {
		case err := <-r.done:
			if !errors.Is(err, processor.ErrCrashed) {
				t.Fatalf("life %d: Run returned %v, want ErrCrashed", i, err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("life %d: no crash at %s", i, at)
		}
		r.done <- nil // for the cleanup's wait
	}
	h.start(h.config("crashy"))
	waitFinal(t, sr, w, 90*time.Second)
	checkExactlyOnce(t, sr.snapshot(), w.final)
}

func TestDuplicateAndReorderedDeliveries(t *testing.T) {
	w := newWorkload(3, 20)
	rng := rand.New(rand.NewPCG(9, 9))
	t.Run("duplicates in order", func(t *testing.T) {
		clean := newHarness(t)
		cleanReader := clean.readStatus()
		clean.start(clean.config("a"))
		for _, ev := range w.events {
			clean.produce(clean.eventRecord(ev))
		}
		waitFinal(t, cleanReader, w, 60*time.Second)

		h := newHarness(t)
		sr := h.readStatus()
		h.start(h.config("a"))
		for _, ev := range w.events {
			h.produce(h.eventRecord(ev))
			if rng.IntN(3) == 0 { // a redelivered webhook: same event, new record
				h.produce(h.eventRecord(ev))
			}
		}
		waitFinal(t, sr, w, 60*time.Second)
		checkExactlyOnce(t, sr.snapshot(), w.final)
		if got, want := summary(sr.snapshot()), summary(cleanReader.snapshot()); got != want {
			t.Fatalf("output differs from clean delivery:\n got %s\nwant %s", got, want)
		}
	})
	t.Run("shuffled with duplicates", func(t *testing.T) {
		h := newHarness(t)
		sr := h.readStatus()
		evs := append([]schemas.EnvelopeEvent(nil), w.events...)
		for range len(evs) / 3 {
			evs = append(evs, evs[rng.IntN(len(evs))])
		}
		rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		for _, ev := range evs {
			h.produce(h.eventRecord(ev))
		}
		cfg := h.config("a")
		h.start(cfg)
		// Out of order, late events change nothing, so the version
		// counts are not known up front: wait until every record is
		// consumed and the status topic has caught up with the store.
		// (Waiting for every envelope's terminal status was not enough:
		// a recipient's update shuffled behind it could still be on its
		// way.)
		h.waitConsumed(int64(len(evs)), 60*time.Second)
		h.waitStored(sr, w, 60*time.Second)
		changes := sr.snapshot()
		last := map[string]schemas.EnvelopeStatusChanged{}
		seen := map[string]bool{}
		for _, c := range changes {
			k := fmt.Sprintf("%s@%d", c.EnvelopeID, c.Version)
			if seen[k] {
				t.Fatalf("%s emitted twice", k)
			}
			seen[k] = true
			if c.Version > last[c.EnvelopeID].Version {
				last[c.EnvelopeID] = c
			}
		}
		for id, want := range w.final {
			got := last[id]
			for v := int64(1); v <= got.Version; v++ {
				if !seen[fmt.Sprintf("%s@%d", id, v)] {
					t.Fatalf("%s: version gap at %d", id, v)
				}
			}
			if got.Status != *want.State.Status || fmt.Sprint(got.State.Recipients) != fmt.Sprint(want.State.Recipients) {
				t.Fatalf("%s: %s %v, want %s %v", id, got.Status, got.State.Recipients, *want.State.Status, want.State.Recipients)
			}
			if got.Version > want.State.Version {
				t.Fatalf("%s: %d changes shuffled, more than %d in order", id, got.Version, want.State.Version)
			}
		}
	})
}

// summary is the status stream as (envelope, version, status) per envelope
// in version order: what a consumer sees, independent of partition
// interleaving.
func summary(changes []schemas.EnvelopeStatusChanged) string {
	by := map[string][]string{}
	for _, c := range changes {
		by[c.EnvelopeID] = append(by[c.EnvelopeID], fmt.Sprintf("%d:%s", c.Version, c.Status))
	}
	return fmt.Sprint(by)
}

func TestRedisLossRestores(t *testing.T) {
	h := newHarness(t)
	w := newWorkload(4, 30)
	sr := h.readStatus()
	h.start(h.config("a"))
	half := len(w.events) / 2
	for _, ev := range w.events[:half] {
		h.produce(h.eventRecord(ev))
	}
	// Wait until the first half is on the status topic.
	firstHalf := newWorkloadFrom(w.events[:half])
	waitFinal(t, sr, firstHalf, 60*time.Second)
	h.redis.Flush(t) // FLUSHALL, for this test's keys
	for _, ev := range w.events[half:] {
		h.produce(h.eventRecord(ev))
	}
	// Redeliver a few of the first half too: their dedup records are gone.
	for _, ev := range w.events[:10] {
		h.produce(h.eventRecord(ev))
	}
	waitFinal(t, sr, w, 60*time.Second)
	checkExactlyOnce(t, sr.snapshot(), w.final)
	ckpts, err := h.store.Checkpoints(context.Background(), []int32{0, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	for p, c := range ckpts {
		if c == nil {
			t.Errorf("partition %d has no checkpoint after the restore", p)
		}
	}
}

func newWorkloadFrom(evs []schemas.EnvelopeEvent) workload {
	w := workload{events: evs, final: map[string]envelope.Envelope{}}
	for _, ev := range evs {
		w.final[ev.EnvelopeID], _ = w.final[ev.EnvelopeID].Apply(ev, time.Time{})
	}
	return w
}

func TestTwoProcessorsShareWork(t *testing.T) {
	h := newHarness(t)
	w := newWorkload(5, 60)
	sr := h.readStatus()
	var aBatches, bBatches atomic.Int64
	cfgA := h.config("a")
	cfgA.Crash = func(p processor.Point) bool { return p == processor.AfterStore && aBatches.Add(1) == 6 }
	cfgB := h.config("b")
	cfgB.Crash = func(p processor.Point) bool {
		if p == processor.AfterStore {
			bBatches.Add(1)
		}
		return false
	}
	a := h.start(cfgA)
	h.start(cfgB)
	for _, ev := range w.events {
		h.produce(h.eventRecord(ev))
	}
	select {
	case err := <-a.done:
		if !errors.Is(err, processor.ErrCrashed) {
			t.Fatalf("a: %v", err)
		}
		a.done <- nil
	case <-time.After(60 * time.Second):
		t.Fatal("a never crashed: did it get partitions?")
	}
	waitFinal(t, sr, w, 90*time.Second)
	checkExactlyOnce(t, sr.snapshot(), w.final)
	if bBatches.Load() == 0 {
		t.Fatal("b processed nothing")
	}
}

func TestPoisonRecordGoesToDLQ(t *testing.T) {
	h := newHarness(t)
	sr := h.readStatus()
	h.start(h.config("a"))
	good := newWorkload(6, 1)
	badProvider := good.events[0]
	badProvider.Provider = "nope"
	badProvider.EventID = "x"
	wrongKey := h.eventRecord(good.events[1])
	wrongKey.Key = []byte("someone-else")
	poison := []*kgo.Record{
		{Topic: h.codec.Topics().Events, Key: []byte("env-000"), Value: []byte("not avro at all")},
		{Topic: h.codec.Topics().Events, Key: []byte("env-000"), Value: []byte{0, 0, 0, 0x7f, 0x7f, 1, 2}, Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t1")}}},
		h.eventRecord(badProvider),
		wrongKey,
	}
	h.produce(poison...)
	for _, ev := range good.events {
		h.produce(h.eventRecord(ev))
	}
	waitFinal(t, sr, good, 60*time.Second)

	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(h.codec.Topics().DLQ),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var dls []schemas.DeadLetter
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(dls) < len(poison) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("only %d dead letters: %+v", len(dls), dls)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var dl schemas.DeadLetter
			if err := h.codec.Decode(ctx, r.Value, &dl); err != nil {
				t.Fatal(err)
			}
			dls = append(dls, dl)
		})
	}
	wantErr := []string{"magic byte", "unknown schema id", "unknown provider", "is not the envelope id"}
	for i, dl := range dls {
		p := poison[i]
		if string(dl.Value) != string(p.Value) || dl.Topic != h.codec.Topics().Events || dl.Offset < 0 || !strings.Contains(dl.Error, wantErr[i]) {
			t.Errorf("dead letter %d: %+v, want the original bytes and an error about %q", i, dl, wantErr[i])
		}
	}
	if len(dls[1].Headers) != 1 || dls[1].Headers[0].Key != "trace" {
		t.Errorf("headers not kept: %+v", dls[1].Headers)
	}
}
