package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/schemas"
)

var t0 = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

func newStore(t testing.TB) (*store.Store, *redistest.Redis) {
	t.Helper()
	s, r, _ := clockedStore(t, 0)
	return s, r
}

// clockedStore returns a store whose dedup records live for ttl (0: the
// default) and whose clock reads *now, t0 to begin with.
func clockedStore(t testing.TB, ttl time.Duration) (*store.Store, *redistest.Redis, *time.Time) {
	t.Helper()
	r := redistest.New(t)
	now := t0
	s, err := store.New(store.Config{Client: r.Client, Prefix: r.Prefix, DedupTTL: ttl, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetMarker(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, r, &now
}

func ev(env, id string, st schemas.Status) schemas.EnvelopeEvent {
	req := "req-" + env
	return schemas.EnvelopeEvent{EventID: id, Provider: "sim", EnvelopeID: env, RequestID: &req, Source: schemas.SourceWebhook, Status: &st, OccurredAt: t0, ReceivedAt: t0}
}

func inputs(topic string, base int64, evs ...schemas.EnvelopeEvent) []store.Input {
	in := make([]store.Input, len(evs))
	for i, e := range evs {
		in[i] = store.Input{Event: e, From: store.Coord{Topic: topic, Partition: 0, Offset: base + int64(i)}}
	}
	return in
}

// change decodes r's status change (nil: none), failing the test when it
// cannot.
func change(t testing.TB, s *store.Store, r store.Result) *schemas.EnvelopeStatusChanged {
	t.Helper()
	ch, err := s.Change(r)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func kinds(res []store.Result) []store.Kind {
	k := make([]store.Kind, len(res))
	for i, r := range res {
		k[i] = r.Kind
	}
	return k
}

func TestApplyReplayDuplicate(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	batch := inputs("events", 10,
		ev("a", "a1", schemas.StatusSent),
		ev("b", "b1", schemas.StatusSent),
		ev("a", "a2", schemas.StatusDelivered),
		ev("a", "a0", schemas.StatusCreated), // older: audited, no change
		ev("b", "b1", schemas.StatusSent),    // same event twice in one batch
	)
	res, stats, err := s.Apply(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.Kind{store.Applied, store.Applied, store.Applied, store.Applied, store.Duplicate}; !reflect.DeepEqual(kinds(res), want) {
		t.Fatalf("kinds = %v, want %v", kinds(res), want)
	}
	if stats.RoundTrips != 2 || stats.Conflicts != 0 {
		t.Fatalf("stats = %+v, want 2 round trips", stats)
	}
	if ch := change(t, s, res[2]); ch == nil || ch.Version != 2 || ch.Status != schemas.StatusDelivered {
		t.Fatalf("a2 change = %+v", ch)
	}
	if res[3].Changed() {
		t.Fatalf("older event changed the status: %+v", change(t, s, res[3]))
	}

	// The same records again (a crash before the Kafka commit): replays
	// with the very changes stored the first time. Two round trips: the
	// read, and releasing its watch as there is nothing to write.
	again, stats, err := s.Apply(ctx, batch[:4])
	if err != nil {
		t.Fatal(err)
	}
	if stats.RoundTrips != 2 {
		t.Fatalf("replay round trips = %d, want 2", stats.RoundTrips)
	}
	for i, r := range again {
		if r.Kind != store.Replay || !bytes.Equal(r.Body, res[i].Body) {
			t.Fatalf("replay %d: %v %+v, want %+v", i, r.Kind, change(t, s, r), change(t, s, res[i]))
		}
	}

	// The same events from other records (a redelivered webhook):
	// duplicates, nothing emitted.
	dup, _, err := s.Apply(ctx, inputs("events", 100, batch[0].Event, batch[2].Event))
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.Kind{store.Duplicate, store.Duplicate}; !reflect.DeepEqual(kinds(dup), want) {
		t.Fatalf("kinds = %v, want %v", kinds(dup), want)
	}

	e, ok, err := s.Envelope(ctx, "a")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if *e.State.Status != schemas.StatusDelivered || e.State.Version != 2 || e.State.AuditSeq != 3 || len(e.Pending) != 1 {
		t.Fatalf("stored a = %+v pending %d", e.State, len(e.Pending))
	}
	if got, err := s.EnvelopesForRequests(ctx, []string{"req-a", "req-b", "req-none"}); err != nil || len(got) != 2 || got["req-a"] != "a" || got["req-b"] != "b" {
		t.Fatalf("request index: %v %v", got, err)
	}
}

// Dedup records are deleted by later batches once older than DedupTTL, not
// before, and an event whose record is gone is applied again without
// changing the status a second time.
func TestDedupRecordsExpire(t *testing.T) {
	s, r, now := clockedStore(t, 90*time.Minute)
	ctx := context.Background()
	apply := func(at time.Duration, offset int64, e schemas.EnvelopeEvent) store.Result {
		t.Helper()
		*now = t0.Add(at)
		res, _, err := s.Apply(ctx, inputs("events", offset, e))
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	exists := func(id string) bool {
		t.Helper()
		n, err := r.Client.Exists(ctx, r.Prefix+"dedup:"+id).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	apply(0, 0, ev("x", "x1", schemas.StatusSent))
	apply(time.Minute, 1, ev("y", "y1", schemas.StatusSent))
	apply(90*time.Minute, 2, ev("z", "z1", schemas.StatusSent)) // x1 is exactly 90m old: kept
	if !exists("x1") || !exists("y1") {
		t.Fatal("a record younger than the TTL was deleted")
	}
	if got := apply(90*time.Minute, 3, ev("x", "x1", schemas.StatusSent)); got.Kind != store.Duplicate {
		t.Fatalf("redelivery within the TTL: %v, want duplicate", got.Kind)
	}
	apply(90*time.Minute+time.Millisecond, 4, ev("z", "z2", schemas.StatusDelivered))
	if exists("x1") || !exists("y1") || !exists("z1") {
		t.Fatalf("after the TTL: x1 %v y1 %v z1 %v, want only x1 gone", exists("x1"), exists("y1"), exists("z1"))
	}
	if got := apply(2*time.Hour, 5, ev("x", "x1", schemas.StatusSent)); got.Kind != store.Applied || got.Changed() {
		t.Fatalf("redelivery after expiry: %v %+v, want applied without a change", got.Kind, change(t, s, got))
	}
	if exists("y1") {
		t.Fatal("y1 outlived its TTL")
	}
	if n, err := r.Client.LLen(ctx, r.Prefix+"dedup-log").Result(); err != nil || n != 3 {
		t.Fatalf("dedup log holds %d entries (%v), want 3: z1, z2 and x1 again", n, err)
	}
}

func TestMissingMarkerWritesNothing(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	r.Flush(t) // Redis lost its data
	if ok, err := s.HasMarker(ctx); err != nil || ok {
		t.Fatalf("HasMarker = %v, %v after flush", ok, err)
	}
	_, _, err := s.Apply(ctx, inputs("events", 0, ev("a", "a1", schemas.StatusSent)))
	if !errors.Is(err, store.ErrDataLoss) {
		t.Fatalf("got %v, want ErrDataLoss", err)
	}
	if _, ok, _ := s.Envelope(ctx, "a"); ok {
		t.Fatal("envelope written without marker")
	}
	if n, _ := r.Client.Exists(ctx, r.Prefix+"dedup:a1").Result(); n != 0 {
		t.Fatal("dedup record written without marker")
	}
}

func TestActiveIndexAndStale(t *testing.T) {
	r := redistest.New(t)
	now := t0
	s, err := store.New(store.Config{Client: r.Client, Prefix: r.Prefix, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.SetMarker(ctx); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"old", "mid", "new"} {
		now = t0.Add(time.Duration(i) * time.Hour)
		if _, _, err := s.Apply(ctx, inputs("events", int64(i), ev(id, id+"1", schemas.StatusSent))); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Stale(ctx, t0.Add(90*time.Minute), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].EnvelopeID != "old" || got[1].EnvelopeID != "mid" || !got[0].UpdatedAt.Equal(t0) {
		t.Fatalf("stale = %+v", got)
	}
	if _, _, err := s.Apply(ctx, inputs("events", 9, ev("old", "old2", schemas.StatusCompleted))); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Active(ctx); n != 2 {
		t.Fatalf("active = %d after a terminal status, want 2", n)
	}
	if got, _ := s.Stale(ctx, t0.Add(3*time.Hour), 1); len(got) != 1 || got[0].EnvelopeID != "mid" {
		t.Fatalf("stale with limit 1 = %+v", got)
	}
}

func TestRestoreKeepsNewer(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	res, _, err := s.Apply(ctx, inputs("events", 0, ev("a", "a1", schemas.StatusSent), ev("a", "a2", schemas.StatusDelivered), ev("b", "b1", schemas.StatusCompleted)))
	if err != nil {
		t.Fatal(err)
	}
	older := change(t, s, res[0]).State
	latestA, latestB := change(t, s, res[1]).State, change(t, s, res[2]).State
	r.Flush(t)
	if err := s.Restore(ctx, []schemas.EnvelopeState{latestA, latestB}); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(ctx, []schemas.EnvelopeState{older}); err != nil { // must not go back
		t.Fatal(err)
	}
	if err := s.SetMarker(ctx); err != nil {
		t.Fatal(err)
	}
	a, ok, err := s.Envelope(ctx, "a")
	if err != nil || !ok || a.State.Version != 2 || *a.State.Status != schemas.StatusDelivered {
		t.Fatalf("restored a = %+v %v %v", a.State, ok, err)
	}
	if n, _ := s.Active(ctx); n != 1 {
		t.Fatalf("active after restore = %d, want 1 (b is terminal)", n)
	}
	// Dedup records are gone, but the monotonic machine emits nothing for
	// a redelivered event.
	again, _, err := s.Apply(ctx, inputs("events", 50, ev("a", "a2", schemas.StatusDelivered)))
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Kind != store.Applied || again[0].Changed() {
		t.Fatalf("redelivery after restore: %v %+v", again[0].Kind, change(t, s, again[0]))
	}
	next, _, err := s.Apply(ctx, inputs("events", 51, ev("a", "a3", schemas.StatusCompleted)))
	if err != nil {
		t.Fatal(err)
	}
	if ch := change(t, s, next[0]); ch == nil || ch.Version != 3 {
		t.Fatalf("after restore: %+v", ch)
	}
}

// Two writers apply overlapping batches of the same events (as two
// processors would around a rebalance). The compare-and-set lets exactly one
// apply each event; every (envelope, version) is produced once.
func TestConcurrentWritersApplyOnce(t *testing.T) {
	s1, r := newStore(t)
	s2, err := store.New(store.Config{Client: r.Client, Prefix: r.Prefix, MaxRetries: 1000})
	if err != nil {
		t.Fatal(err)
	}
	const envs, perEnv = 20, 6
	statuses := []schemas.Status{schemas.StatusCreated, schemas.StatusSent, schemas.StatusDelivered, schemas.StatusViewed, schemas.StatusPartiallySigned, schemas.StatusCompleted}
	var all []schemas.EnvelopeEvent
	for step := range perEnv {
		for e := range envs {
			id := fmt.Sprintf("e%d", e)
			all = append(all, ev(id, fmt.Sprintf("%s-%d", id, step), statuses[step]))
		}
	}
	type emitted struct {
		env     string
		version int64
	}
	var mu sync.Mutex
	applied := map[string]int{}
	seen := map[emitted]int{}
	run := func(s *store.Store, topic string, window int) error {
		for lo := 0; lo < len(all); lo += window / 2 { // overlapping windows
			hi := min(lo+window, len(all))
			res, _, err := s.Apply(context.Background(), inputs(topic, int64(lo), all[lo:hi]...))
			if err != nil {
				return err
			}
			for i, x := range res {
				if x.Kind != store.Applied {
					continue
				}
				ch, err := s.Change(x)
				if err != nil {
					return err
				}
				mu.Lock()
				applied[all[lo+i].EventID]++
				if ch != nil {
					seen[emitted{ch.EnvelopeID, ch.Version}]++
				}
				mu.Unlock()
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, s := range []*store.Store{s1, s2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- run(s, fmt.Sprintf("writer-%d", i), 10+i*7)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(applied) != len(all) {
		t.Fatalf("%d of %d events applied", len(applied), len(all))
	}
	for id, n := range applied {
		if n != 1 {
			t.Fatalf("event %s applied %d times", id, n)
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("%v emitted %d times", k, n)
		}
	}
	for e := range envs {
		id := fmt.Sprintf("e%d", e)
		st, _, _ := s1.Envelope(context.Background(), id)
		for v := int64(1); v <= st.State.Version; v++ {
			if seen[emitted{id, v}] != 1 {
				t.Fatalf("%s version %d emitted %d times", id, v, seen[emitted{id, v}])
			}
		}
		if *st.State.Status != schemas.StatusCompleted {
			t.Fatalf("%s ended %s", id, *st.State.Status)
		}
	}
}

// What happens between a batch's read and its write: a flush makes the
// write fail and the batch report ErrDataLoss with nothing written; another
// writer moving an envelope makes it read again and apply on top.
func TestInterferenceBetweenReadAndWrite(t *testing.T) {
	ctx := context.Background()
	t.Run("flush", func(t *testing.T) {
		s, r := newStore(t)
		s.SetBeforeWrite(func() { r.Flush(t) })
		_, stats, err := s.Apply(ctx, inputs("events", 0, ev("a", "a1", schemas.StatusSent)))
		if !errors.Is(err, store.ErrDataLoss) {
			t.Fatalf("got %v, want ErrDataLoss", err)
		}
		if stats.Conflicts != 1 {
			t.Fatalf("stats = %+v, want the write refused once", stats)
		}
		if n, _ := r.Client.Exists(ctx, r.Prefix+"env:a", r.Prefix+"dedup:a1").Result(); n != 0 {
			t.Fatalf("%d keys written after the flush", n)
		}
	})
	t.Run("other writer", func(t *testing.T) {
		s, r := newStore(t)
		other, err := store.New(store.Config{Client: r.Client, Prefix: r.Prefix, Now: func() time.Time { return t0 }})
		if err != nil {
			t.Fatal(err)
		}
		once := false
		s.SetBeforeWrite(func() {
			if once {
				return
			}
			once = true
			if _, _, err := other.Apply(ctx, inputs("other", 0, ev("a", "a1", schemas.StatusSent))); err != nil {
				t.Error(err)
			}
		})
		res, stats, err := s.Apply(ctx, inputs("events", 0, ev("a", "a1", schemas.StatusSent), ev("a", "a2", schemas.StatusDelivered)))
		if err != nil {
			t.Fatal(err)
		}
		if stats.Conflicts != 1 || stats.RoundTrips != 4 {
			t.Fatalf("stats = %+v, want one conflict and four round trips", stats)
		}
		if want := []store.Kind{store.Duplicate, store.Applied}; !reflect.DeepEqual(kinds(res), want) {
			t.Fatalf("kinds = %v, want %v (a1 went in through the other writer)", kinds(res), want)
		}
		if ch := change(t, s, res[1]); ch == nil || ch.Version != 2 {
			t.Fatalf("a2 change = %+v, want version 2 on top of the other writer's", ch)
		}
	})
}

// A batch deletes about twice its size plus 100 expired records, reading
// the log page after page, and whole entries (each of up to 256 records of
// one batch): a backlog is worked off over the next batches.
func TestDedupExpiryKeepsPace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		batches int     // the backlog: this many batches
		size    int     // of this many records
		want    []int64 // log entries after each of three one-event batches
		kept    string  // a backlog record left after the first of them
	}{
		// 102 records a batch, one per entry.
		{"one-record batches", 300, 1, []int64{300 - 102 + 1, 300 - 204 + 2, 3}, "old-102"},
		// Entries of 256, 256 and 88 records: one a batch.
		{"one big batch", 1, 600, []int64{2 + 1, 1 + 2, 3}, "old-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, r, now := clockedStore(t, time.Hour)
			ctx := context.Background()
			for b := range tc.batches {
				var old []schemas.EnvelopeEvent
				for i := b * tc.size; i < (b+1)*tc.size; i++ {
					old = append(old, ev(fmt.Sprintf("e%d", i), fmt.Sprintf("old-%d", i), schemas.StatusSent))
				}
				if _, _, err := s.Apply(ctx, inputs("events", int64(b*tc.size), old...)); err != nil {
					t.Fatal(err)
				}
			}
			exists := func(ids ...string) int64 {
				t.Helper()
				keys := make([]string, len(ids))
				for i, id := range ids {
					keys[i] = r.Prefix + "dedup:" + id
				}
				n, err := r.Client.Exists(ctx, keys...).Result()
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			*now = t0.Add(time.Hour + time.Millisecond)
			last := fmt.Sprintf("old-%d", tc.batches*tc.size-1)
			for i, want := range tc.want {
				if _, _, err := s.Apply(ctx, inputs("events", int64(1000+i), ev("new", fmt.Sprintf("new-%d", i), schemas.StatusSent))); err != nil {
					t.Fatal(err)
				}
				n, err := r.Client.LLen(ctx, r.Prefix+"dedup-log").Result()
				if err != nil || n != want {
					t.Fatalf("after batch %d the log holds %d entries (%v), want %d", i, n, err, want)
				}
				if i == 0 && (exists("old-0") != 0 || exists(tc.kept) != 1) {
					t.Fatalf("after batch 0: old-0 should be gone and %s kept", tc.kept)
				}
			}
			if n := exists("old-0", last, "new-0"); n != 1 {
				t.Fatalf("%d of old-0, %s, new-0 exist, want only new-0", n, last)
			}
		})
	}
}

// Log entries of the older layout, one "<unix ms> <id>" per record, still
// expire, as do ids holding the new layout's separators.
func TestDedupExpiryReadsOlderEntries(t *testing.T) {
	s, r, now := clockedStore(t, time.Hour)
	ctx := context.Background()
	id := "an id: with spaces"
	if err := r.Client.Set(ctx, r.Prefix+"dedup:"+id, "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.RPush(ctx, r.Prefix+"dedup-log", fmt.Sprintf("%d %s", t0.UnixMilli(), id)).Err(); err != nil {
		t.Fatal(err)
	}
	odd := "b:1\t2 3:"
	if _, _, err := s.Apply(ctx, inputs("events", 0, ev("b", odd, schemas.StatusSent), ev("b", "b2", schemas.StatusDelivered))); err != nil {
		t.Fatal(err)
	}
	*now = t0.Add(time.Hour + time.Millisecond)
	if _, _, err := s.Apply(ctx, inputs("events", 2, ev("a", "a1", schemas.StatusSent))); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Client.Exists(ctx, r.Prefix+"dedup:"+id, r.Prefix+"dedup:"+odd, r.Prefix+"dedup:b2", r.Prefix+"dedup:a1").Result(); err != nil || n != 1 {
		t.Fatalf("%d of the expired records and a1 exist (%v), want only a1", n, err)
	}
	if n, err := r.Client.LLen(ctx, r.Prefix+"dedup-log").Result(); err != nil || n != 1 {
		t.Fatalf("the log holds %d entries (%v), want a1's only", n, err)
	}
}

// A big batch gives, input by input, the results and the stored state that
// applying its events one batch at a time gives (on a store whose working
// memory is reused from batch to batch): replays and duplicates of records
// stored before, an event id repeated within the batch (on another
// envelope, too), and envelopes whose events are spread over the batch.
func TestBigBatchMatchesOneAtATime(t *testing.T) {
	ctx := context.Background()
	statuses := []schemas.Status{schemas.StatusCreated, schemas.StatusSent, schemas.StatusDelivered, schemas.StatusViewed, schemas.StatusCompleted, schemas.StatusDeclined}
	rng := rand.New(rand.NewPCG(7, 11))
	var evs []schemas.EnvelopeEvent
	for i := range 900 {
		env := fmt.Sprintf("e%d", rng.IntN(150))
		evs = append(evs, ev(env, fmt.Sprintf("%s-%d", env, i), statuses[rng.IntN(len(statuses))]))
	}
	// Earlier records: the first 100 events, from offsets 0..99.
	earlier := inputs("events", 0, evs[:100]...)
	batch := inputs("events", 0, evs...) // offsets 0..99 again: replays
	for _, i := range []int{120, 130, 140} {
		batch[i].From.Offset = 5000 + int64(i) // an earlier event from another record
		batch[i].Event = evs[i-100]
	}
	batch[700].Event.EventID = batch[300].Event.EventID // the same id on another envelope
	batch[701].Event = batch[400].Event                 // the same event twice

	whole, _ := newStore(t)
	single, _ := newStore(t)
	for _, s := range []*store.Store{whole, single} {
		if _, _, err := s.Apply(ctx, earlier); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := whole.Apply(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i := range batch {
		want, _, err := single.Apply(ctx, batch[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		if got[i].Kind != want[0].Kind || !bytes.Equal(got[i].Body, want[0].Body) {
			t.Fatalf("input %d: %v %+v, one at a time %v %+v", i, got[i].Kind, change(t, whole, got[i]), want[0].Kind, change(t, single, want[0]))
		}
	}
	count := map[store.Kind]int{}
	for _, r := range got {
		count[r.Kind]++
	}
	if count[store.Replay] != 100 || count[store.Duplicate] != 5 {
		t.Fatalf("kinds %v, want 100 replays and 5 duplicates", count)
	}
	for e := range 150 {
		id := fmt.Sprintf("e%d", e)
		a, okA, errA := whole.Envelope(ctx, id)
		b, okB, errB := single.Envelope(ctx, id)
		if errA != nil || errB != nil || okA != okB || !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: %+v (%v %v), one at a time %+v (%v %v)", id, a.State, okA, errA, b.State, okB, errB)
		}
	}
}

// A derived dedup id covers every recipient update: two events that differ
// only in their second recipient are two events; a one-recipient event
// keeps the id it always had.
func TestDedupIDCoversEveryRecipient(t *testing.T) {
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	ev := func(rs ...schemas.RecipientUpdate) schemas.EnvelopeEvent {
		return schemas.EnvelopeEvent{Provider: "sim", EnvelopeID: "env-1", OccurredAt: at, Recipients: rs}
	}
	r1 := schemas.RecipientUpdate{RecipientID: "r1", Status: schemas.RecipientSigned}
	r2 := schemas.RecipientUpdate{RecipientID: "r2", Status: schemas.RecipientSigned}
	r2viewed := schemas.RecipientUpdate{RecipientID: "r2", Status: schemas.RecipientViewed}
	if a, b := store.DedupID(ev(r1, r2)), store.DedupID(ev(r1, r2viewed)); a == b {
		t.Fatalf("events differing in their second recipient share the dedup id %s", a)
	}
	if a, b := store.DedupID(ev(r1)), store.DedupID(ev(r1, r2)); a == b {
		t.Fatalf("an extra recipient update does not change the dedup id %s", a)
	}
	if got, want := store.DedupID(ev(r1)), envelope.EventID("sim", "env-1", "", "r1=SIGNED", at); got != want {
		t.Fatalf("a one-recipient event's id changed: %s, was %s", got, want)
	}
	withID := ev(r1)
	withID.EventID = "evt_7"
	if got := store.DedupID(withID); got != "evt_7" {
		t.Fatalf("the provider's event id is the dedup id: got %s", got)
	}
}
