package store_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/schemas"
)

// A batch the checkpoint does not vouch for is refused and writes nothing:
// ErrBehind (a *BehindError) when Redis cannot be trusted, ErrFenced when
// another member owns the partition.
func TestApplyRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// setup prepares Redis, after o applied offsets 0..4, and may
		// change the batch o applies next.
		setup func(t *testing.T, s *store.Store, r *redistest.Redis, o *owner, b *store.Batch)
		want  error
	}{
		{"no checkpoint", func(t *testing.T, s *store.Store, r *redistest.Redis, o *owner, b *store.Batch) {
			if err := r.Client.Del(ctx, s.CheckpointKey(0)).Err(); err != nil {
				t.Fatal(err)
			}
		}, store.ErrBehind},
		{"flushed and claimed again", func(t *testing.T, s *store.Store, r *redistest.Redis, o *owner, b *store.Batch) {
			r.Flush(t)
			b.Token = store.Token(2)
			if _, err := s.Claim(ctx, 0, b.Token); err != nil {
				t.Fatal(err)
			}
		}, store.ErrBehind},
		{"another history", func(t *testing.T, s *store.Store, r *redistest.Redis, o *owner, b *store.Batch) {
			b.History = store.History("cluster-2", "events-topic-1")
		}, store.ErrBehind},
		{"another topic", func(t *testing.T, s *store.Store, r *redistest.Redis, o *owner, b *store.Batch) {
			b.History = store.History("cluster-1", "events-topic-2")
		}, store.ErrBehind},
		{"checkpoint below the floor", func(t *testing.T, s *store.Store, r *redistest.Redis, o *owner, b *store.Batch) {
			b.Floor = 6 // committed up to 6, Redis holds up to 5
		}, store.ErrBehind},
		{"checkpoint set back by a restore of an older state", func(t *testing.T, s *store.Store, r *redistest.Redis, o *owner, b *store.Batch) {
			if err := s.SetCheckpoint(ctx, 0, o.token, 3, hist); err != nil {
				t.Fatal(err)
			}
			b.Floor = 5
		}, store.ErrBehind},
		{"owner of an earlier generation (Redis went back before our claim)", func(t *testing.T, s *store.Store, r *redistest.Redis, o *owner, b *store.Batch) {
			b.Token = store.Token(2) // a claim Redis lost
		}, store.ErrBehind},
		{"claimed by a later generation", func(t *testing.T, s *store.Store, r *redistest.Redis, o *owner, b *store.Batch) {
			if _, err := s.Claim(ctx, 0, store.Token(2)); err != nil {
				t.Fatal(err)
			}
		}, store.ErrFenced},
		{"claimed by a much later generation", func(t *testing.T, s *store.Store, r *redistest.Redis, o *owner, b *store.Batch) {
			if _, err := s.Claim(ctx, 0, store.Token(1000)); err != nil {
				t.Fatal(err)
			}
		}, store.ErrFenced},
		{"claimed again in the same generation", func(t *testing.T, s *store.Store, r *redistest.Redis, o *owner, b *store.Batch) {
			if _, err := s.Claim(ctx, 0, store.Token(1)); err != nil {
				t.Fatal(err)
			}
		}, store.ErrFenced},
		{"claimed by a later generation, then flushed", func(t *testing.T, s *store.Store, r *redistest.Redis, o *owner, b *store.Batch) {
			if _, err := s.Claim(ctx, 0, store.Token(2)); err != nil {
				t.Fatal(err)
			}
			r.Flush(t)
		}, store.ErrBehind},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, r := newStore(t)
			o := claim(t, s, 0, 1)
			o.apply(o.inputs(0, ev("a", "a1", schemas.StatusCreated), ev("a", "a2", schemas.StatusSent),
				ev("b", "b1", schemas.StatusSent), ev("c", "c1", schemas.StatusSent), ev("c", "c2", schemas.StatusCompleted)))
			in := o.inputs(5, ev("a", "a3", schemas.StatusDelivered), ev("d", "d1", schemas.StatusSent), ev("c", "c2", schemas.StatusCompleted))
			b := o.batch(in)
			b.Floor = 5
			tc.setup(t, s, r, o, &b)
			before := dump(t, r)
			for _, in := range [][]store.Input{in, nil} { // an empty batch too
				out, err := s.Apply(ctx, b, in)
				if !errors.Is(err, tc.want) {
					t.Fatalf("%d inputs: got %v, want %v", len(in), err, tc.want)
				}
				var be *store.BehindError
				if isBehind := errors.As(err, &be); isBehind != (tc.want == store.ErrBehind) || (isBehind && be.Partition != 0) {
					t.Fatalf("%d inputs: got %#v, want a *BehindError for partition 0 exactly when behind", len(in), err)
				}
				if errors.Is(err, store.ErrBehind) && errors.Is(err, store.ErrFenced) {
					t.Fatalf("%v is both behind and fenced", err)
				}
				if !reflect.DeepEqual(out, store.Output{}) {
					t.Fatalf("output %+v with the error", out)
				}
				sameDump(t, r, before)
			}
		})
	}
}

