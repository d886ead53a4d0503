package store_test

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/schemas"
)

// reqEv is an event of env for the request (tenant, id).
func reqEv(env, id string, st schemas.Status, tenant, request string) schemas.EnvelopeEvent {
	e := ev(env, id, st)
	e.RequestID = &request
	if tenant != "" {
		e.Tenant = &tenant
	}
	return e
}

// Dedup records are scoped by envelope: one event id on two envelopes is
// two events.
func TestDedupScopedByEnvelope(t *testing.T) {
	s, _ := newStore(t)
	o := claim(t, s, 0, 1)
	out := o.apply(o.inputs(0, ev("a", "evt-1", schemas.StatusSent), ev("b", "evt-1", schemas.StatusSent)))
	for i, r := range out.Results {
		if r.Kind != store.Applied || !r.Changed() {
			t.Fatalf("input %d: %v changed %v, want applied with a change", i, r.Kind, r.Changed())
		}
	}
	checkEnvelopes(t, s, 0, out, "a", "b")
	again := o.apply(o.inputs(2, ev("b", "evt-1", schemas.StatusSent), ev("a", "evt-1", schemas.StatusSent), ev("c", "evt-1", schemas.StatusSent)))
	if want := []store.Kind{store.Duplicate, store.Duplicate, store.Applied}; !reflect.DeepEqual(kinds(again.Results), want) {
		t.Fatalf("kinds = %v, want %v", kinds(again.Results), want)
	}
	checkEnvelopes(t, s, 0, again, "c")
}

// Output.Envelopes holds each envelope whose value a batch changed, once,
// and those it only replayed, as stored; not those it only saw duplicates
// of.
func TestOutputEnvelopes(t *testing.T) {
	s, _ := newStore(t)
	o := claim(t, s, 0, 1)
	first := o.inputs(0, ev("a", "a1", schemas.StatusSent), ev("b", "b1", schemas.StatusSent), ev("c", "c1", schemas.StatusSent))
	checkEnvelopes(t, s, 0, o.apply(first), "a", "b", "c")
	for _, tc := range []struct {
		name string
		in   []store.Input
		want []string
	}{
		{"several events of one envelope", o.inputs(3, ev("b", "b2", schemas.StatusDelivered), ev("a", "a2", schemas.StatusDelivered), ev("b", "b3", schemas.StatusViewed), ev("a", "a0", schemas.StatusCreated)), []string{"b", "a"}},
		{"an older event changes the audit trail only", o.inputs(7, ev("c", "c0", schemas.StatusCreated)), []string{"c"}},
		{"duplicates only", o.inputs(8, ev("a", "a1", schemas.StatusSent), ev("c", "c1", schemas.StatusSent)), nil},
		{"a replay only", first[1:2], []string{"b"}},
		{"a replay, a duplicate and an event", append(o.inputs(9, ev("a", "a1", schemas.StatusSent), ev("d", "d1", schemas.StatusSent)), first[2]), []string{"d", "c"}},
		// Those only replayed come after those changed.
		{"a replay before an event", append(first[1:2:2], o.inputs(12, ev("e", "e1", schemas.StatusSent))...), []string{"e", "b"}},
		{"a replay and an event of one envelope", append(first[:1:1], o.inputs(11, ev("a", "a3", schemas.StatusCompleted))...), []string{"a"}},
		{"nothing", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkEnvelopes(t, s, 0, o.apply(tc.in), tc.want...)
		})
	}
}

