package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/schemas"
)

var t0 = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

// hist is the Kafka history the tests' checkpoints belong to.
var hist = store.History("cluster-1", "events-topic-1")

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
	return s, r, &now
}

// owner is a member that claimed one partition of a store, applying
// batches to it as the processor does.
type owner struct {
	t     testing.TB
	s     *store.Store
	p     int32
	token string
}

// claim claims partition p of s with a token of generation gen and, when
// the partition has no checkpoint, sets one at offset 0 (what the processor
// does for a partition whose changelog is empty).
func claim(t testing.TB, s *store.Store, p int32, gen int32) *owner {
	t.Helper()
	ctx := context.Background()
	token := store.Token(gen)
	old, err := s.Claim(ctx, p, token)
	if err != nil {
		t.Fatal(err)
	}
	if old == nil {
		if err := s.SetCheckpoint(ctx, p, token, 0, hist); err != nil {
			t.Fatal(err)
		}
	}
	return &owner{t: t, s: s, p: p, token: token}
}

// as returns the owner o would be on another store of the same Redis (a
// second connection of one member).
func (o *owner) as(s *store.Store) *owner { c := *o; c.s = s; return &c }

// batch returns the Batch for in: o's partition and token, floor 0, and
// the checkpoint after the last input.
func (o *owner) batch(in []store.Input) store.Batch {
	b := store.Batch{Partition: o.p, Token: o.token, History: hist}
	for _, x := range in {
		b.Next = max(b.Next, x.From.Offset+1)
	}
	return b
}

func (o *owner) try(in []store.Input) (store.Output, error) {
	return o.s.Apply(context.Background(), o.batch(in), in)
}

// apply applies in, failing the test on an error.
func (o *owner) apply(in []store.Input) store.Output {
	o.t.Helper()
	out, err := o.try(in)
	if err != nil {
		o.t.Fatal(err)
	}
	return out
}

// inputs returns evs as the records of o's partition of topic "events" from
// offset base on.
func (o *owner) inputs(base int64, evs ...schemas.EnvelopeEvent) []store.Input {
	return inputsOf("events", o.p, base, evs...)
}

func (o *owner) checkpoint() *store.Checkpoint {
	o.t.Helper()
	cps, err := o.s.Checkpoints(context.Background(), []int32{o.p})
	if err != nil {
		o.t.Fatal(err)
	}
	return cps[0]
}

func (o *owner) envelope(id string) (envelope.Envelope, bool) {
	o.t.Helper()
	e, ok, err := o.s.Envelope(context.Background(), o.p, id)
	if err != nil {
		o.t.Fatal(err)
	}
	return e, ok
}

func ev(env, id string, st schemas.Status) schemas.EnvelopeEvent {
	req := "req-" + env
	return schemas.EnvelopeEvent{EventID: id, Provider: "sim", EnvelopeID: env, RequestID: &req, Source: schemas.SourceWebhook, Status: &st, OccurredAt: t0, ReceivedAt: t0}
}

// inputs returns evs as the records of partition 0 of topic from offset
// base on.
func inputs(topic string, base int64, evs ...schemas.EnvelopeEvent) []store.Input {
	return inputsOf(topic, 0, base, evs...)
}

