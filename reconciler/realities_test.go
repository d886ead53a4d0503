package reconciler_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/ratebudget"
	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/internal/stack"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/reconciler"
	"github.com/esignflow/esignflow/schemas"
)

// fakeProvider is a Poller whose answers a test scripts: answer is asked
// for each envelope at each poll (n counts that envelope's polls from 1)
// and returns the provider's status, or ok false for "not found". It
// records every call, and each envelope's polls.
type fakeProvider struct {
	answer func(id string, n int) (schemas.Status, bool)
	// onCall runs at the start of every call, before the answer.
	onCall func()
	// at is the status time of every answer (zero: none given).
	at time.Time

	mu    sync.Mutex
	polls map[string]int
	calls []time.Time // one per call, batch calls included
}

func newFake(answer func(id string, n int) (schemas.Status, bool)) *fakeProvider {
	return &fakeProvider{answer: answer, polls: map[string]int{}}
}

func (f *fakeProvider) call(ids []string) []provider.Envelope {
	if f.onCall != nil {
		f.onCall()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, time.Now())
	var out []provider.Envelope
	for _, id := range ids {
		f.polls[id]++
		if s, ok := f.answer(id, f.polls[id]); ok {
			out = append(out, provider.Envelope{ID: id, Status: s, StatusAt: f.at, Recipients: []schemas.RecipientUpdate{}})
		}
	}
	return out
}

func (f *fakeProvider) Get(_ context.Context, id string) (provider.Envelope, error) {
	envs := f.call([]string{id})
	if len(envs) == 0 {
		return provider.Envelope{}, provider.ErrNotFound
	}
	return envs[0], nil
}

// polled returns how many envelopes were polled at least once, and the
// calls made.
func (f *fakeProvider) polled() (int, []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.polls), slices.Clone(f.calls)
}

// pollsOf returns how many times envelope id was polled.
func (f *fakeProvider) pollsOf(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls[id]
}

// batchFake is a fakeProvider that answers many envelopes in one call,
// leaving out those it does not know, as DocuSign's listStatusChanges
// does.
type batchFake struct{ *fakeProvider }

func (b batchFake) GetMany(_ context.Context, ids []string) ([]provider.Envelope, error) {
	return b.call(ids), nil
}

// runReplicas runs the reconcilers until the test ends.
func runReplicas(t *testing.T, rs ...*reconciler.Reconciler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// stored returns envelope id's state, from whichever partition holds it;
// false when none does.
func stored(t *testing.T, st *stack.Stack, id string) (envelope.Envelope, bool) {
	t.Helper()
	ctx := context.Background()
	for p := range int32(4) {
		e, ok, err := st.Store.Envelope(ctx, p, id)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return e, true
		}
	}
	return envelope.Envelope{}, false
}

// indexed reports whether envelope id is in the reconciler's index.
func indexed(t *testing.T, st *stack.Stack, id string) bool {
	t.Helper()
	all, err := st.Store.Stale(context.Background(), time.Now().Add(1000*time.Hour), 10000)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(all, func(s store.Stale) bool { return s.EnvelopeID == id })
}

