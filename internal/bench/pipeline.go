package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/promread"
	"github.com/esignflow/esignflow/internal/stack"
	"github.com/esignflow/esignflow/internal/topicread"
	"github.com/esignflow/esignflow/provider/registry"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
	"github.com/esignflow/esignflow/sink"
)

// PipelineConfig sizes a whole-pipeline run. Everything runs in process on
// loopback, bounded by Envelopes and Timeout.
type PipelineConfig struct {
	// Envelopes is how many signing requests, default 10,000.
	Envelopes int
	// Rate is requests per second, 0 for as fast as they go.
	Rate float64
	// Step is the simulator's mean recipient step, default 50ms.
	Step time.Duration
	// Dialect is the protocol the simulator speaks and the services use
	// through that provider's own client (registry.Dialects: standard,
	// docusign), overriding the default standard.
	Dialect string
	// Faults are the simulator's injected faults.
	Faults sim.Faults
	// Chaos adds, on top of Faults, the chaos scenario: 20% of webhooks
	// dropped, 10% duplicated, reordering, 5% of API calls failing and 2%
	// timing out after acting, the processor killed and restarted three
	// times, Redis flushed once and rolled back once (a copy of it put back
	// three seconds after it was taken, while envelopes are in flight:
	// what an AOF everysec crash or a failover to a lagging replica does),
	// and the broker refusing produce for a few seconds.
	Chaos bool
	// Seed makes the simulator's choices and the chaos timing repeatable.
	Seed uint64
	// RedisURL uses a real Redis (flushed and rolled back by the chaos
	// scenario: point it
	// at a database of its own); empty runs the embedded one.
	RedisURL string
	// Brokers runs on a real Kafka cluster instead of the embedded kfake
	// broker, under a fresh topic and group prefix.
	Brokers []string
	// BrokerFault, with Brokers, is how the chaos scenario takes the
	// broker away for three seconds (a test's own broker process, frozen
	// and thawed); without it a run on real brokers leaves the broker
	// alone. On kfake the scenario makes the broker refuse produce.
	BrokerFault BrokerFault
	// KafkaOpts are added to every component's clients (compression).
	KafkaOpts []kgo.Opt
	// Timeout bounds the run, default 10 minutes.
	Timeout time.Duration
	// Progress, when set, is called about every second.
	Progress func(Progress)
	Logger   *slog.Logger
}

// BrokerFault takes a broker away and brings it back.
type BrokerFault interface {
	Pause() error
	Resume() error
}

// Progress is a snapshot while the pipeline runs.
type Progress struct {
	Elapsed              time.Duration
	Requested, Envelopes int
	Final, Matching      int // final at the provider; with the status topic agreeing
	StatusChanges        int
	Unfinalized          int // finalising changes without their finalized record
	// SinkDeadLetters are the status changes the sink dead-lettered: never
	// finalised, and a failed run (dead_letters).
	SinkDeadLetters int
}

// Latency summarises a set of durations.
type Latency struct {
	N                  int           `json:"n"`
	P50, P95, P99, Max time.Duration `json:"-"`
	P50ms              float64       `json:"p50_ms"`
	P95ms              float64       `json:"p95_ms"`
	P99ms              float64       `json:"p99_ms"`
	MaxMs              float64       `json:"max_ms"`
}

func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := func(f float64) time.Duration { return ds[min(len(ds)-1, int(f*float64(len(ds))))] }
	l := Latency{N: len(ds), P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: ds[len(ds)-1]}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	l.P50ms, l.P95ms, l.P99ms, l.MaxMs = ms(l.P50), ms(l.P95), ms(l.P99), ms(l.Max)
	return l
}