func inputsOf(topic string, p int32, base int64, evs ...schemas.EnvelopeEvent) []store.Input {
	in := make([]store.Input, len(evs))
	for i, e := range evs {
		in[i] = store.Input{Event: e, From: store.Coord{Topic: topic, Partition: p, Offset: base + int64(i)}}
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

// changelogSchema is the changelog topic's schema, the one consumers of
// Output.Envelopes' bodies decode them with.
var changelogSchema = sync.OnceValues(func() (avro.Schema, error) { return schemas.Parse(schemas.TopicEnvelopes) })

// changelog decodes a changelog body.
func changelog(t testing.TB, body []byte) schemas.Envelope {
	t.Helper()
	sch, err := changelogSchema()
	if err != nil {
		t.Fatal(err)
	}
	var e schemas.Envelope
	if err := avro.Unmarshal(sch, body, &e); err != nil {
		t.Fatalf("changelog body: %v", err)
	}
	return e
}

// checkEnvelopes checks that out.Envelopes names each of ids once, in that
// order, and that each body decodes with the changelog's schema to the
// state the store holds in partition p.
func checkEnvelopes(t testing.TB, s *store.Store, p int32, out store.Output, ids ...string) {
	t.Helper()
	var got []string
	for _, c := range out.Envelopes {
		got = append(got, c.EnvelopeID)
	}
	if !reflect.DeepEqual(got, ids) && (len(got) != 0 || len(ids) != 0) {
		t.Fatalf("Output.Envelopes = %v, want %v", got, ids)
	}
	for _, c := range out.Envelopes {
		stored, ok, err := s.Envelope(context.Background(), p, c.EnvelopeID)
		if err != nil || !ok {
			t.Fatalf("envelope %s: %v %v", c.EnvelopeID, ok, err)
		}
		if got, want := changelog(t, c.Body), (schemas.Envelope{State: stored.State, Pending: stored.Pending}); !reflect.DeepEqual(got, want) {
			t.Fatalf("changelog body of %s decodes to\n%+v\nwant the stored\n%+v", c.EnvelopeID, got, want)
		}
	}
}

// keys returns every key of the test's prefix, on every master of a
// cluster, sorted.
func keys(t testing.TB, r *redistest.Redis) []string {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var out []string
	scan := func(ctx context.Context, n redis.Cmdable) error {
		iter := n.Scan(ctx, 0, r.Prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			out = append(out, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := r.Client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return scan(ctx, n) })
	} else {
		err = scan(ctx, r.Client)
	}
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// dump returns every key of the test's prefix and its value, to tell
// whether anything was written.
func dump(t testing.TB, r *redistest.Redis) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, k := range keys(t, r) {
		typ, err := r.Client.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		switch typ {
		case "string":
			v, err = r.Client.Get(ctx, k).Result()
		case "hash":
			v, err = r.Client.HGetAll(ctx, k).Result()
		case "list":
			v, err = r.Client.LRange(ctx, k, 0, -1).Result()
		case "set":
			var m []string
			m, err = r.Client.SMembers(ctx, k).Result()
			sort.Strings(m)
			v = m
		case "zset":
			v, err = r.Client.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "none":
			continue
		default:
			t.Fatalf("key %s of type %s", k, typ)
		}
		if err != nil {
			t.Fatal(err)
		}
		out[k] = fmt.Sprintf("%s %q", typ, fmt.Sprint(v))
	}
	return out
}

// sameDump fails the test when Redis does not hold what before says.
func sameDump(t testing.TB, r *redistest.Redis, before map[string]string) {
	t.Helper()
	after := dump(t, r)
	for k, v := range after {
		if before[k] != v {
			t.Errorf("%s written: %s, was %s", k, v, before[k])
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			t.Errorf("%s deleted", k)
		}
	}
}

func TestApplyReplayDuplicate(t *testing.T) {
	s, _ := newStore(t)
	o := claim(t, s, 0, 1)
	ctx := context.Background()
	batch := o.inputs(10,
		ev("a", "a1", schemas.StatusSent),
		ev("b", "b1", schemas.StatusSent),
		ev("a", "a2", schemas.StatusDelivered),
		ev("a", "a0", schemas.StatusCreated), // older: audited, no change
		ev("b", "b1", schemas.StatusSent),    // same event twice in one batch
	)
	out := o.apply(batch)
	res := out.Results
	if want := []store.Kind{store.Applied, store.Applied, store.Applied, store.Applied, store.Duplicate}; !reflect.DeepEqual(kinds(res), want) {
		t.Fatalf("kinds = %v, want %v", kinds(res), want)
	}
	if out.Stats.RoundTrips != 2 || out.Stats.Conflicts != 0 {
		t.Fatalf("stats = %+v, want 2 round trips", out.Stats)
	}
	if ch := change(t, s, res[2]); ch == nil || ch.Version != 2 || ch.Status != schemas.StatusDelivered {
		t.Fatalf("a2 change = %+v", ch)
	}
	if res[3].Changed() {
		t.Fatalf("older event changed the status: %+v", change(t, s, res[3]))
	}
	checkEnvelopes(t, s, 0, out, "a", "b")
	if cp := o.checkpoint(); cp == nil || cp.Next != 15 {
		t.Fatalf("checkpoint %+v, want next 15", cp)
	}

	// The same records again (a crash before the Kafka commit): replays
	// with the very changes stored the first time, and the envelopes, as
	// stored, for the changelog. Two round trips: the read, and the EXEC
	// that moves the checkpoint to the batch's end.
	again := o.apply(batch[:4])
	if again.Stats.RoundTrips != 2 {
		t.Fatalf("replay round trips = %d, want 2", again.Stats.RoundTrips)
	}
	for i, r := range again.Results {
		if r.Kind != store.Replay || !bytes.Equal(r.Body, res[i].Body) {
			t.Fatalf("replay %d: %v %+v, want %+v", i, r.Kind, change(t, s, r), change(t, s, res[i]))
		}
	}
	checkEnvelopes(t, s, 0, again, "a", "b")
	if cp := o.checkpoint(); cp == nil || cp.Next != 14 {
		t.Fatalf("checkpoint %+v after the replay, want next 14", cp)
	}

	// The same events from other records (a redelivered webhook):
	// duplicates, nothing emitted.
	dup := o.apply(o.inputs(100, batch[0].Event, batch[2].Event))
	if want := []store.Kind{store.Duplicate, store.Duplicate}; !reflect.DeepEqual(kinds(dup.Results), want) {
		t.Fatalf("kinds = %v, want %v", kinds(dup.Results), want)
	}
	checkEnvelopes(t, s, 0, dup)

	e, ok := o.envelope("a")
	if !ok {
		t.Fatal("a not stored")
	}
	if *e.State.Status != schemas.StatusDelivered || e.State.Version != 2 || e.State.AuditSeq != 3 || len(e.Pending) != 1 {
		t.Fatalf("stored a = %+v pending %d", e.State, len(e.Pending))
	}
	got, err := s.Requests(ctx, []store.RequestKey{{ID: "req-a"}, {ID: "req-b"}, {ID: "req-none"}})
	want := map[store.RequestKey]store.RequestEntry{{ID: "req-a"}: {EnvelopeID: "a"}, {ID: "req-b"}: {EnvelopeID: "b"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("request index: %v %v, want %v", got, err, want)
	}
}

// Dedup records are deleted by later batches once older than DedupTTL, not
// before, and an event whose record is gone is applied again without
// changing the status a second time.
func TestDedupRecordsExpire(t *testing.T) {
	s, r, now := clockedStore(t, 90*time.Minute)
	o := claim(t, s, 0, 1)
	ctx := context.Background()
	apply := func(at time.Duration, offset int64, e schemas.EnvelopeEvent) store.Result {
		t.Helper()
		*now = t0.Add(at)
		return o.apply(o.inputs(offset, e)).Results[0]
	}
	exists := func(env, id string) bool {
		t.Helper()
		n, err := r.Client.Exists(ctx, s.DedupKey(0, env, id)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	apply(0, 0, ev("x", "x1", schemas.StatusSent))
	apply(time.Minute, 1, ev("y", "y1", schemas.StatusSent))
	apply(90*time.Minute, 2, ev("z", "z1", schemas.StatusSent)) // x1 is exactly 90m old: kept
	if !exists("x", "x1") || !exists("y", "y1") {
		t.Fatal("a record younger than the TTL was deleted")
	}
	if got := apply(90*time.Minute, 3, ev("x", "x1", schemas.StatusSent)); got.Kind != store.Duplicate {
		t.Fatalf("redelivery within the TTL: %v, want duplicate", got.Kind)
	}
	apply(90*time.Minute+time.Millisecond, 4, ev("z", "z2", schemas.StatusDelivered))
	if exists("x", "x1") || !exists("y", "y1") || !exists("z", "z1") {
		t.Fatalf("after the TTL: x1 %v y1 %v z1 %v, want only x1 gone", exists("x", "x1"), exists("y", "y1"), exists("z", "z1"))
	}
	if got := apply(2*time.Hour, 5, ev("x", "x1", schemas.StatusSent)); got.Kind != store.Applied || got.Changed() {
		t.Fatalf("redelivery after expiry: %v %+v, want applied without a change", got.Kind, change(t, s, got))
	}
	if exists("y", "y1") {
		t.Fatal("y1 outlived its TTL")
	}
	if n, err := r.Client.LLen(ctx, s.DedupLogKey(0)).Result(); err != nil || n != 3 {
		t.Fatalf("dedup log holds %d entries (%v), want 3: z1, z2 and x1 again", n, err)
	}
}

// Redis that lost its data (a flush, a restart without persistence) has no
// checkpoint: a batch is refused with ErrBehind and writes nothing, even
// once the member claims the partition again.
func TestFlushedRedisWritesNothing(t *testing.T) {
	s, r := newStore(t)
	o := claim(t, s, 0, 1)
	ctx := context.Background()
	o.apply(o.inputs(0, ev("a", "a1", schemas.StatusSent)))
	r.Flush(t) // Redis lost its data
	for _, reclaim := range []bool{false, true} {
		if reclaim {
			o = &owner{t: t, s: s, p: 0, token: store.Token(2)}
			old, err := s.Claim(ctx, 0, o.token)
			if err != nil || old != nil {
				t.Fatalf("Claim after the flush = %+v, %v, want no checkpoint", old, err)
			}
		}
		before := dump(t, r)
		_, err := o.try(o.inputs(1, ev("a", "a2", schemas.StatusDelivered), ev("b", "b1", schemas.StatusSent)))
		var be *store.BehindError
		if !errors.Is(err, store.ErrBehind) || !errors.As(err, &be) || be.Partition != 0 {
			t.Fatalf("reclaimed %v: got %v, want a *BehindError for partition 0", reclaim, err)
		}
		sameDump(t, r, before)
		if _, ok := o.envelope("a"); ok {
			t.Fatal("envelope written without a checkpoint")
		}
	}
}

func TestActiveIndexAndStale(t *testing.T) {
	s, _, now := clockedStore(t, 0)
	o := claim(t, s, 0, 1)
	ctx := context.Background()
	for i, id := range []string{"old", "mid", "new"} {
		*now = t0.Add(time.Duration(i) * time.Hour)
		o.apply(o.inputs(int64(i), ev(id, id+"1", schemas.StatusSent)))
	}
	got, err := s.Stale(ctx, t0.Add(90*time.Minute), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].EnvelopeID != "old" || got[1].EnvelopeID != "mid" || !got[0].UpdatedAt.Equal(t0) || got[0].Partition != 0 {
		t.Fatalf("stale = %+v", got)
	}
	o.apply(o.inputs(9, ev("old", "old2", schemas.StatusCompleted)))
	if n, err := s.Active(ctx); err != nil || n != 2 {
		t.Fatalf("active = %d (%v) after a terminal status, want 2", n, err)
	}
	if got, err := s.Stale(ctx, t0.Add(3*time.Hour), 1); err != nil || len(got) != 1 || got[0].EnvelopeID != "mid" {
		t.Fatalf("stale with limit 1 = %+v (%v)", got, err)
	}
}

// Two writers apply overlapping batches of the same events (two
// connections of one owner, each with its own store). The compare-and-set
// lets exactly one apply each event; every (envelope, version) is produced
// once.
func TestConcurrentWritersApplyOnce(t *testing.T) {
	s1, r := newStore(t)
	s2, err := store.New(store.Config{Client: r.Client, Prefix: r.Prefix, MaxRetries: 1000})
	if err != nil {
		t.Fatal(err)
	}
	o1 := claim(t, s1, 0, 1)
	o2 := o1.as(s2)
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
	run := func(o *owner, topic string, window int) error {
		for lo := 0; lo < len(all); lo += window / 2 { // overlapping windows
			hi := min(lo+window, len(all))
			out, err := o.try(inputs(topic, int64(lo), all[lo:hi]...))
			if err != nil {
				return err
			}
			for i, x := range out.Results {
				if x.Kind != store.Applied {
					continue
				}
				ch, err := o.s.Change(x)
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
	for i, o := range []*owner{o1, o2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- run(o, fmt.Sprintf("writer-%d", i), 10+i*7)
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
		st, _ := o1.envelope(id)
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
// write fail and the batch report ErrBehind with nothing written; another
// member's claim makes it fail with ErrFenced, nothing written; another
// writer of the same owner moving an envelope makes it read again and
// apply on top.
func TestInterferenceBetweenReadAndWrite(t *testing.T) {
	for _, tc := range []struct {
		name   string
		during func(t *testing.T, s *store.Store, r *redistest.Redis)
		want   error
	}{
		{"flush", func(t *testing.T, s *store.Store, r *redistest.Redis) { r.Flush(t) }, store.ErrBehind},
		{"claim", func(t *testing.T, s *store.Store, r *redistest.Redis) {
			if _, err := s.Claim(context.Background(), 0, store.Token(2)); err != nil {
				t.Error(err)
			}
		}, store.ErrFenced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, r := newStore(t)
			o := claim(t, s, 0, 1)
			o.apply(o.inputs(0, ev("a", "a1", schemas.StatusSent)))
			var before map[string]string
			s.SetBeforeWrite(func() {
				if before == nil {
					tc.during(t, s, r)
					before = dump(t, r)
				}
			})
			out, err := o.try(o.inputs(1, ev("a", "a2", schemas.StatusDelivered), ev("b", "b1", schemas.StatusSent)))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if before == nil {
				t.Fatal("the batch wrote nothing to interfere with")
			}
			if len(out.Results) != 0 || len(out.Envelopes) != 0 {
				t.Fatalf("output %+v with the error", out)
			}
			sameDump(t, r, before)
		})
	}
	t.Run("other writer", func(t *testing.T) {
		ctx := context.Background()
		s, r := newStore(t)
		other, err := store.New(store.Config{Client: r.Client, Prefix: r.Prefix, Now: func() time.Time { return t0 }})
		if err != nil {
			t.Fatal(err)
		}
		o := claim(t, s, 0, 1)
		once := false
		s.SetBeforeWrite(func() {
			if once {
				return
			}
			once = true
			in := inputs("other", 0, ev("a", "a1", schemas.StatusSent))
			if _, err := other.Apply(ctx, o.batch(in), in); err != nil {
				t.Error(err)
			}
		})
		out := o.apply(o.inputs(0, ev("a", "a1", schemas.StatusSent), ev("a", "a2", schemas.StatusDelivered)))
		if out.Stats.Conflicts != 1 || out.Stats.RoundTrips != 4 {
			t.Fatalf("stats = %+v, want one conflict and four round trips", out.Stats)
		}
		if want := []store.Kind{store.Duplicate, store.Applied}; !reflect.DeepEqual(kinds(out.Results), want) {
			t.Fatalf("kinds = %v, want %v (a1 went in through the other writer)", kinds(out.Results), want)
		}
		if ch := change(t, s, out.Results[1]); ch == nil || ch.Version != 2 {
			t.Fatalf("a2 change = %+v, want version 2 on top of the other writer's", ch)
		}
		checkEnvelopes(t, s, 0, out, "a")
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
		kept    int     // a backlog record left after the first of them
	}{
		// 102 records a batch, one per entry.
		{"one-record batches", 300, 1, []int64{300 - 102 + 1, 300 - 204 + 2, 3}, 102},
		// Entries of 256, 256 and 88 records: one a batch.
		{"one big batch", 1, 600, []int64{2 + 1, 1 + 2, 3}, 256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, r, now := clockedStore(t, time.Hour)
			o := claim(t, s, 0, 1)
			ctx := context.Background()
			old := func(i int) (string, string) { return fmt.Sprintf("e%d", i), fmt.Sprintf("old-%d", i) }
			for b := range tc.batches {
				var evs []schemas.EnvelopeEvent
				for i := b * tc.size; i < (b+1)*tc.size; i++ {
					env, id := old(i)
					evs = append(evs, ev(env, id, schemas.StatusSent))
				}
				o.apply(o.inputs(int64(b*tc.size), evs...))
			}
			exists := func(ks ...string) int64 { // one partition's: one slot
				t.Helper()
				n, err := r.Client.Exists(ctx, ks...).Result()
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			oldKey := func(i int) string { env, id := old(i); return s.DedupKey(0, env, id) }
			*now = t0.Add(time.Hour + time.Millisecond)
			for i, want := range tc.want {
				o.apply(o.inputs(int64(1000+i), ev("new", fmt.Sprintf("new-%d", i), schemas.StatusSent)))
				n, err := r.Client.LLen(ctx, s.DedupLogKey(0)).Result()
				if err != nil || n != want {
					t.Fatalf("after batch %d the log holds %d entries (%v), want %d", i, n, err, want)
				}
				if i == 0 && (exists(oldKey(0)) != 0 || exists(oldKey(tc.kept)) != 1) {
					t.Fatalf("after batch 0: old-0 should be gone and old-%d kept", tc.kept)
				}
			}
			if n := exists(oldKey(0), oldKey(tc.batches*tc.size-1), s.DedupKey(0, "new", "new-0")); n != 1 {
				t.Fatalf("%d of old-0, the last old record, new-0 exist, want only new-0", n)
			}
		})
	}
}

// Log entries of the older layout, one "<unix ms> <dedup suffix>" per
// record, still expire, as do ids holding the new layout's separators.
func TestDedupExpiryReadsOlderEntries(t *testing.T) {
	s, r, now := clockedStore(t, time.Hour)
	o := claim(t, s, 0, 1)
	ctx := context.Background()
	env, id := "c", "an id: with spaces"
	oldKey := s.DedupKey(0, env, id)
	suffix := store.DedupSuffix(env, id)
	if err := r.Client.Set(ctx, oldKey, "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.RPush(ctx, s.DedupLogKey(0), fmt.Sprintf("%d %s", t0.UnixMilli(), suffix)).Err(); err != nil {
		t.Fatal(err)
	}
	odd := "b:1\t2 3:"
	o.apply(o.inputs(0, ev("b", odd, schemas.StatusSent), ev("b", "b2", schemas.StatusDelivered)))
	*now = t0.Add(time.Hour + time.Millisecond)
	o.apply(o.inputs(2, ev("a", "a1", schemas.StatusSent)))
	for _, k := range []string{oldKey, s.DedupKey(0, "b", odd), s.DedupKey(0, "b", "b2")} {
		if n, err := r.Client.Exists(ctx, k).Result(); err != nil || n != 0 {
			t.Fatalf("expired record %s exists (%v)", k, err)
		}
	}
	if n, err := r.Client.Exists(ctx, s.DedupKey(0, "a", "a1")).Result(); err != nil || n != 1 {
		t.Fatalf("a1's record is gone (%v)", err)
	}
	if n, err := r.Client.LLen(ctx, s.DedupLogKey(0)).Result(); err != nil || n != 1 {
		t.Fatalf("the log holds %d entries (%v), want a1's only", n, err)
	}
}

// A big batch gives, input by input, the results and the stored state that
// applying its events one batch at a time gives (on a store whose working
// memory is reused from batch to batch): replays and duplicates of records
// stored before, an event id repeated within the batch on another envelope
// (not a duplicate: dedup ids are scoped by envelope), the same event twice,
// and envelopes whose events are spread over the batch.
func TestBigBatchMatchesOneAtATime(t *testing.T) {
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
	if batch[700].Event.EnvelopeID == batch[300].Event.EnvelopeID {
		t.Fatal("inputs 300 and 700 share an envelope: pick others")
	}
	batch[701].Event = batch[400].Event // the same event twice

	sw, _ := newStore(t)
	ss, _ := newStore(t)
	whole, single := claim(t, sw, 0, 1), claim(t, ss, 0, 1)
	whole.apply(earlier)
	single.apply(earlier)
	out := whole.apply(batch)
	got := out.Results
	for i := range batch {
		want := single.apply(batch[i : i+1]).Results
		if got[i].Kind != want[0].Kind || !bytes.Equal(got[i].Body, want[0].Body) {
			t.Fatalf("input %d: %v %+v, one at a time %v %+v", i, got[i].Kind, change(t, sw, got[i]), want[0].Kind, change(t, ss, want[0]))
		}
	}
	count := map[store.Kind]int{}
	for _, r := range got {
		count[r.Kind]++
	}
	if count[store.Replay] != 100 || count[store.Duplicate] != 4 {
		t.Fatalf("kinds %v, want 100 replays and 4 duplicates", count)
	}
	// Every envelope an applied event changed, once, in the order of its
	// first event in the batch; then those only replayed, in the order of
	// their first replay.
	seen, applied, replayed := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i, r := range got {
		switch id := batch[i].Event.EnvelopeID; r.Kind {
		case store.Applied:
			applied[id] = true
		case store.Replay:
			replayed[id] = true
		}
	}
	var order, replayOnly []string
	for i, r := range got {
		id := batch[i].Event.EnvelopeID
		switch {
		case seen[id]:
		case applied[id]:
			order = append(order, id)
		case replayed[id] && r.Kind == store.Replay:
			replayOnly = append(replayOnly, id)
		default:
			continue
		}
		seen[id] = true
	}
	checkEnvelopes(t, sw, 0, out, append(order, replayOnly...)...)
	for e := range 150 {
		id := fmt.Sprintf("e%d", e)
		a, okA := whole.envelope(id)
		b, okB := single.envelope(id)
		if okA != okB || !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: %+v (%v), one at a time %+v (%v)", id, a.State, okA, b.State, okB)
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