// The checkpoint moves to Batch.Next with every batch, an empty one and
// one of replays and duplicates included; a checkpoint at or ahead of the
// floor is accepted.
func TestCheckpointMovesWithEveryBatch(t *testing.T) {
	s, r := newStore(t)
	o := claim(t, s, 0, 1)
	ctx := context.Background()
	first := o.inputs(0, ev("a", "a1", schemas.StatusSent), ev("b", "b1", schemas.StatusSent), ev("a", "a2", schemas.StatusDelivered))
	for _, tc := range []struct {
		name        string
		floor, next int64
		in          []store.Input
		trips       int
	}{
		{"events", 0, 3, first, 2},
		{"empty, control records", 3, 7, nil, 2},
		{"empty, nothing moves", 7, 7, nil, 2}, // the read and the UNWATCH
		{"duplicates", 7, 9, o.inputs(7, first[0].Event, first[1].Event), 2},
		{"replays", 3, 3, first, 2}, // Redis ahead of the floor
		{"replays and an event", 0, 12, append(first[:3:3], o.inputs(11, ev("c", "c1", schemas.StatusSent))...), 2},
		{"at the floor", 12, 13, o.inputs(12, ev("c", "c2", schemas.StatusDelivered)), 2},
		{"ahead of the floor", 5, 14, o.inputs(13, ev("c", "c3", schemas.StatusViewed)), 2},
	} {
		b := o.batch(tc.in)
		b.Floor, b.Next = tc.floor, tc.next
		out, err := s.Apply(ctx, b, tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(out.Results) != len(tc.in) {
			t.Fatalf("%s: %d results for %d inputs", tc.name, len(out.Results), len(tc.in))
		}
		if out.Stats.RoundTrips != tc.trips || out.Stats.Conflicts != 0 {
			t.Fatalf("%s: stats %+v, want %d round trips", tc.name, out.Stats, tc.trips)
		}
		want := &store.Checkpoint{Next: tc.next, Owner: o.token, History: hist}
		if got := o.checkpoint(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: checkpoint %+v, want %+v", tc.name, got, want)
		}
	}
	if n, err := r.Client.Exists(ctx, s.EnvKey(0, "c")).Result(); err != nil || n != 1 {
		t.Fatalf("c not written (%v)", err)
	}
}

// Claim returns the checkpoint as it was and makes the token its owner; a
// claim of an earlier generation than the owner's is refused and changes
// nothing; SetCheckpoint is refused to any token but the last claim's.
func TestClaim(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	t1, t2, t3 := store.Token(1), store.Token(2), store.Token(3)
	if t1 == store.Token(1) {
		t.Fatal("two tokens of one generation are equal")
	}
	old, err := s.Claim(ctx, 0, t1)
	if err != nil || old != nil {
		t.Fatalf("first claim = %+v, %v, want no checkpoint", old, err)
	}
	if cps, err := s.Checkpoints(ctx, []int32{0}); err != nil || cps[0] != nil {
		t.Fatalf("a claim wrote a checkpoint: %+v %v", cps, err)
	}
	if err := s.SetCheckpoint(ctx, 0, t1, 40, hist); err != nil {
		t.Fatal(err)
	}
	old, err = s.Claim(ctx, 0, t3)
	if want := (&store.Checkpoint{Next: 40, Owner: t1, History: hist}); err != nil || !reflect.DeepEqual(old, want) {
		t.Fatalf("second claim = %+v, %v, want %+v", old, err, want)
	}
	want := &store.Checkpoint{Next: 40, Owner: t3, History: hist}
	if cps, err := s.Checkpoints(ctx, []int32{0}); err != nil || !reflect.DeepEqual(cps[0], want) {
		t.Fatalf("checkpoint after the claim = %+v %v, want %+v", cps, err, want)
	}

	// A zombie of generation 2 claims after the member of generation 3.
	before := dump(t, r)
	if _, err := s.Claim(ctx, 0, t2); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("claim of an earlier generation: got %v, want ErrFenced", err)
	}
	sameDump(t, r, before)
	for _, tok := range []string{t1, t2} {
		if err := s.SetCheckpoint(ctx, 0, tok, 99, hist); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("SetCheckpoint by a token not the owner's: got %v, want ErrFenced", err)
		}
	}
	sameDump(t, r, before)
	o := &owner{t: t, s: s, p: 0, token: t3}
	in := o.inputs(40, ev("a", "a1", schemas.StatusSent))
	b := o.batch(in)
	b.Floor = 40
	if _, err := s.Apply(ctx, b, in); err != nil {
		t.Fatalf("the owner's batch after a refused claim: %v", err)
	}

	// Partitions lists the claimed ones.
	if _, err := s.Claim(ctx, 5, t1); err != nil {
		t.Fatal(err)
	}
	parts, err := s.Partitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(slices.Values(parts)); !reflect.DeepEqual(got, []int32{0, 5}) {
		t.Fatalf("partitions = %v, want [0 5]", got)
	}
	cps, err := s.Checkpoints(ctx, []int32{5, 0, 6})
	if err != nil || len(cps) != 3 || cps[0] != nil || cps[1] == nil || cps[1].Next != 41 || cps[2] != nil {
		t.Fatalf("checkpoints of 5, 0, 6 = %+v, %v", cps, err)
	}
}

