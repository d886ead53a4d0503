package store_test

import (
	"context"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/schemas"
)

// staleIDs returns the ids of every envelope in the reconciler's index,
// whatever its last update, sorted.
func staleIDs(t testing.TB, s *store.Store) []string {
	t.Helper()
	got, err := s.Stale(context.Background(), t0.Add(1000*time.Hour), 1000)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, g := range got {
		ids = append(ids, g.EnvelopeID)
	}
	sort.Strings(ids)
	return ids
}

func poll(env, id string, st schemas.Status) schemas.EnvelopeEvent {
	e := ev(env, id, st)
	e.Source = schemas.SourcePoll
	return e
}

// A terminal envelope whose sources disagree (COMPLETED then DECLINED) is
// not settled: it goes back into the reconciler's index, stays there
// through a poll answer that settles nothing (a status behind it), and
// leaves it — with its not-found record — when a poll answer settles it.
func TestConflictedEnvelopeStaysIndexed(t *testing.T) {
	s, _ := newStore(t)
	o := claim(t, s, 0, 1)
	ctx := context.Background()
	off := int64(0)
	step := func(e schemas.EnvelopeEvent, want []string) envelope.Envelope {
		t.Helper()
		o.apply(o.inputs(off, e))
		off++
		if got := staleIDs(t, s); !reflect.DeepEqual(got, want) {
			t.Fatalf("after %s %s from %s: index %v, want %v", e.EnvelopeID, *e.Status, e.Source, got, want)
		}
		env, _ := o.envelope(e.EnvelopeID)
		return env
	}
	step(ev("a", "a1", schemas.StatusSent), []string{"a"})
	step(ev("b", "b1", schemas.StatusSent), []string{"a", "b"})
	step(ev("a", "a2", schemas.StatusCompleted), []string{"b"})
	if a := step(ev("a", "a3", schemas.StatusDeclined), []string{"a", "b"}); a.State.Conflict == nil || *a.State.Status != schemas.StatusCompleted {
		t.Fatalf("a after COMPLETED then DECLINED: status %s, conflict %v", *a.State.Status, a.State.Conflict)
	}
	if _, err := s.MarkMissing(ctx, t0, []store.Stale{{EnvelopeID: "a", Partition: 0}}, nil); err != nil {
		t.Fatal(err)
	}
	// The provider still says SENT (its index lags): nothing settles.
	step(poll("a", "a4", schemas.StatusSent), []string{"a", "b"})
	if a := step(poll("a", "a5", schemas.StatusDeclined), []string{"b"}); a.State.Conflict != nil || *a.State.Status != schemas.StatusDeclined {
		t.Fatalf("a after the provider's DECLINED: status %s, conflict %v", *a.State.Status, a.State.Conflict)
	}
	if got, err := s.Missing(ctx, []store.Stale{{EnvelopeID: "a", Partition: 0}}); err != nil || len(got) != 0 {
		t.Fatalf("not-found record of a settled envelope: %v (%v), want none", got, err)
	}
	if n, err := s.Active(ctx); err != nil || n != 1 {
		t.Fatalf("Active = %d (%v), want 1", n, err)
	}
}

// A restore (and Seed) indexes what a batch indexes: envelopes in flight
// and conflicted terminal ones, not settled ones.
func TestRestoreIndexesUnsettled(t *testing.T) {
	s, r := newStore(t)
	inFlight := state(ev("sent", "1", schemas.StatusSent))
	settled := state(ev("done", "1", schemas.StatusSent), ev("done", "2", schemas.StatusCompleted))
	conflicted := state(ev("conflict", "1", schemas.StatusCompleted), ev("conflict", "2", schemas.StatusDeclined))
	resolved := state(ev("resolved", "1", schemas.StatusCompleted), ev("resolved", "2", schemas.StatusDeclined), poll("resolved", "3", schemas.StatusCompleted))
	if conflicted.State.Conflict == nil || resolved.State.Conflict != nil {
		t.Fatalf("fixtures: conflicted %v, resolved %v", conflicted.State.Conflict, resolved.State.Conflict)
	}
	want := []string{"conflict", "sent"}
	for _, tc := range []struct {
		name string
		put  func(envs ...envelope.Envelope) error
	}{
		{"restore", func(envs ...envelope.Envelope) error {
			o := claim(t, s, 0, 1)
			return restore(t, s, 0, o.token, 1, envs...)
		}},
		{"seed", func(envs ...envelope.Envelope) error { return s.Seed(context.Background(), 0, envs...) }},
	} {
		r.Flush(t)
		if err := tc.put(inFlight, settled, conflicted, resolved); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := staleIDs(t, s); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: index %v, want %v", tc.name, got, want)
		}
	}
}

// MarkMissing keeps the first time an envelope was not found, forgets it
// when the envelope is found again, and keeps partitions apart.
func TestMissingRecords(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	a0, a2, b0 := store.Stale{EnvelopeID: "a", Partition: 0}, store.Stale{EnvelopeID: "a", Partition: 2}, store.Stale{EnvelopeID: "b", Partition: 0}
	check := func(got map[string]time.Time, err error, want map[string]time.Time) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	got, err := s.MarkMissing(ctx, t0, []store.Stale{a0}, nil)
	check(got, err, map[string]time.Time{"a": t0})
	got, err = s.MarkMissing(ctx, t0.Add(time.Hour), []store.Stale{a0, b0}, nil)
	check(got, err, map[string]time.Time{"a": t0, "b": t0.Add(time.Hour)})
	got, err = s.Missing(ctx, []store.Stale{a2})
	check(got, err, map[string]time.Time{})
	got, err = s.MarkMissing(ctx, t0.Add(2*time.Hour), []store.Stale{a2}, []store.Stale{a0})
	check(got, err, map[string]time.Time{"a": t0.Add(2 * time.Hour)})
	got, err = s.Missing(ctx, []store.Stale{a0, b0})
	check(got, err, map[string]time.Time{"b": t0.Add(time.Hour)})
	// Found again, then missing again: the time starts over.
	got, err = s.MarkMissing(ctx, t0.Add(3*time.Hour), []store.Stale{a0}, nil)
	check(got, err, map[string]time.Time{"a": t0.Add(3 * time.Hour)})
}