// PipelineResult is what a run measured. Every figure under Correctness
// must be zero.
type PipelineResult struct {
	Envelopes int           `json:"envelopes"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	Chaos     bool          `json:"chaos"`
	Dialect   string        `json:"dialect"`

	Throughput struct {
		RequestsPerSec      float64 `json:"requests_per_sec"`
		WebhooksPerSec      float64 `json:"webhooks_accepted_per_sec"`
		EventsPerSec        float64 `json:"events_processed_per_sec"`
		StatusChangesPerSec float64 `json:"status_changes_per_sec"`
	} `json:"throughput"`
	Latency struct {
		EventToStatus Latency `json:"provider_event_to_status_change"`
		RequestToSent Latency `json:"request_to_sent"`
	} `json:"latency"`
	Correctness struct {
		Lost            int `json:"lost"`
		Duplicated      int `json:"duplicated_versions"`
		Gaps            int `json:"version_gaps"`
		AuditFailures   int `json:"audit_chain_failures"`
		FinalizedMissed int `json:"finalized_missing"`
		FinalizedTwice  int `json:"finalized_duplicated"`
		DeadLetters     int `json:"dead_letters"`
	} `json:"correctness"`
	Work struct {
		StatusChanges       int     `json:"status_changes"`
		Webhooks            int64   `json:"webhooks_sent"`
		DuplicatesDropped   float64 `json:"duplicates_suppressed"`
		Replays             float64 `json:"replays"`
		Polls               float64 `json:"polls"`
		Repairs             float64 `json:"repairs_by_polls"`
		Restores            float64 `json:"redis_restores"`
		RedisTripsPerEvent  float64 `json:"redis_round_trips_per_event"`
		ProcessorRestarts   int     `json:"processor_restarts"`
		ProduceFaultSeconds float64 `json:"broker_produce_fault_seconds"`
		// RedisFlushes are the times Redis lost everything. Whether one
		// makes partitions restore depends on what happened meanwhile: a
		// rollback that puts back a copy taken before the flush, with no
		// commit in between, puts back exactly what was committed.
		RedisFlushes int `json:"redis_flushes"`
		// RedisRollbacks are the copies of Redis put back, RolledBackKeys
		// the keys they held, and RollbackAge how old the last copy was
		// when it was put back.
		RedisRollbacks int           `json:"redis_rollbacks"`
		RolledBackKeys int           `json:"redis_rolled_back_keys"`
		RollbackAge    time.Duration `json:"redis_rollback_age_ns"`
		PeakRSSKiB     int64         `json:"peak_rss_kib"`
	} `json:"work"`
	Truth map[schemas.Status]int `json:"final_statuses"`
}

// OK reports whether every correctness figure is zero.
func (r *PipelineResult) OK() bool {
	c := r.Correctness
	return c.Lost+c.Duplicated+c.Gaps+c.AuditFailures+c.FinalizedMissed+c.FinalizedTwice+c.DeadLetters == 0
}

// Pipeline runs the whole system in process and drives it with Envelopes
// signing requests through the simulator, then checks every envelope
// against the simulator's truth and a read_committed consumer.
func Pipeline(ctx context.Context, cfg PipelineConfig) (*PipelineResult, error) {
	if cfg.Envelopes <= 0 {
		cfg.Envelopes = 10000
	}
	if cfg.Step <= 0 {
		cfg.Step = 50 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Dialect == "" {
		cfg.Dialect = registry.Dialects()[0]
	}
	played, ok := registry.ByDialect(cfg.Dialect)
	if !ok {
		return nil, fmt.Errorf("bench: no simulator dialect %q (there are %s)", cfg.Dialect, strings.Join(registry.Dialects(), ", "))
	}
	faults := cfg.Faults
	if cfg.Chaos {
		faults = sim.Faults{Drop: 0.2, Duplicate: 0.1, Delay: 0.2, MaxDelay: 500 * time.Millisecond, APIError: 0.05, APITimeout: 0.02}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var namespace string
	if len(cfg.Brokers) > 0 {
		namespace = runPrefix()
		defer deleteTopics(cfg.Brokers, schemas.Prefixed(namespace))
	}
	st, err := stack.New(stack.Config{
		RedisURL: cfg.RedisURL, Partitions: 8, Logger: cfg.Logger, Brokers: cfg.Brokers, Namespace: namespace, Provider: played.Name,
		Sim: sim.Config{Step: cfg.Step, DeclineRate: 0.05, VoidRate: 0.02, ExpireRate: 0.02, Seed: cfg.Seed, Faults: faults,
			RetryBase: 100 * time.Millisecond, RetryMax: time.Second, DeliveryAttempts: 20, DeliveryWorkers: 64},
		StaleAfter: 5 * time.Second, Interval: time.Second, MinPollInterval: 2 * time.Second, PollRate: 3_600_000,
		KafkaOpts: append([]kgo.Opt{kgo.TransactionTimeout(10 * time.Second)}, cfg.KafkaOpts...),
	})
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- st.Run(runCtx) }()
	select {
	case <-st.Ready():
	case err := <-done:
		return nil, fmt.Errorf("stack: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() {
		stop()
		<-done
	}()

	res := &PipelineResult{Envelopes: cfg.Envelopes, Chaos: cfg.Chaos, Dialect: cfg.Dialect, Truth: map[schemas.Status]int{}}
	obs, err := observe(ctx, st)
	if err != nil {
		return nil, err
	}
	defer obs.close()

	start := time.Now()
	requested := map[string]time.Time{}
	var reqMu sync.Mutex
	var nReq atomic.Int64
	prodErr := make(chan error, 1)
	go func() { prodErr <- produceRequests(ctx, st, cfg, requested, &reqMu, &nReq) }()

	var chaosWG sync.WaitGroup
	if cfg.Chaos {
		chaosWG.Add(1)
		go func() {
			defer chaosWG.Done()
			chaos(ctx, st, cfg, res)
		}()
	}

	produceDone := time.Time{}
	for {
		select {
		case err := <-prodErr:
			if err != nil {
				return nil, fmt.Errorf("producing requests: %w", err)
			}
			produceDone = time.Now()
			prodErr = nil
		case <-ctx.Done():
			return nil, fmt.Errorf("timed out after %s: %w", cfg.Timeout, ctx.Err())
		case err := <-done:
			done <- err // for the deferred stop
			return nil, fmt.Errorf("the stack stopped: %w", err)
		case <-time.After(time.Second):
		}
		p := obs.progress(st, cfg.Envelopes)
		p.Elapsed, p.Requested = time.Since(start), int(nReq.Load())
		p.SinkDeadLetters = int(metric(st.Metrics, "esignflow_dead_letters_total", map[string]string{"component": "sink"}))
		if cfg.Progress != nil {
			cfg.Progress(p)
		}
		// Done once every finalising change is finalised or was
		// dead-lettered by the sink, which will never finalise it: such a
		// run ends and is judged (dead_letters, finalized_missing) instead
		// of waiting out the timeout.
		if prodErr == nil && p.Envelopes == cfg.Envelopes && p.Matching == cfg.Envelopes && p.Unfinalized <= p.SinkDeadLetters {
			break
		}
	}
	chaosWG.Wait()
	res.Elapsed = time.Since(start)
	// Settle: let in-flight duplicates and polls land, then judge.
	if err := obs.settle(ctx, st); err != nil {
		return nil, err
	}
	obs.judge(st, res, requested)
	if produceDone.IsZero() {
		produceDone = time.Now()
	}
	secs := res.Elapsed.Seconds()
	res.Throughput.RequestsPerSec = float64(cfg.Envelopes) / produceDone.Sub(start).Seconds()
	res.Throughput.WebhooksPerSec = metric(st.Metrics, "esignflow_ingress_requests_total", map[string]string{"endpoint": played.Name, "code": "200"}) / secs
	res.Throughput.EventsPerSec = metric(st.Metrics, "esignflow_processor_records_in_total", map[string]string{"topic": st.Codec.Topics().Events}) / secs
	res.Throughput.StatusChangesPerSec = float64(res.Work.StatusChanges) / secs
	res.Work.Webhooks = st.Sim.Stats().Webhooks
	res.Work.DuplicatesDropped = metric(st.Metrics, "esignflow_processor_duplicates_total", nil)
	res.Work.Replays = metric(st.Metrics, "esignflow_processor_replays_total", nil)
	res.Work.Polls = metric(st.Metrics, "esignflow_reconciler_polls_total", nil)
	res.Work.Repairs = metric(st.Metrics, "esignflow_reconciler_repairs_total", nil)
	res.Work.Restores = metric(st.Metrics, "esignflow_processor_restores_total", nil)
	if in := metric(st.Metrics, "esignflow_processor_records_in_total", map[string]string{"topic": st.Codec.Topics().Events}); in > 0 {
		res.Work.RedisTripsPerEvent = metric(st.Metrics, "esignflow_processor_redis_round_trips_total", nil) / in
	}
	res.Work.PeakRSSKiB = peakRSS()
	return res, nil
}

// produceRequests publishes the signing requests at cfg.Rate.
func produceRequests(ctx context.Context, st *stack.Stack, cfg PipelineConfig, at map[string]time.Time, mu *sync.Mutex, n *atomic.Int64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(st.Brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 7))
	errc := make(chan error, 1)
	next := time.Now()
	for i := range cfg.Envelopes {
		id := fmt.Sprintf("bench-req-%06d", i)
		// Inline, which every provider takes (DocuSign only takes
		// documents inline or from an http(s) or file URI).
		content := []byte("%PDF-1.4\n% esignflow bench " + id + "\n%%EOF\n")
		req := schemas.SigningRequest{RequestID: id, Tenant: "bench", Provider: st.Provider(), RequestedAt: time.Now(),
			Documents: []schemas.Document{{Name: "contract.pdf", ContentType: "application/pdf", Content: content}}, Metadata: map[string]string{}}
		for j := range 1 + rng.IntN(3) {
			rcp := schemas.Recipient{ID: fmt.Sprintf("r%d", j+1), Name: "Signer", Email: fmt.Sprintf("s%d@example.com", j),
				Role: "signer", RoutingOrder: int32(1 + j/2), Auth: schemas.AuthEmail}
			// A quarter of the signers authenticate with an SMS code,
			// which every provider with an API offers (ID verification
			// is not offered by all).
			if rng.IntN(4) == 0 {
				phone := fmt.Sprintf("+1555010%04d", rng.IntN(10000))
				rcp.Auth, rcp.Phone = schemas.AuthSMS, &phone
			}
			req.Recipients = append(req.Recipients, rcp)
		}
		b, err := st.Codec.Encode(&req)
		if err != nil {
			return err
		}
		mu.Lock()
		at[id] = time.Now()
		mu.Unlock()
		cl.Produce(ctx, &kgo.Record{Topic: st.Codec.Topics().Requests, Key: []byte(id), Value: b}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		})
		n.Add(1)
		if interval > 0 {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(d):
				}
			}
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// chaos kills and restarts the processor three times, flushes Redis once,
// rolls Redis back once (takes a copy, puts it back three seconds later)
// and makes the broker refuse produce for three seconds, at random moments
// of the first part of the run.
func chaos(ctx context.Context, st *stack.Stack, cfg PipelineConfig, res *PipelineResult) {
	rng := rand.New(rand.NewPCG(cfg.Seed, 11))
	type act struct {
		at   time.Duration
		name string
	}
	var acts []act
	for range 3 {
		acts = append(acts, act{time.Duration(1000+rng.IntN(8000)) * time.Millisecond, "restart"})
	}
	acts = append(acts, act{time.Duration(2000+rng.IntN(6000)) * time.Millisecond, "flush"})
	acts = append(acts, act{time.Duration(2000+rng.IntN(6000)) * time.Millisecond, "produce-fault"})
	acts = append(acts, act{time.Duration(2000+rng.IntN(5000)) * time.Millisecond, "rollback"})
	// The rollback's copy is put back by a goroutine of its own, three
	// seconds after it was taken whatever the other acts do meanwhile;
	// chaos returns once it has.
	var rollback sync.WaitGroup
	defer rollback.Wait()
	sort.Slice(acts, func(i, j int) bool { return acts[i].at < acts[j].at })
	start := time.Now()
	for _, a := range acts {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(a.at))):
		}
		switch a.name {
		case "restart":
			st.RestartProcessor()
			res.Work.ProcessorRestarts++
		case "flush":
			if st.Mini != nil {
				st.Mini.FlushAll()
			} else {
				st.Redis.FlushDB(context.Background())
			}
			res.Work.RedisFlushes++
		case "rollback":
			c, err := copyRedis(context.Background(), st.Redis)
			if err != nil {
				cfg.Logger.Error("chaos: copying redis", "err", err)
				continue
			}
			copiedAt := time.Now()
			rollback.Add(1)
			go func() {
				defer rollback.Done()
				select {
				case <-ctx.Done():
					return
				case <-time.After(3 * time.Second):
				}
				if err := c.putBack(context.Background(), st.Redis); err != nil {
					cfg.Logger.Error("chaos: rolling redis back", "err", err)
					return
				}
				res.Work.RedisRollbacks++
				res.Work.RolledBackKeys = c.keys
				res.Work.RollbackAge = time.Since(copiedAt)
			}()
		case "produce-fault":
			if st.Cluster == nil {
				if cfg.BrokerFault == nil {
					continue
				}
				if err := cfg.BrokerFault.Pause(); err != nil {
					cfg.Logger.Error("chaos: pausing the broker", "err", err)
					continue
				}
				time.Sleep(3 * time.Second)
				if err := cfg.BrokerFault.Resume(); err != nil {
					cfg.Logger.Error("chaos: resuming the broker", "err", err)
				}
				res.Work.ProduceFaultSeconds += 3
				continue
			}
			var faulty atomic.Bool
			faulty.Store(true)
			st.Cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				st.Cluster.KeepControl()
				if faulty.Load() {
					return nil, errors.New("chaos: broker refuses produce"), true
				}
				return nil, nil, false
			})
			time.Sleep(3 * time.Second)
			faulty.Store(false)
			res.Work.ProduceFaultSeconds += 3
		}
	}
}

// observer follows the status and finalized topics as downstream
// consumers would (read_committed).
type observer struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	changes   map[string][]schemas.EnvelopeStatusChanged
	seenAt    map[string]time.Time // envelope@version → first seen
	finalized map[string]int       // envelope@version → count
	eventLat  []time.Duration
	sentAt    map[string]time.Time // request id → first SENT seen
}

func observe(ctx context.Context, st *stack.Stack) (*observer, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(st.Brokers...), kgo.ConsumeTopics(st.Codec.Topics().Status, st.Codec.Topics().Finalized),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithCancel(ctx)
	o := &observer{cl: cl, cancel: cancel, done: make(chan struct{}), changes: map[string][]schemas.EnvelopeStatusChanged{},
		seenAt: map[string]time.Time{}, finalized: map[string]int{}, sentAt: map[string]time.Time{}}
	go func() {
		defer close(o.done)
		for {
			fs := cl.PollFetches(octx)
			if octx.Err() != nil || fs.IsClientClosed() {
				return
			}
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				switch r.Topic {
				case st.Codec.Topics().Status:
					var ch schemas.EnvelopeStatusChanged
					if st.Codec.Decode(octx, r.Value, &ch) != nil {
						return
					}
					o.mu.Lock()
					o.changes[ch.EnvelopeID] = append(o.changes[ch.EnvelopeID], ch)
					k := fmt.Sprintf("%s@%d", ch.EnvelopeID, ch.Version)
					if _, ok := o.seenAt[k]; !ok {
						o.seenAt[k] = now
						if n := len(ch.Audit); n > 0 && ch.Audit[n-1].Source == schemas.SourceWebhook {
							o.eventLat = append(o.eventLat, now.Sub(ch.Audit[n-1].OccurredAt))
						}
						if ch.State.RequestID != nil && ch.Status == schemas.StatusSent {
							if _, ok := o.sentAt[*ch.State.RequestID]; !ok {
								o.sentAt[*ch.State.RequestID] = now
							}
						}
					}
					o.mu.Unlock()
				case st.Codec.Topics().Finalized:
					var f schemas.EnvelopeFinalized
					if st.Codec.Decode(octx, r.Value, &f) != nil {
						return
					}
					o.mu.Lock()
					o.finalized[fmt.Sprintf("%s@%d", f.EnvelopeID, f.Version)]++
					o.mu.Unlock()
				}
			})
		}
	}()
	return o, nil
}

func (o *observer) close() {
	o.cancel()
	<-o.done
	o.cl.Close()
}

func lastOf(chs []schemas.EnvelopeStatusChanged) schemas.EnvelopeStatusChanged {
	var last schemas.EnvelopeStatusChanged
	for _, c := range chs {
		if c.Version > last.Version {
			last = c
		}
	}
	return last
}

func (o *observer) progress(st *stack.Stack, want int) Progress {
	truth := st.Sim.Truth()
	o.mu.Lock()
	defer o.mu.Unlock()
	p := Progress{Envelopes: len(truth), Unfinalized: o.missingFinalized()}
	for _, tr := range truth {
		if tr.Final {
			p.Final++
			if lastOf(o.changes[tr.ID]).Status == tr.Status {
				p.Matching++
			}
		}
	}
	for _, chs := range o.changes {
		p.StatusChanges += len(chs)
	}
	return p
}

// missingFinalized counts the finalising changes (sink.Finalizes) that
// have no finalized record. Called with o.mu held.
func (o *observer) missingFinalized() int {
	n := 0
	for id, chs := range o.changes {
		for _, c := range chs {
			if sink.Finalizes(c) && o.finalized[fmt.Sprintf("%s@%d", id, c.Version)] == 0 {
				n++
			}
		}
	}
	return n
}

// settle waits until the observer has read every committed status and
// finalized record that exists now.
func (o *observer) settle(ctx context.Context, st *stack.Stack) error {
	count := func(topic string) (int, error) {
		n := 0
		err := topicread.All(ctx, []kgo.Opt{kgo.SeedBrokers(st.Brokers...)}, topic, func(*kgo.Record) error { n++; return nil })
		return n, err
	}
	time.Sleep(2 * time.Second) // in-flight redeliveries and polls land
	for {
		ns, err := count(st.Codec.Topics().Status)
		if err != nil {
			return err
		}
		nf, err := count(st.Codec.Topics().Finalized)
		if err != nil {
			return err
		}
		o.mu.Lock()
		gs := 0
		for _, chs := range o.changes {
			gs += len(chs)
		}
		gf := 0
		for _, n := range o.finalized {
			gf += n
		}
		o.mu.Unlock()
		if gs >= ns && gf >= nf {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// judge fills the correctness and latency figures.
func (o *observer) judge(st *stack.Stack, res *PipelineResult, requested map[string]time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, tr := range st.Sim.Truth() {
		res.Truth[tr.Status]++
		chs := o.changes[tr.ID]
		last := lastOf(chs)
		if last.Status != tr.Status {
			res.Correctness.Lost++
		}
		versions := map[int64]int{}
		var chain []schemas.AuditEntry
		for _, c := range chs {
			versions[c.Version]++
			if versions[c.Version] == 1 {
				chain = append(chain, c.Audit...)
			}
		}
		for v := int64(1); v <= last.Version; v++ {
			switch n := versions[v]; {
			case n == 0:
				res.Correctness.Gaps++
			case n > 1:
				res.Correctness.Duplicated += n - 1
			}
		}
		sort.SliceStable(chain, func(i, j int) bool { return chain[i].Seq < chain[j].Seq })
		if err := envelope.Verify(chain); err != nil {
			res.Correctness.AuditFailures++
		}
	}
	res.Correctness.FinalizedMissed = o.missingFinalized()
	for _, n := range o.finalized {
		if n > 1 {
			res.Correctness.FinalizedTwice += n - 1
		}
	}
	for _, chs := range o.changes {
		res.Work.StatusChanges += len(chs)
	}
	res.Latency.EventToStatus = summarize(o.eventLat)
	var toSent []time.Duration
	for rid, at := range o.sentAt {
		if t0, ok := requested[rid]; ok {
			toSent = append(toSent, at.Sub(t0))
		}
	}
	res.Latency.RequestToSent = summarize(toSent)
	// Every envelope is final and the system idle: wait for the dead
	// letters' transactions to settle (Apache Kafka writes commit markers
	// late), so none committed in the last transactions goes uncounted.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	opts := []kgo.Opt{kgo.SeedBrokers(st.Brokers...)}
	if err := topicread.AllSettled(ctx, opts, st.Codec.Topics().DLQ, func(*kgo.Record) error { n++; return nil }); err != nil {
		n = 0
		_ = topicread.All(context.Background(), opts, st.Codec.Topics().DLQ, func(*kgo.Record) error { n++; return nil })
	}
	res.Correctness.DeadLetters = n
}

// metric sums the series of a counter whose labels include match.
func metric(reg *prometheus.Registry, name string, match map[string]string) float64 {
	total, _, _ := promread.Sum(reg, name, match)
	return total
}

func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			var kib int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), "%d", &kib)
			return kib
		}
	}
	return 0
}
