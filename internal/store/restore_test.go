package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/schemas"
)

// state returns the envelope that evs make, applied in order at t0: a state
// as the changelog would hold it.
func state(evs ...schemas.EnvelopeEvent) envelope.Envelope {
	var e envelope.Envelope
	for _, x := range evs {
		e, _ = e.Apply(x, t0)
	}
	if e.Pending == nil {
		e.Pending = []schemas.AuditEntry{} // as it reads back from Redis
	}
	return e
}

// partKeys returns the dump of partition p's keys.
func partKeys(t testing.TB, s *store.Store, r *redistest.Redis, p int32) map[string]string {
	t.Helper()
	tag := strings.TrimSuffix(s.CheckpointKey(p), "ckpt")
	out := map[string]string{}
	for k, v := range dump(t, r) {
		if strings.HasPrefix(k, tag) {
			out[k] = v
		}
	}
	return out
}

// restore restores partition p of s as the holder of token with envs, to
// checkpoint next.
func restore(t testing.TB, s *store.Store, p int32, token string, next int64, envs ...envelope.Envelope) error {
	t.Helper()
	ctx := context.Background()
	rs, err := s.BeginRestore(ctx, p, token)
	if err != nil {
		return err
	}
	for i := range envs {
		if err := rs.Put(ctx, &envs[i]); err != nil {
			return err
		}
	}
	n, err := rs.Finish(ctx, next, hist)
	if err == nil && n != len(envs) {
		t.Fatalf("Finish = %d, want %d", n, len(envs))
	}
	return err
}