// eventually waits up to 30s for cond, failing the test with what() when
// it never holds.
func eventually(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %s", what())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// webhook publishes a webhook event of status s for e, as the ingress
// would.
func webhook(t *testing.T, st *stack.Stack, e envelope.Envelope, eventID string, s schemas.Status) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(st.Brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	now := time.Now()
	ev := schemas.EnvelopeEvent{EventID: eventID, Provider: e.State.Provider, EnvelopeID: e.State.EnvelopeID,
		RequestID: e.State.RequestID, Tenant: e.State.Tenant, Source: schemas.SourceWebhook, Type: "webhook", Status: &s,
		Recipients: []schemas.RecipientUpdate{}, OccurredAt: now, ReceivedAt: now, Metadata: map[string]string{}}
	b, err := st.Codec.Encode(&ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: st.Codec.Topics().Events, Key: []byte(ev.EnvelopeID), Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// settledChanges waits until envelope id is settled in the store and its
// last status change, committed, says so (the store is written before the
// transaction that publishes the change commits), and returns the state
// and the envelope's status changes, by version.
func settledChanges(t *testing.T, st *stack.Stack, id string) (envelope.Envelope, []schemas.EnvelopeStatusChanged) {
	t.Helper()
	var e envelope.Envelope
	var ch []schemas.EnvelopeStatusChanged
	eventually(t, func() bool {
		if e, _ = stored(t, st, id); !store.Settled(e) {
			return false
		}
		ch = changesOf(t, st, id)
		return len(ch) > 0 && ch[len(ch)-1].Version == e.State.Version
	}, func() string {
		if e.State.Status == nil {
			return "the envelope has no status"
		}
		conflict := "none"
		if e.State.Conflict != nil {
			conflict = *e.State.Conflict
		}
		return fmt.Sprintf("the envelope is not settled, or its last change not published: %s, conflict %s, version %d",
			*e.State.Status, conflict, e.State.Version)
	})
	return e, ch
}

// changesOf returns the status changes of envelope id, by version.
func changesOf(t *testing.T, st *stack.Stack, id string) []schemas.EnvelopeStatusChanged {
	t.Helper()
	var out []schemas.EnvelopeStatusChanged
	for _, c := range statusStream(t, st) {
		if c.EnvelopeID == id {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}

// TestConflictIsPolledUntilResolved: webhooks say COMPLETED then DECLINED,
// a conflict; the envelope stays in the reconciler's index, the reconciler
// polls it, the provider's answer (DECLINED) settles it, and it leaves the
// index.
func TestConflictIsPolledUntilResolved(t *testing.T) {
	st, ids := lonely(t, 1)
	id := ids[0]
	e, ok := stored(t, st, id)
	if !ok {
		t.Fatalf("%s not in the store", id)
	}
	webhook(t, st, e, "wh-completed", schemas.StatusCompleted)
	webhook(t, st, e, "wh-declined", schemas.StatusDeclined)
	eventually(t, func() bool { e, _ = stored(t, st, id); return e.State.Conflict != nil },
		func() string { return "no conflict recorded" })
	if got := *e.State.Status; got != schemas.StatusCompleted {
		t.Fatalf("conflicted envelope is %s, want COMPLETED (the first terminal status)", got)
	}
	if !indexed(t, st, id) {
		t.Errorf("the conflicted envelope is not in the reconciler's index")
	}

	fake := newFake(func(string, int) (schemas.Status, bool) { return schemas.StatusDeclined, true })
	runReplicas(t, newReconciler(t, st, fake, "r", func(c *reconciler.Config) { c.InFlightEvery = -1 }))
	e, ch := settledChanges(t, st, id)
	if n, _ := fake.polled(); n != 1 {
		t.Errorf("%d envelopes polled, want the conflicted one", n)
	}
	if *e.State.Status != schemas.StatusDeclined {
		t.Fatalf("settled as %s, want the provider's DECLINED", *e.State.Status)
	}
	if indexed(t, st, id) {
		t.Errorf("the settled envelope is still in the index")
	}
	last := ch[len(ch)-1]
	if last.Status != schemas.StatusDeclined || last.PreviousStatus == nil || *last.PreviousStatus != schemas.StatusCompleted {
		t.Fatalf("last status change %s (from %v), want DECLINED from COMPLETED", last.Status, last.PreviousStatus)
	}
	if a := last.Audit[len(last.Audit)-1]; a.Source != schemas.SourcePoll {
		t.Fatalf("the settling change came from %s, want POLL", a.Source)
	}
}

// A conflict settles even when the provider's answer is one it gave
// before: a poll repairs the envelope to COMPLETED, a late DECLINED
// webhook makes a conflict, and the provider still says COMPLETED (same
// status, same status time) — that answer settles it, it is not dropped as
// a duplicate of the first poll's.
func TestConflictSettledByTheSameAnswerAgain(t *testing.T) {
	st, ids := lonely(t, 1)
	id := ids[0]
	fake := newFake(func(string, int) (schemas.Status, bool) { return schemas.StatusCompleted, true })
	fake.at = time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	runReplicas(t, newReconciler(t, st, fake, "r", func(c *reconciler.Config) {
		c.MinPollInterval, c.InFlightEvery = 50*time.Millisecond, -1
	}))
	e, _ := settledChanges(t, st, id)
	if *e.State.Status != schemas.StatusCompleted {
		t.Fatalf("repaired to %s, want COMPLETED", *e.State.Status)
	}
	v0, before := e.State.Version, fake.pollsOf(id)
	webhook(t, st, e, "wh-declined-late", schemas.StatusDeclined)
	// The conflict (v0+1), then what settles it (v0+2).
	eventually(t, func() bool { e, _ = stored(t, st, id); return e.State.Version >= v0+2 },
		func() string {
			return fmt.Sprintf("version %d, conflict %v: the conflict was not settled", e.State.Version, e.State.Conflict != nil)
		})
	e, ch := settledChanges(t, st, id)
	if *e.State.Status != schemas.StatusCompleted || fake.pollsOf(id) <= before {
		t.Fatalf("settled as %s after %d polls, want COMPLETED after a poll", *e.State.Status, fake.pollsOf(id)-before)
	}
	for _, c := range ch {
		if c.Version == v0+1 && c.State.Conflict == nil {
			t.Fatalf("version %d (the late DECLINED) is %s without a conflict", c.Version, c.Status)
		}
	}
	if a := ch[len(ch)-1].Audit; a[len(a)-1].Source != schemas.SourcePoll {
		t.Fatalf("settled by %s, want POLL", a[len(a)-1].Source)
	}
}

// fakeClock is a reconciler clock ahead of the wall clock by what the
// provider fake adds at every call. (It follows the wall clock too: the
// processor stamps updates with it, and an envelope updated after a
// frozen clock would never be stale.)
type fakeClock struct {
	off atomic.Int64
}

func (c *fakeClock) now() time.Time       { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *fakeClock) tick(d time.Duration) { c.off.Add(int64(d)) }

// stepper returns a function for onCall that moves the clock on by step
// and records in at the clock's time at the first call.
func (c *fakeClock) stepper(step time.Duration, at *atomic.Pointer[time.Time]) func() {
	return func() {
		now := c.now()
		at.CompareAndSwap(nil, &now)
		c.tick(step)
	}
}

// TestNotFoundIsNotAVerdict: an envelope the provider does not know for
// less than NotFoundAfter and then answers COMPLETED for ends COMPLETED and
// never FAILED; one it does not know for longer becomes FAILED, and not
// before NotFoundAfter. The reconciler's clock moves 10 minutes per poll;
// the batched call (an id left out of GetMany's answer) and the single one
// (ErrNotFound) alike.
func TestNotFoundIsNotAVerdict(t *testing.T) {
	const step, after = 10 * time.Minute, time.Hour
	for _, batched := range []bool{false, true} {
		name := "Get"
		if batched {
			name = "GetMany"
		}
		t.Run(name+"/brief", func(t *testing.T) {
			st, ids := lonely(t, 1)
			id := ids[0]
			clock := &fakeClock{}
			fake := newFake(func(_ string, n int) (schemas.Status, bool) {
				if n <= 3 { // unknown for 30 minutes of polls
					return "", false
				}
				return schemas.StatusCompleted, true
			})
			fake.onCall = func() { clock.tick(step) }
			var p reconciler.Poller = fake
			if batched {
				p = batchFake{fake}
			}
			runReplicas(t, newReconciler(t, st, p, "r", func(c *reconciler.Config) {
				c.NotFoundAfter, c.Now, c.MinPollInterval, c.InFlightEvery = after, clock.now, 50*time.Millisecond, -1
			}))
			e, ch := settledChanges(t, st, id)
			for _, c := range ch {
				if c.Status == schemas.StatusFailed {
					t.Errorf("version %d: FAILED after a not-found of less than %s", c.Version, after)
				}
			}
			if *e.State.Status != schemas.StatusCompleted {
				t.Fatalf("the envelope ended %s, want COMPLETED", *e.State.Status)
			}
			if got, err := st.Store.Missing(context.Background(), []store.Stale{{EnvelopeID: id, Partition: partitionOf(t, st, id)}}); err != nil || len(got) != 0 {
				t.Errorf("not-found record after the provider answered: %v (%v)", got, err)
			}
		})
		t.Run(name+"/long", func(t *testing.T) {
			st, ids := lonely(t, 1)
			id := ids[0]
			clock := &fakeClock{}
			var first atomic.Pointer[time.Time] // the clock at the first poll
			fake := newFake(func(string, int) (schemas.Status, bool) { return "", false })
			fake.onCall = clock.stepper(step, &first)
			var p reconciler.Poller = fake
			if batched {
				p = batchFake{fake}
			}
			runReplicas(t, newReconciler(t, st, p, "r", func(c *reconciler.Config) {
				c.NotFoundAfter, c.Now, c.MinPollInterval, c.InFlightEvery = after, clock.now, 50*time.Millisecond, -1
			}))
			e, ch := settledChanges(t, st, id)
			if *e.State.Status != schemas.StatusFailed || e.State.Reason == nil {
				t.Fatalf("the envelope ended %s, want FAILED with a reason", *e.State.Status)
			}
			last := ch[len(ch)-1]
			verdict := last.Audit[len(last.Audit)-1]
			if verdict.Source != schemas.SourcePoll || verdict.Status == nil || *verdict.Status != schemas.StatusFailed {
				t.Fatalf("the last change's event: %+v, want the POLL's FAILED", verdict)
			}
			// The verdict's time is the reconciler's clock when it gave it;
			// the first not-found was recorded at the clock a little before
			// the first call (a second allows for that: a verdict one poll
			// early would be 10 minutes early).
			if unknown := verdict.OccurredAt.Sub(*first.Load()); unknown < after-time.Second {
				t.Fatalf("FAILED after the provider had not known the envelope for %s, less than %s", unknown, after)
			}
			if n := fake.pollsOf(id); n < int(after/step)+1 {
				t.Fatalf("FAILED after %d polls %s apart, want at least %d", n, step, int(after/step)+1)
			}
		})
	}
}

func partitionOf(t *testing.T, st *stack.Stack, id string) int32 {
	t.Helper()
	for p := range int32(4) {
		if _, ok, err := st.Store.Envelope(context.Background(), p, id); err == nil && ok {
			return p
		}
	}
	t.Fatalf("%s in no partition", id)
	return -1
}

// checkBudget checks that no window of calls holds more than a token
// bucket of burst and perSecond allows: burst + perSecond × its length,
// give or take lateness. The bucket grants tokens by Redis's clock and the
// calls are recorded by ours after a timer: a call whose timer fired late
// (a loaded machine, the race detector) bunches with the calls after it,
// so windows are widened by 250ms, and one call more is allowed.
func checkBudget(t *testing.T, calls []time.Time, burst int, perSecond float64) {
	t.Helper()
	const late = 250 * time.Millisecond
	sort.Slice(calls, func(i, j int) bool { return calls[i].Before(calls[j]) })
	for i := range calls {
		for j := i; j < len(calls); j++ {
			w := calls[j].Sub(calls[i]).Seconds()
			if allowed := float64(burst) + perSecond*(w+late.Seconds()) + 1e-9; float64(j-i+1) > allowed+1 {
				t.Fatalf("%d calls in %.3fs: more than the %.1f the account's budget allows", j-i+1, w, allowed)
			}
		}
	}
}

// budgetEnv is a store and a Kafka for reconcilers without a processor.
type budgetEnv struct {
	rt      *redistest.Redis
	st      *store.Store
	codec   *schemas.Codec
	brokers []string
}

// budgetStore returns a store holding n sent envelopes of provider "sim"
// whose last updates are every apart, from base on, and a Kafka for the
// reconcilers to publish to.
func budgetStore(t *testing.T, n int, base time.Time, every time.Duration) budgetEnv {
	t.Helper()
	rt := redistest.New(t)
	st, err := store.New(store.Config{Client: rt.Client, Prefix: rt.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	sent := schemas.StatusSent
	var envs []envelope.Envelope
	for i := range n {
		id := fmt.Sprintf("env-%03d", i)
		envs = append(envs, envelope.Envelope{State: schemas.EnvelopeState{EnvelopeID: id, Provider: "sim", Status: &sent,
			Version: 1, AuditSeq: 1, UpdatedAt: base.Add(time.Duration(i) * every), Recipients: []schemas.RecipientState{}}})
	}
	if err := st.Seed(context.Background(), 0, envs...); err != nil {
		t.Fatal(err)
	}
	k, codec := fakes.T(t, 1)
	return budgetEnv{rt: rt, st: st, codec: codec, brokers: k.Brokers}
}

// TestRateBudgetSharedAcrossReplicas: three reconciler replicas poll
// through one provider account; over the run the account sees no more
// calls in any window than its one budget allows (three per-replica
// budgets allow three times as many), and a batch call takes one token
// however many envelopes it asks about.
func TestRateBudgetSharedAcrossReplicas(t *testing.T) {
	replicas := func(t *testing.T, env budgetEnv, p reconciler.Poller, mut func(*reconciler.Config)) {
		t.Helper()
		var rs []*reconciler.Reconciler
		for _, name := range []string{"a", "b", "c"} {
			cfg := reconciler.Config{Brokers: env.brokers, Codec: env.codec, Store: env.st, Pollers: map[string]reconciler.Poller{"sim": p},
				StaleAfter: time.Millisecond, Interval: 20 * time.Millisecond, MinPollInterval: time.Hour,
				InFlightEvery: -1, InstanceID: name, Logger: quiet()}
			mut(&cfg)
			r, err := reconciler.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, r)
		}
		runReplicas(t, rs...)
	}
	t.Run("Get", func(t *testing.T) {
		// Envelopes go stale one every 10ms, 100 a second: faster than
		// the budget, so every replica has polls waiting all along.
		const n, perSecond, burst = 60, 20.0, 2
		base := time.Now().Add(-time.Hour)
		env := budgetStore(t, n, base, 10*time.Millisecond)
		start := time.Now()
		clock := func() time.Time { return base.Add(time.Since(start)) }
		fake := newFake(func(string, int) (schemas.Status, bool) { return schemas.StatusSent, true })
		replicas(t, env, fake, func(c *reconciler.Config) { c.Rate, c.Burst, c.Now = perSecond*3600, burst, clock })
		eventually(t, func() bool { k, _ := fake.polled(); return k == n }, func() string {
			k, _ := fake.polled()
			return fmt.Sprintf("%d of %d envelopes polled", k, n)
		})
		_, calls := fake.polled()
		checkBudget(t, calls, burst, perSecond)
	})
	t.Run("GetMany", func(t *testing.T) {
		// A budget that does not refill during the test (one call an
		// hour) and holds 8 calls; 12 envelopes asked about 3 per call:
		// with a token per call they all fit (in at most 7 calls however
		// the replicas split them), with a token per envelope 8 at most
		// would be polled.
		const n, batch, burst = 12, 3, 8
		env := budgetStore(t, n, time.Now().Add(-time.Hour), time.Millisecond)
		fake := newFake(func(string, int) (schemas.Status, bool) { return schemas.StatusSent, true })
		replicas(t, env, batchFake{fake}, func(c *reconciler.Config) { c.Rate, c.Burst, c.BatchSize = 1, burst, batch })
		eventually(t, func() bool { k, _ := fake.polled(); return k == n }, func() string {
			k, calls := fake.polled()
			return fmt.Sprintf("%d of %d envelopes polled, in %d calls", k, n, len(calls))
		})
		if _, calls := fake.polled(); len(calls) > burst {
			t.Fatalf("%d batch calls, more than the budget's %d", len(calls), burst)
		}
	})
}

// limitedProvider answers every call with the provider's rate limit.
type limitedProvider struct {
	retryAfter time.Duration
	calls      atomic.Int32
}

func (l *limitedProvider) Get(context.Context, string) (provider.Envelope, error) {
	l.calls.Add(1)
	return provider.Envelope{}, &provider.RateLimitedError{RetryAfter: l.retryAfter}
}

// The provider's "retry after" pauses the account's shared budget, not
// only the replica it answered: any replica's next token waits it out.
func TestRetryAfterPausesTheSharedBudget(t *testing.T) {
	env := budgetStore(t, 5, time.Now().Add(-time.Hour), time.Millisecond)
	limited := &limitedProvider{retryAfter: time.Hour}
	r, err := reconciler.New(reconciler.Config{Brokers: env.brokers, Codec: env.codec, Store: env.st,
		Pollers: map[string]reconciler.Poller{"sim": limited}, StaleAfter: time.Millisecond, Interval: 20 * time.Millisecond,
		MinPollInterval: time.Hour, Rate: 3600, Burst: 10, InFlightEvery: -1, InstanceID: "a", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	runReplicas(t, r)
	eventually(t, func() bool { return limited.calls.Load() > 0 }, func() string { return "never polled" })
	// Another replica's view of the same account's budget.
	other, err := ratebudget.New(ratebudget.Config{Client: env.st.Client(), Key: env.st.Key("budget:" + reconciler.AccountOf("sim", limited)),
		Rate: 1, Burst: 10})
	if err != nil {
		t.Fatal(err)
	}
	var wait time.Duration
	eventually(t, func() bool {
		d, err := other.Take(context.Background(), 0)
		wait = d
		return err == nil && d > 59*time.Minute
	}, func() string { return fmt.Sprintf("a replica's next token waits %s after a 1h retry-after", wait) })
	if n := limited.calls.Load(); n != 1 {
		t.Errorf("%d calls after the provider said to retry after an hour, want 1", n)
	}
}
