package reconciler_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/stack"
	"github.com/esignflow/esignflow/internal/topicread"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/reconciler"
	"github.com/esignflow/esignflow/schemas"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startStack(t *testing.T, cfg stack.Config) *stack.Stack {
	t.Helper()
	cfg.Logger = quiet()
	cfg.Brokers, cfg.Namespace = fakes.StackKafka(t)
	st, err := stack.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fakes.Start(t, st)
	return st
}

func request(i int) schemas.SigningRequest {
	uri := fmt.Sprintf("s3://d/%d", i)
	return schemas.SigningRequest{RequestID: fmt.Sprintf("req-%03d", i), Tenant: "t", Provider: "sim", RequestedAt: time.Now(),
		Documents:  []schemas.Document{{Name: "a.pdf", ContentType: "application/pdf", URI: &uri}},
		Recipients: []schemas.Recipient{{ID: "r1", Name: "A", Email: "a@example.com", RoutingOrder: 1, Auth: schemas.AuthEmail}, {ID: "r2", Name: "B", Email: "b@example.com", RoutingOrder: 2, Auth: schemas.AuthEmail}}}
}

func send(t *testing.T, st *stack.Stack, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(st.Brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range n {
		req := request(i)
		b, err := st.Codec.Encode(&req)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: st.Codec.Topics().Requests, Key: []byte(req.RequestID), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// statusStream reads every committed status change.
func statusStream(t *testing.T, st *stack.Stack) []schemas.EnvelopeStatusChanged {
	t.Helper()
	var out []schemas.EnvelopeStatusChanged
	err := topicread.All(context.Background(), []kgo.Opt{kgo.SeedBrokers(st.Brokers...)}, st.Codec.Topics().Status, func(r *kgo.Record) error {
		var ch schemas.EnvelopeStatusChanged
		if err := st.Codec.Decode(context.Background(), r.Value, &ch); err != nil {
			return err
		}
		out = append(out, ch)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitTruth waits until every envelope is final at the simulator and its
// last status change says the same.
func waitTruth(t *testing.T, st *stack.Stack, n int) []schemas.EnvelopeStatusChanged {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		truth := st.Sim.Truth()
		changes := statusStream(t, st)
		last := map[string]schemas.EnvelopeStatusChanged{}
		for _, c := range changes {
			if c.Version > last[c.EnvelopeID].Version {
				last[c.EnvelopeID] = c
			}
		}
		match := 0
		for _, tr := range truth {
			if tr.Final && last[tr.ID].Status == tr.Status {
				match++
			}
		}
		if len(truth) == n && match == n {
			return changes
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90s %d of %d envelopes match the truth", match, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestPollsAloneReachTheTruth(t *testing.T) {
	st := startStack(t, stack.Config{
		Sim:        sim.Config{Step: 10 * time.Millisecond, DeclineRate: 0.2, Faults: sim.Faults{Drop: 1}},
		StaleAfter: 200 * time.Millisecond, Interval: 100 * time.Millisecond, MinPollInterval: 200 * time.Millisecond,
	})
	send(t, st, 20)
	changes := waitTruth(t, st, 20)
	polls := 0
	for _, c := range changes {
		for _, a := range c.Audit {
			if a.Source == schemas.SourceWebhook {
				t.Fatalf("a webhook got through with 100%% dropped: %+v", a)
			}
			if a.Source == schemas.SourcePoll {
				polls++
			}
		}
	}
	if polls == 0 {
		t.Fatal("no poll in the audit trails")
	}
}

func TestDroppedAndDuplicatedWebhooks(t *testing.T) {
	st := startStack(t, stack.Config{
		Sim:        sim.Config{Step: 10 * time.Millisecond, Seed: 9, Faults: sim.Faults{Drop: 0.3, Duplicate: 0.1}},
		StaleAfter: 300 * time.Millisecond, Interval: 100 * time.Millisecond, MinPollInterval: 300 * time.Millisecond,
	})
	send(t, st, 30)
	changes := waitTruth(t, st, 30)
	seen := map[string]bool{}
	for _, c := range changes {
		k := fmt.Sprintf("%s@%d", c.EnvelopeID, c.Version)
		if seen[k] {
			t.Fatalf("%s emitted twice", k)
		}
		seen[k] = true
	}
	if st.Sim.Stats().Duplicated == 0 || st.Sim.Stats().Dropped == 0 {
		t.Fatalf("faults not injected: %+v", st.Sim.Stats())
	}
}

// recording is a Poller that records when each envelope was polled.
type recording struct {
	inner reconciler.Poller
	mu    sync.Mutex
	at    map[string][]time.Time
	all   []time.Time
}

func (r *recording) Get(ctx context.Context, id string) (provider.Envelope, error) {
	r.mu.Lock()
	now := time.Now()
	r.at[id] = append(r.at[id], now)
	r.all = append(r.all, now)
	r.mu.Unlock()
	return r.inner.Get(ctx, id)
}

// lonely runs a simulator and a store with n sent envelopes that nothing
// else touches, all stale at once.
func lonely(t *testing.T, n int) (*stack.Stack, []string) {
	t.Helper()
	st := startStack(t, stack.Config{Sim: sim.Config{Step: time.Hour}, StaleAfter: time.Hour, Interval: time.Hour, RedisClock: 10 * time.Millisecond})
	send(t, st, n)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if a, _ := st.Store.Active(context.Background()); a == int64(n) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("envelopes never reached the store")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var ids []string
	for _, tr := range st.Sim.Truth() {
		ids = append(ids, tr.ID)
	}
	return st, ids
}

func newReconciler(t *testing.T, st *stack.Stack, p reconciler.Poller, id string, mut func(*reconciler.Config)) *reconciler.Reconciler {
	t.Helper()
	cfg := reconciler.Config{Brokers: st.Brokers, Codec: st.Codec, Store: st.Store, Pollers: map[string]reconciler.Poller{"sim": p},
		StaleAfter: time.Millisecond, Interval: 20 * time.Millisecond, MinPollInterval: time.Minute, Rate: 360000, Burst: 100,
		InstanceID: id, Logger: quiet()}
	if mut != nil {
		mut(&cfg)
	}
	r, err := reconciler.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReplicasShareWithoutDoublePolling(t *testing.T) {
	st, ids := lonely(t, 40)
	rec := &recording{inner: st.SimClient, at: map[string][]time.Time{}}
	// A third replica crashed holding leases on the first five envelopes.
	crashedTTL := 400 * time.Millisecond
	for _, id := range ids[:5] {
		st.Redis.Set(context.Background(), st.Store.Key("lease:"+id), "crashed", crashedTTL)
	}
	leasedAt := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b"} {
		r := newReconciler(t, st, rec, name, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec.mu.Lock()
		n := len(rec.at)
		rec.mu.Unlock()
		if n == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d envelopes polled", n, len(ids))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for id, at := range rec.at {
		if len(at) != 1 {
			t.Errorf("%s polled %d times within one minimum interval", id, len(at))
		}
	}
	// The embedded Redis advances its clock every 10ms: allow that much.
	for _, id := range ids[:5] {
		if got := rec.at[id][0].Sub(leasedAt); got < crashedTTL-20*time.Millisecond {
			t.Errorf("%s polled %s after the crashed replica leased it, before its lease expired", id, got)
		}
	}
}

func TestRateLimitHolds(t *testing.T) {
	st, ids := lonely(t, 30)
	rec := &recording{inner: st.SimClient, at: map[string][]time.Time{}}
	const perSecond, burst = 20.0, 2
	r := newReconciler(t, st, rec, "r", func(c *reconciler.Config) { c.Rate, c.Burst = perSecond*3600, burst })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec.mu.Lock()
		n := len(rec.all)
		rec.mu.Unlock()
		if n == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d polls", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	rec.mu.Lock()
	all := append([]time.Time(nil), rec.all...)
	rec.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].Before(all[j]) })
	// In any window of length w, a token bucket allows at most
	// burst + rate×w polls.
	for i := range all {
		for j := i; j < len(all); j++ {
			w := all[j].Sub(all[i]).Seconds()
			if allowed := float64(burst) + perSecond*w + 1e-9; float64(j-i+1) > allowed+1 {
				t.Fatalf("%d polls in %.3fs: more than the %.1f the limit allows", j-i+1, w, allowed)
			}
		}
	}
	if span := all[len(all)-1].Sub(all[0]).Seconds(); span < float64(len(all)-burst)/perSecond*0.9 {
		t.Fatalf("%d polls in %.2fs: faster than %v/s", len(all), span, perSecond)
	}
}