// A restore replaces one partition's keys with the changelog's states: the
// old keys are gone, the active index and the request index are rebuilt,
// the checkpoint is set; other partitions are untouched (1 and 10 share a
// prefix, not a hash tag).
func TestRestoreReplacesPartition(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	o1 := claim(t, s, 1, 1)
	o1.apply(o1.inputs(0,
		reqEv("a", "a1", schemas.StatusSent, "acme", "r-a"),
		reqEv("b", "b1", schemas.StatusSent, "acme", "r-b"),
		ev("x", "x1", schemas.StatusSent)))
	neighbours := map[int32]map[string]string{}
	for _, p := range []int32{0, 10} {
		o := claim(t, s, p, 1)
		o.apply(o.inputs(0, ev(fmt.Sprintf("n%d", p), "1", schemas.StatusSent)))
		neighbours[p] = partKeys(t, s, r, p)
	}

	// r-a was claimed with its content's hash; its state, from before
	// states carried the hash, has none.
	if _, err := s.ClaimRequests(ctx, []store.RequestKey{{Tenant: "acme", ID: "r-a"}}, []string{"hash-a"}); err != nil {
		t.Fatal(err)
	}

	// The changelog: a further on than Redis has it, x completed, d new
	// (its create's event carried its request's hash); b is not there
	// (its batch wrote Redis and its transaction aborted).
	a := state(reqEv("a", "a1", schemas.StatusSent, "acme", "r-a"), reqEv("a", "a2", schemas.StatusDelivered, "acme", "r-a"))
	x := state(ev("x", "x1", schemas.StatusSent), ev("x", "x2", schemas.StatusCompleted))
	d1 := reqEv("d", "d1", schemas.StatusSent, "", "r-d")
	hashD := "hash-d"
	d1.RequestHash = &hashD
	d := state(d1)

	tok := store.Token(2)
	old, err := s.Claim(ctx, 1, tok)
	if err != nil || old == nil || old.Next != 3 {
		t.Fatalf("claim = %+v, %v, want the checkpoint at 3", old, err)
	}
	rs, err := s.BeginRestore(ctx, 1, tok)
	if err != nil {
		t.Fatal(err)
	}
	if got := partKeys(t, s, r, 1); len(got) != 1 || got[strings.TrimSuffix(s.CheckpointKey(1), "ckpt")+"owner"] == "" {
		t.Fatalf("after BeginRestore partition 1 holds %v, want its owner only", got)
	}
	for _, e := range []envelope.Envelope{a, x, d} {
		if err := rs.Put(ctx, &e); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := rs.Finish(ctx, 42, hist); err != nil || n != 3 {
		t.Fatalf("Finish = %d, %v, want 3", n, err)
	}

	want := &store.Checkpoint{Next: 42, Owner: tok, History: hist}
	o := &owner{t: t, s: s, p: 1, token: tok}
	if got := o.checkpoint(); !reflect.DeepEqual(got, want) {
		t.Fatalf("checkpoint %+v, want %+v", got, want)
	}
	var gotKeys []string
	for k := range partKeys(t, s, r, 1) {
		gotKeys = append(gotKeys, k)
	}
	sort.Strings(gotKeys)
	wantKeys := []string{s.ActiveKey(1), s.CheckpointKey(1), s.EnvKey(1, "a"), s.EnvKey(1, "d"), s.EnvKey(1, "x"), strings.TrimSuffix(s.CheckpointKey(1), "ckpt") + "owner"}
	sort.Strings(wantKeys)
	if !reflect.DeepEqual(gotKeys, wantKeys) {
		t.Fatalf("partition 1 keys\n%v\nwant\n%v", gotKeys, wantKeys)
	}
	for _, e := range []envelope.Envelope{a, x, d} {
		got, ok := o.envelope(e.State.EnvelopeID)
		if !ok || !reflect.DeepEqual(got, e) {
			t.Fatalf("restored %s = %#v, want %#v", e.State.EnvelopeID, got, e)
		}
	}
	for p, before := range neighbours {
		if got := partKeys(t, s, r, p); !reflect.DeepEqual(got, before) {
			t.Fatalf("partition %d changed by the restore of 1:\n%v\nwas\n%v", p, got, before)
		}
	}
	stale, err := s.Stale(ctx, t0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var staleIDs []string
	for _, st := range stale {
		staleIDs = append(staleIDs, fmt.Sprintf("%s@%d", st.EnvelopeID, st.Partition))
	}
	sort.Strings(staleIDs)
	if want := []string{"a@1", "d@1", "n0@0", "n10@10"}; !reflect.DeepEqual(staleIDs, want) {
		t.Fatalf("active envelopes %v, want %v (x is terminal)", staleIDs, want)
	}
	// The request index is rebuilt from the states, with the request's
	// hash where the state has one (d: a request with other content is
	// still a conflict) and the claimed hash kept where it has none (a);
	// b's entry stays: the provider created b, and the request must not
	// create it again.
	reqs, err := s.Requests(ctx, []store.RequestKey{{Tenant: "acme", ID: "r-a"}, {Tenant: "acme", ID: "r-b"}, {ID: "r-d"}})
	wantReqs := map[store.RequestKey]store.RequestEntry{
		{Tenant: "acme", ID: "r-a"}: {EnvelopeID: "a", Partition: 1, Hash: "hash-a"},
		{Tenant: "acme", ID: "r-b"}: {EnvelopeID: "b", Partition: 1},
		{ID: "r-d"}:                 {EnvelopeID: "d", Partition: 1, Hash: "hash-d"},
	}
	if err != nil || !reflect.DeepEqual(reqs, wantReqs) {
		t.Fatalf("request index %+v, %v, want %+v", reqs, err, wantReqs)
	}

	// Batches go on from the checkpoint: the dedup records are gone, but
	// the monotonic machine emits nothing for a redelivered event.
	in := o.inputs(42, ev("a", "a2", schemas.StatusDelivered), ev("a", "a3", schemas.StatusCompleted))
	b := o.batch(in)
	b.Floor = 42
	out, err := s.Apply(ctx, b, in)
	if err != nil {
		t.Fatal(err)
	}
	if out.Results[0].Kind != store.Applied || out.Results[0].Changed() {
		t.Fatalf("redelivery after restore: %v %+v", out.Results[0].Kind, change(t, s, out.Results[0]))
	}
	if ch := change(t, s, out.Results[1]); ch == nil || ch.Version != a.State.Version+1 || ch.Status != schemas.StatusCompleted {
		t.Fatalf("after restore: %+v, want version %d", ch, a.State.Version+1)
	}
	// The earlier owner is fenced.
	if _, err := o1.try(o1.inputs(3, ev("a", "a9", schemas.StatusVoided))); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("the earlier owner's batch: got %v, want ErrFenced", err)
	}
}

// A restore writes its states a chunk at a time.
func TestRestoreManyEnvelopes(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	tok := store.Token(1)
	if _, err := s.Claim(ctx, 3, tok); err != nil {
		t.Fatal(err)
	}
	envs := make([]envelope.Envelope, 2500)
	for i := range envs {
		envs[i] = state(ev(fmt.Sprintf("e%04d", i), "1", schemas.StatusSent))
	}
	if err := restore(t, s, 3, tok, 7, envs...); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Active(ctx); err != nil || n != 2500 {
		t.Fatalf("active = %d, %v, want 2500", n, err)
	}
	got, err := s.Envelopes(ctx, 3, []string{"e0000", "e0999", "e1000", "e2499"})
	if err != nil || len(got) != 4 {
		t.Fatalf("%d of 4 envelopes (%v)", len(got), err)
	}
}

// A restore that a later claim overtook, or that was abandoned, leaves no
// checkpoint behind, so nobody trusts what it wrote.
func TestRestoreFenced(t *testing.T) {
	ctx := context.Background()
	a := state(ev("a", "a1", schemas.StatusSent))
	t.Run("finish after another claim", func(t *testing.T) {
		s, _ := newStore(t)
		t1, t2 := store.Token(1), store.Token(2)
		if _, err := s.Claim(ctx, 0, t1); err != nil {
			t.Fatal(err)
		}
		rs, err := s.BeginRestore(ctx, 0, t1)
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.Put(ctx, &a); err != nil {
			t.Fatal(err)
		}
		if old, err := s.Claim(ctx, 0, t2); err != nil || old != nil {
			t.Fatalf("claim during the restore = %+v, %v, want no checkpoint", old, err)
		}
		if _, err := rs.Finish(ctx, 5, hist); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("Finish after another claim: got %v, want ErrFenced", err)
		}
		if cps, err := s.Checkpoints(ctx, []int32{0}); err != nil || cps[0] != nil {
			t.Fatalf("checkpoint %+v, %v, want none", cps[0], err)
		}
		o := &owner{t: t, s: s, p: 0, token: t2}
		if _, err := o.try(o.inputs(5, ev("a", "a2", schemas.StatusDelivered))); !errors.Is(err, store.ErrBehind) {
			t.Fatalf("the new owner's batch: got %v, want ErrBehind", err)
		}
	})
	t.Run("begin after another claim", func(t *testing.T) {
		s, r := newStore(t)
		o := claim(t, s, 0, 1)
		o.apply(o.inputs(0, ev("a", "a1", schemas.StatusSent)))
		if _, err := s.Claim(ctx, 0, store.Token(2)); err != nil {
			t.Fatal(err)
		}
		before := dump(t, r)
		if _, err := s.BeginRestore(ctx, 0, o.token); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("BeginRestore after another claim: got %v, want ErrFenced", err)
		}
		sameDump(t, r, before)
	})
	t.Run("abandoned", func(t *testing.T) {
		s, r := newStore(t)
		o := claim(t, s, 0, 1)
		o.apply(o.inputs(0, ev("b", "b1", schemas.StatusSent)))
		rs, err := s.BeginRestore(ctx, 0, o.token)
		if err != nil {
			t.Fatal(err)
		}
		many := make([]envelope.Envelope, 1500) // more than a chunk: some are written
		for i := range many {
			many[i] = state(ev(fmt.Sprintf("e%d", i), "1", schemas.StatusSent))
		}
		for i := range many {
			if err := rs.Put(ctx, &many[i]); err != nil {
				t.Fatal(err)
			}
		}
		// The restorer dies here.
		if cp := o.checkpoint(); cp != nil {
			t.Fatalf("checkpoint %+v after an abandoned restore", cp)
		}
		if _, err := o.try(o.inputs(1, ev("a", "a1", schemas.StatusSent))); !errors.Is(err, store.ErrBehind) {
			t.Fatalf("batch after an abandoned restore: got %v, want ErrBehind", err)
		}
		// The next restore starts over.
		if err := restore(t, s, 0, o.token, 1, a); err != nil {
			t.Fatal(err)
		}
		if got := partKeys(t, s, r, 0); len(got) != 4 { // ckpt, owner, env:a, active
			t.Fatalf("partition 0 after the second restore: %v", got)
		}
		o.apply(o.inputs(1, ev("a", "a2", schemas.StatusDelivered)))
	})
}