// ClaimRequests claims a request's content once; the entry gets the
// envelope and its partition when a batch applies the request's first
// event. Request ids are scoped by tenant.
func TestRequestIndex(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	k1 := store.RequestKey{Tenant: "acme", ID: "r-1"}
	k2 := store.RequestKey{Tenant: "globex", ID: "r-1"} // the same id, another tenant
	k3 := store.RequestKey{ID: "r-1"}                   // no tenant
	// Length-prefixed: not the same key as acme's "r-1"-ish neighbours.
	k4 := store.RequestKey{Tenant: "acme:r", ID: "1"}
	claimed := func(keys []store.RequestKey, hashes []string, want []store.RequestEntry) {
		t.Helper()
		got, err := s.ClaimRequests(ctx, keys, hashes)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ClaimRequests(%v, %v) = %+v, want %+v", keys, hashes, got, want)
		}
	}
	claimed([]store.RequestKey{k1}, []string{"h1"}, []store.RequestEntry{{Hash: "h1"}})
	claimed([]store.RequestKey{k1}, []string{"h1"}, []store.RequestEntry{{Hash: "h1"}}) // again, same content
	claimed([]store.RequestKey{k1}, []string{"h9"}, []store.RequestEntry{{Hash: "h1"}}) // a conflict: the first content wins
	claimed([]store.RequestKey{k2, k3, k4, k1}, []string{"h2", "h3", "h4", "h1"},
		[]store.RequestEntry{{Hash: "h2"}, {Hash: "h3"}, {Hash: "h4"}, {Hash: "h1"}})

	if got, err := s.Requests(ctx, []store.RequestKey{k1, {Tenant: "acme", ID: "r-2"}}); err != nil || !reflect.DeepEqual(got, map[store.RequestKey]store.RequestEntry{k1: {Hash: "h1"}}) {
		t.Fatalf("Requests while being created = %+v, %v", got, err)
	}

	o2, o5 := claim(t, s, 2, 1), claim(t, s, 5, 1)
	o2.apply(o2.inputs(0, reqEv("env-a", "a1", schemas.StatusCreated, k1.Tenant, k1.ID), reqEv("env-c", "c1", schemas.StatusCreated, k3.Tenant, k3.ID)))
	o5.apply(o5.inputs(0, reqEv("env-b", "b1", schemas.StatusCreated, k2.Tenant, k2.ID)))
	want := map[store.RequestKey]store.RequestEntry{
		k1: {EnvelopeID: "env-a", Partition: 2, Hash: "h1"},
		k2: {EnvelopeID: "env-b", Partition: 5, Hash: "h2"},
		k3: {EnvelopeID: "env-c", Partition: 2, Hash: "h3"},
		k4: {Hash: "h4"},
	}
	got, err := s.Requests(ctx, []store.RequestKey{k1, k2, k3, k4, {Tenant: "initech", ID: "r-1"}})
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Requests = %+v, %v, want %+v", got, err, want)
	}
	claimed([]store.RequestKey{k1, k2}, []string{"h1", "h1"}, []store.RequestEntry{want[k1], want[k2]})
	if got, err := s.Requests(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("Requests(nil) = %v, %v", got, err)
	}
}

func TestRequestKeyScoped(t *testing.T) {
	for _, tc := range []struct {
		k    store.RequestKey
		want string
	}{
		{store.RequestKey{ID: "r-1"}, "r-1"},
		{store.RequestKey{Tenant: "acme", ID: "r-1"}, "4:acme:r-1"},
		{store.RequestKey{Tenant: "acme:r", ID: "1"}, "6:acme:r:1"},
		{store.RequestKey{Tenant: "acme", ID: "r:1"}, "4:acme:r:1"},
	} {
		if got := tc.k.Scoped(); got != tc.want {
			t.Errorf("%+v.Scoped() = %q, want %q", tc.k, got, tc.want)
		}
	}
}

// Envelope, Envelopes and EnvelopesOf read a partition's envelopes; an
// envelope of another partition is not there.
func TestEnvelopesByPartition(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	o0, o1 := claim(t, s, 0, 1), claim(t, s, 1, 1)
	o0.apply(o0.inputs(0, ev("a", "a1", schemas.StatusSent), ev("b", "b1", schemas.StatusSent)))
	o1.apply(o1.inputs(0, ev("c", "c1", schemas.StatusDelivered)))
	if _, ok := o1.envelope("a"); ok {
		t.Fatal("a found in partition 1")
	}
	got, err := s.Envelopes(ctx, 0, []string{"a", "c", "none", "b"})
	if err != nil || len(got) != 2 || got["a"].State.EnvelopeID != "a" || got["b"].State.EnvelopeID != "b" {
		t.Fatalf("Envelopes(0) = %+v, %v, want a and b", got, err)
	}
	if got, err := s.Envelopes(ctx, 0, nil); err != nil || len(got) != 0 {
		t.Fatalf("Envelopes(0, nil) = %+v, %v", got, err)
	}
	of, err := s.EnvelopesOf(ctx, []store.Stale{{EnvelopeID: "a", Partition: 0}, {EnvelopeID: "c", Partition: 1}, {EnvelopeID: "c", Partition: 0}, {EnvelopeID: "b", Partition: 3}})
	if err != nil || len(of) != 2 || *of["a"].State.Status != schemas.StatusSent || *of["c"].State.Status != schemas.StatusDelivered {
		t.Fatalf("EnvelopesOf = %+v, %v, want a of 0 and c of 1", of, err)
	}
	a, _ := o0.envelope("a")
	if !reflect.DeepEqual(of["a"], a) || !reflect.DeepEqual(got["a"], a) {
		t.Fatal("Envelope, Envelopes and EnvelopesOf disagree")
	}
}