// A zombie's batch fails from the moment the new owner claims the
// partition, and writes nothing; the new owner's batches go on.
func TestClaimFencesEarlierOwner(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	zombie := claim(t, s, 0, 4)
	zombie.apply(zombie.inputs(0, ev("a", "a1", schemas.StatusSent)))
	// The new owner has a store of its own, on the same Redis.
	s2, err := store.New(store.Config{Client: r.Client, Prefix: r.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	member := claim(t, s2, 0, 5)
	if cp := member.checkpoint(); cp == nil || cp.Next != 1 || cp.Owner != member.token {
		t.Fatalf("checkpoint after the claim %+v, want next 1 and the new owner", cp)
	}
	before := dump(t, r)
	for _, in := range [][]store.Input{
		zombie.inputs(1, ev("a", "a2", schemas.StatusDelivered)),
		zombie.inputs(0, ev("a", "a1", schemas.StatusSent)), // a replay
		nil,
	} {
		if _, err := zombie.try(in); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("zombie's batch of %d: got %v, want ErrFenced", len(in), err)
		}
		sameDump(t, r, before)
	}
	if _, err := s.Claim(ctx, 0, store.Token(4)); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("the zombie claims again: got %v, want ErrFenced", err)
	}
	out := member.apply(member.inputs(1, ev("a", "a2", schemas.StatusDelivered)))
	if ch := change(t, s2, out.Results[0]); ch == nil || ch.Version != 2 {
		t.Fatalf("the new owner's change %+v, want version 2", ch)
	}
}