// A member that lost the partition while it restored it (a zombie) must
// not write over the new owner's keys: once the new owner has claimed,
// restored and applied, the zombie's remaining Puts and its Finish change
// nothing.
func TestRestoreZombieWritesNothing(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	old := state(ev("a", "a1", schemas.StatusSent))
	zombie := store.Token(1)
	if _, err := s.Claim(ctx, 0, zombie); err != nil {
		t.Fatal(err)
	}
	rs, err := s.BeginRestore(ctx, 0, zombie)
	if err != nil {
		t.Fatal(err)
	}
	// The new owner claims, restores and applies a batch meanwhile.
	o := &owner{t: t, s: s, p: 0, token: store.Token(2)}
	if _, err := s.Claim(ctx, 0, o.token); err != nil {
		t.Fatal(err)
	}
	if err := restore(t, s, 0, o.token, 1, old); err != nil {
		t.Fatal(err)
	}
	in := o.inputs(1, ev("a", "a2", schemas.StatusDelivered))
	b := o.batch(in)
	b.Floor = 1
	if _, err := s.Apply(ctx, b, in); err != nil {
		t.Fatal(err)
	}
	before := dump(t, r)
	if err := rs.Put(ctx, &old); err != nil && !errors.Is(err, store.ErrFenced) {
		t.Fatal(err)
	}
	if _, err := rs.Finish(ctx, 1, hist); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("the zombie's Finish: got %v, want ErrFenced", err)
	}
	sameDump(t, r, before)
	if e, _ := o.envelope("a"); e.State.Status == nil || *e.State.Status != schemas.StatusDelivered {
		t.Fatalf("the new owner's envelope went back to %+v", e.State)
	}
}