// Stale and Active see every partition: those claimed and those seeded.
func TestStaleAndActiveAcrossPartitions(t *testing.T) {
	s, _, now := clockedStore(t, 0)
	ctx := context.Background()
	owners := map[int32]*owner{}
	for i, x := range []struct {
		p  int32
		id string
	}{{0, "old"}, {3, "mid"}, {7, "new"}, {3, "later"}} {
		*now = t0.Add(time.Duration(i) * time.Hour)
		o := owners[x.p]
		if o == nil {
			o = claim(t, s, x.p, 1)
			owners[x.p] = o
		}
		o.apply(o.inputs(int64(i), ev(x.id, x.id+"1", schemas.StatusSent)))
	}
	// A seeded envelope, older than any, in a partition nobody claimed.
	seeded := envelope.Envelope{}
	seeded, _ = seeded.Apply(ev("seeded", "s1", schemas.StatusSent), t0.Add(-time.Hour))
	if err := s.Seed(ctx, 9, seeded); err != nil {
		t.Fatal(err)
	}
	stale := func(cutoff time.Duration, limit int) []store.Stale {
		t.Helper()
		got, err := s.Stale(ctx, t0.Add(cutoff), limit)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := []store.Stale{{EnvelopeID: "seeded", Partition: 9, UpdatedAt: t0.Add(-time.Hour)}, {EnvelopeID: "old", Partition: 0, UpdatedAt: t0}, {EnvelopeID: "mid", Partition: 3, UpdatedAt: t0.Add(time.Hour)}}
	if got := stale(90*time.Minute, 10); !reflect.DeepEqual(got, want) {
		t.Fatalf("stale = %+v, want %+v", got, want)
	}
	if got := stale(90*time.Minute, 2); !reflect.DeepEqual(got, want[:2]) {
		t.Fatalf("stale with limit 2 = %+v, want %+v", got, want[:2])
	}
	if n, err := s.Active(ctx); err != nil || n != 5 {
		t.Fatalf("active = %d, %v, want 5", n, err)
	}
	*now = t0.Add(5 * time.Hour)
	owners[3].apply(owners[3].inputs(10, ev("mid", "mid2", schemas.StatusCompleted), ev("later", "later2", schemas.StatusDelivered)))
	if n, err := s.Active(ctx); err != nil || n != 4 {
		t.Fatalf("active = %d, %v after a terminal status, want 4", n, err)
	}
	want = []store.Stale{{EnvelopeID: "seeded", Partition: 9, UpdatedAt: t0.Add(-time.Hour)}, {EnvelopeID: "old", Partition: 0, UpdatedAt: t0}, {EnvelopeID: "new", Partition: 7, UpdatedAt: t0.Add(2 * time.Hour)}}
	if got := stale(4*time.Hour, 10); !reflect.DeepEqual(got, want) {
		t.Fatalf("stale = %+v, want %+v", got, want)
	}
}

// Seed writes envelopes and their indexes but no checkpoint: a member that
// claims the partition does not trust them.
func TestSeed(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	var e envelope.Envelope
	e, _ = e.Apply(reqEv("a", "a1", schemas.StatusSent, "acme", "r-1"), t0)
	if err := s.Seed(ctx, 4, e); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.Envelope(ctx, 4, "a"); err != nil || !ok || !reflect.DeepEqual(got.State, e.State) {
		t.Fatalf("seeded a = %+v %v %v", got.State, ok, err)
	}
	k := store.RequestKey{Tenant: "acme", ID: "r-1"}
	if got, err := s.Requests(ctx, []store.RequestKey{k}); err != nil || got[k] != (store.RequestEntry{EnvelopeID: "a", Partition: 4}) {
		t.Fatalf("request entry = %+v, %v", got, err)
	}
	if cps, err := s.Checkpoints(ctx, []int32{4}); err != nil || cps[0] != nil {
		t.Fatalf("seed wrote a checkpoint: %+v %v", cps[0], err)
	}
	tok := store.Token(1)
	if old, err := s.Claim(ctx, 4, tok); err != nil || old != nil {
		t.Fatalf("claim = %+v %v", old, err)
	}
	o := &owner{t: t, s: s, p: 4, token: tok}
	if _, err := o.try(o.inputs(0, ev("a", "a2", schemas.StatusDelivered))); !errors.Is(err, store.ErrBehind) {
		t.Fatalf("a batch on seeded envelopes: got %v, want ErrBehind", err)
	}
}

// Every key a batch of partition p writes carries p's hash tag, so they
// share one cluster slot, and so do the reconciler's not-found records of
// p; only the request index and the partition set do not.
func TestKeysCarryPartitionHashTag(t *testing.T) {
	s, r := newStore(t)
	ctx := context.Background()
	wrote := map[int32][]string{} // partition → envelopes
	for _, p := range []int32{0, 1, 10, 12} {
		o := claim(t, s, p, 1)
		a, b := "env-"+strconv.Itoa(int(p))+"-a", "env-"+strconv.Itoa(int(p))+"-b"
		o.apply(o.inputs(0, reqEv(a, "1", schemas.StatusSent, "acme", a), reqEv(b, "1", schemas.StatusSent, "", b)))
		o.apply(o.inputs(2, ev(a, "2", schemas.StatusCompleted), ev(b, "2", schemas.StatusDelivered)))
		o.apply(nil)
		wrote[p] = []string{a, b}
		if _, err := s.MarkMissing(ctx, t0, []store.Stale{{EnvelopeID: b, Partition: p}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ClaimRequests(ctx, []store.RequestKey{{ID: "r-9"}}, []string{"h"}); err != nil {
		t.Fatal(err)
	}
	all := keys(t, r)
	if len(all) == 0 {
		t.Fatal("no keys")
	}
	perPart := map[int32]int{}
	for _, k := range all {
		rest := strings.TrimPrefix(k, r.Prefix)
		if rest == "partitions" || strings.HasPrefix(rest, "req:") {
			continue
		}
		tag, _, ok := strings.Cut(rest, "}:")
		n, err := strconv.Atoi(strings.TrimPrefix(tag, "{p"))
		if !ok || !strings.HasPrefix(tag, "{p") || err != nil {
			t.Errorf("key %s has no partition hash tag", k)
			continue
		}
		p := int32(n)
		if wrote[p] == nil {
			t.Errorf("key %s of partition %d, which no batch wrote", k, p)
		}
		if strings.Contains(rest, ":env:") && !strings.HasSuffix(rest, ":env:"+wrote[p][0]) && !strings.HasSuffix(rest, ":env:"+wrote[p][1]) {
			t.Errorf("key %s holds an envelope of another partition", k)
		}
		perPart[p]++
		if redistest.Cluster() {
			slot, err := r.Client.(*redis.ClusterClient).ClusterKeySlot(ctx, k).Result()
			want, err2 := r.Client.(*redis.ClusterClient).ClusterKeySlot(ctx, s.CheckpointKey(p)).Result()
			if err != nil || err2 != nil || slot != want {
				t.Errorf("key %s in slot %d, its checkpoint in %d (%v %v)", k, slot, want, err, err2)
			}
		}
	}
	for p, envs := range wrote {
		for _, k := range []string{s.CheckpointKey(p), s.EnvKey(p, envs[0]), s.EnvKey(p, envs[1]), s.ActiveKey(p), s.DedupLogKey(p), s.DedupKey(p, envs[0], "1"), s.MissingKey(p)} {
			if n, err := r.Client.Exists(ctx, k).Result(); err != nil || n != 1 {
				t.Errorf("partition %d: key %s missing (%v)", p, k, err)
			}
		}
		if perPart[p] != 11 { // ckpt, owner, 2 env, 4 dedup, dedup-log, active, missing
			t.Errorf("partition %d: %d keys, want 11", p, perPart[p])
		}
	}
}
