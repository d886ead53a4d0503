package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/promread"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/processor"
	"github.com/esignflow/esignflow/schemas"
)

// RestoreConfig sizes the restore benchmark.
type RestoreConfig struct {
	// Envelopes is how many envelope states the changelog holds, default
	// 100,000.
	Envelopes int
	// Partitions of the events topic and the changelog, default 4.
	Partitions int32
	// Brokers is a real Kafka cluster (the run's topics under a fresh
	// prefix, deleted after); empty runs on an in-process kfake broker.
	Brokers []string
	// RedisURL is a real Redis (keys under a fresh prefix, removed
	// after); empty uses an in-process miniredis.
	RedisURL string
	// KafkaOpts are added to the producer's and the processor's clients
	// (compression).
	KafkaOpts []kgo.Opt
	// Timeout bounds the restore, default 30 minutes.
	Timeout time.Duration
	// Logger receives the processor's log, default discard.
	Logger *slog.Logger
}

// RestoreResult is what the restore benchmark measured. The processor runs
// in the benchmark's own process (so does kfake without Brokers, and the
// producer that filled the changelog): RSS figures are the process's, and
// the growth is over the baseline taken, after a GC, just before the
// processor starts.
type RestoreResult struct {
	Envelopes  int `json:"envelopes"`
	Partitions int `json:"partitions"`
	// ChangelogBytes is the size of the records' values produced.
	ChangelogBytes int64         `json:"changelog_value_bytes"`
	Fill           time.Duration `json:"fill_ns"`
	// Elapsed is from the processor's start (before it joins its group)
	// until every partition has a checkpoint.
	Elapsed time.Duration `json:"elapsed_ns"`
	// Restoring is from the first partition's restore beginning to the
	// last one's end, from the processor's log.
	Restoring       time.Duration `json:"restoring_ns"`
	EnvelopesPerSec float64       `json:"envelopes_per_sec"`
	// Restores is esignflow_processor_restores_total.
	Restores int `json:"restores"`
	// PartitionTimes are the restores' own durations, by partition.
	PartitionTimes map[int32]time.Duration `json:"partition_ns"`
	// InRedis is the number of envelope keys in Redis after the restore.
	InRedis int `json:"envelopes_in_redis"`
	// BaselineRSSKiB is the process's RSS before the processor starts;
	// PeakRSSKiB the highest RSS until every partition is restored (the
	// kernel's high-water mark, reset at the baseline, or the highest
	// sample where it cannot be reset); GrowthRSSKiB the difference.
	BaselineRSSKiB int64 `json:"baseline_rss_kib"`
	PeakRSSKiB     int64 `json:"peak_rss_kib"`
	GrowthRSSKiB   int64 `json:"rss_growth_kib"`
	// PeakHeapKiB is the highest Go heap in use sampled during the
	// restore, over the baseline's.
	HeapGrowthKiB int64 `json:"heap_growth_kib"`
	InProcess     bool  `json:"in_process"`
}

// Restore fills the changelog with Envelopes envelope states (each keyed
// by its id and put on the partition its key hashes to, as the ingress
// partitions events and the processor then writes the changelog), starts a
// real processor on an empty Redis, and measures how fast it restores every
// partition and what the restore costs in memory.
func Restore(ctx context.Context, cfg RestoreConfig) (*RestoreResult, error) {
	if cfg.Envelopes <= 0 {
		cfg.Envelopes = 100000
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res := &RestoreResult{Envelopes: cfg.Envelopes, Partitions: int(cfg.Partitions), InProcess: true, PartitionTimes: map[int32]time.Duration{}}
	env, err := newBenchEnv(ctx, cfg.Brokers, cfg.Partitions, cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	defer env.close()
	k, codec, rc, prefix := env.kafka, env.codec, env.redis, env.prefix
	st, err := store.New(store.Config{Client: rc, Prefix: prefix})
	if err != nil {
		return nil, err
	}

	t0 := time.Now()
	if res.ChangelogBytes, err = fillChangelog(ctx, k.brokers, cfg.KafkaOpts, codec, cfg.Envelopes); err != nil {
		return nil, fmt.Errorf("filling the changelog: %w", err)
	}
	res.Fill = time.Since(t0)

	rl := &restoreLog{Handler: cfg.Logger.Handler(), shared: &restoreTimes{took: map[int32]time.Duration{}}}
	metrics := prometheus.NewRegistry()
	p, err := processor.New(processor.Config{Metrics: metrics,
		Brokers: k.brokers, Codec: codec, Store: st, Providers: map[string]processor.Creator{"sim": noCreate{}},
		Logger: slog.New(rl), Topics: topics.Config{Partitions: cfg.Partitions, Names: k.names},
		Group:     k.prefix + "esignflow-processor",
		KafkaOpts: append([]kgo.Opt{kgo.FetchMaxWait(20 * time.Millisecond)}, cfg.KafkaOpts...),
	})
	if err != nil {
		return nil, err
	}

	runtime.GC()
	debug.FreeOSMemory()
	res.BaselineRSSKiB = procStatus("VmRSS")
	hwmReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	var heap0 runtime.MemStats
	runtime.ReadMemStats(&heap0)
	sampler := startRSSSampler(heap0.HeapInuse)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Run(runCtx) }()
	all := make([]int32, cfg.Partitions)
	for i := range all {
		all[i] = int32(i)
	}
	for {
		ckpts, err := st.Checkpoints(ctx, all)
		if err == nil && everyCheckpoint(ckpts) {
			break
		}
		select {
		case err := <-done:
			sampler.stop()
			return nil, fmt.Errorf("processor stopped: %w", err)
		case <-ctx.Done():
			sampler.stop()
			stop()
			<-done
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	res.Elapsed = time.Since(start)
	peakRSS, heapGrowth := sampler.stop()
	if hwmReset {
		peakRSS = max(peakRSS, procStatus("VmHWM"))
	}
	res.PeakRSSKiB, res.HeapGrowthKiB = peakRSS, heapGrowth
	res.GrowthRSSKiB = res.PeakRSSKiB - res.BaselineRSSKiB
	stop()
	if err := <-done; err != nil {
		return nil, err
	}
	restores, _, _ := promread.Sum(metrics, "esignflow_processor_restores_total", nil)
	res.Restores = int(restores)
	first, last := rl.shared.window()
	res.Restoring = last.Sub(first)
	if res.Restoring <= 0 {
		res.Restoring = res.Elapsed
	}
	res.PartitionTimes = rl.shared.took
	res.EnvelopesPerSec = float64(cfg.Envelopes) / res.Restoring.Seconds()
	if res.InRedis, err = countKeys(ctx, rc, escapePattern(prefix)+"{p*}:env:*"); err != nil {
		return nil, err
	}
	if res.InRedis != cfg.Envelopes {
		return res, fmt.Errorf("%d envelopes in Redis after the restore, want %d", res.InRedis, cfg.Envelopes)
	}
	if res.Restores != int(cfg.Partitions) && cfg.Envelopes >= 100*int(cfg.Partitions) {
		return res, fmt.Errorf("%d partitions restored, want %d", res.Restores, cfg.Partitions)
	}
	return res, nil
}

func everyCheckpoint(ckpts []*store.Checkpoint) bool {
	for _, c := range ckpts {
		if c == nil {
			return false
		}
	}
	return len(ckpts) > 0
}

// fillChangelog produces n envelope states to the changelog, each to the
// partition its key hashes to (franz-go's murmur2, Kafka's default, as the
// ingress and the benchmarks produce events), and returns the bytes of the
// values produced.
func fillChangelog(ctx context.Context, brokers []string, opts []kgo.Opt, codec *schemas.Codec, n int) (int64, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(5 * time.Millisecond), kgo.ProducerBatchMaxBytes(1 << 20)}, opts...)...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var bytes int64
	var firstErr atomic.Pointer[error]
	topic := codec.Topics().Envelopes
	t0 := time.Now().Add(-24 * time.Hour)
	for i := range n {
		e := benchEnvelope(i, t0)
		b, err := codec.Encode(&schemas.Envelope{State: e.State, Pending: e.Pending})
		if err != nil {
			return 0, err
		}
		bytes += int64(len(b))
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(e.State.EnvelopeID), Value: b}, func(_ *kgo.Record, err error) {
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
			}
		})
		if p := firstErr.Load(); p != nil {
			return 0, *p
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, err
	}
	if p := firstErr.Load(); p != nil {
		return 0, *p
	}
	return bytes, nil
}

// benchEnvelope is envelope i's state as the processor would have made it:
// created for a request, sent to two recipients, the first of whom has
// viewed it, every fifth one completed; two confirming polls since the
// last change wait in its pending audit entries.
func benchEnvelope(i int, t0 time.Time) envelope.Envelope {
	id := fmt.Sprintf("bench-env-%08d", i)
	req, tenant := fmt.Sprintf("bench-req-%08d", i), "bench"
	ip, ua := "203.0.113.7", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"
	at := t0.Add(time.Duration(i) * time.Millisecond)
	status := func(s schemas.Status) *schemas.Status { return &s }
	r := func(id, email string, s schemas.RecipientStatus) schemas.RecipientUpdate {
		return schemas.RecipientUpdate{RecipientID: id, Email: email, Name: "Signer " + id, Status: s, SourceIP: &ip, UserAgent: &ua}
	}
	evs := []schemas.EnvelopeEvent{
		{Source: schemas.SourceAPI, Type: "created", Status: status(schemas.StatusCreated), RequestID: &req, Tenant: &tenant},
		{Source: schemas.SourceAPI, Type: "sent", Status: status(schemas.StatusSent)},
		{Source: schemas.SourceWebhook, Type: "recipient-sent", Recipients: []schemas.RecipientUpdate{r("r1", "alice@example.com", schemas.RecipientSent), r("r2", "bob@example.com", schemas.RecipientSent)}},
		{Source: schemas.SourceWebhook, Type: "recipient-delivered", Recipients: []schemas.RecipientUpdate{r("r1", "alice@example.com", schemas.RecipientDelivered)}},
		{Source: schemas.SourceWebhook, Type: "recipient-viewed", Recipients: []schemas.RecipientUpdate{r("r1", "alice@example.com", schemas.RecipientViewed)}},
	}
	if i%5 == 4 {
		evs = append(evs,
			schemas.EnvelopeEvent{Source: schemas.SourceWebhook, Type: "recipient-signed", Recipients: []schemas.RecipientUpdate{r("r1", "alice@example.com", schemas.RecipientSigned)}},
			schemas.EnvelopeEvent{Source: schemas.SourceWebhook, Type: "recipient-signed", Recipients: []schemas.RecipientUpdate{r("r2", "bob@example.com", schemas.RecipientSigned)}},
			schemas.EnvelopeEvent{Source: schemas.SourceWebhook, Type: "completed", Status: status(schemas.StatusCompleted)})
	}
	last := evs[len(evs)-1].Status
	if last == nil {
		last = status(schemas.StatusSent)
	}
	for range 2 { // confirming polls: ignored, so pending
		evs = append(evs, schemas.EnvelopeEvent{Source: schemas.SourcePoll, Type: "poll", Status: last})
	}
	var e envelope.Envelope
	for j, ev := range evs {
		ev.Provider, ev.EnvelopeID = "sim", id
		ev.EventID = fmt.Sprintf("%s-%d", id, j)
		ev.OccurredAt = at.Add(time.Duration(j) * time.Minute)
		ev.ReceivedAt = ev.OccurredAt.Add(40 * time.Millisecond)
		if ev.Recipients == nil {
			ev.Recipients = []schemas.RecipientUpdate{}
		}
		ev.Metadata = map[string]string{}
		e, _ = e.Apply(ev, ev.ReceivedAt)
	}
	return e
}

// restoreTimes collects the processor's restore log lines.
type restoreTimes struct {
	mu          sync.Mutex
	first, last time.Time
	took        map[int32]time.Duration
}

func (t *restoreTimes) window() (time.Time, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.first, t.last
}

// restoreLog passes the processor's log on and notes when restores begin
// and end (the processor's constant messages).
type restoreLog struct {
	slog.Handler
	shared *restoreTimes
}

func (h *restoreLog) Enabled(context.Context, slog.Level) bool { return true }

func (h *restoreLog) Handle(ctx context.Context, r slog.Record) error {
	switch r.Message {
	case "restoring a partition from its changelog", "restored a partition":
		t := h.shared
		t.mu.Lock()
		if r.Message == "restoring a partition from its changelog" {
			if t.first.IsZero() {
				t.first = r.Time
			}
		} else {
			t.last = r.Time
			var part int64 = -1
			var took time.Duration
			r.Attrs(func(a slog.Attr) bool {
				switch a.Key {
				case "partition":
					part = a.Value.Int64()
				case "took":
					took = a.Value.Duration()
				}
				return true
			})
			if part >= 0 {
				t.took[int32(part)] = took
			}
		}
		t.mu.Unlock()
	}
	if !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h *restoreLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &restoreLog{Handler: h.Handler.WithAttrs(as), shared: h.shared}
}

func (h *restoreLog) WithGroup(name string) slog.Handler {
	return &restoreLog{Handler: h.Handler.WithGroup(name), shared: h.shared}
}

// rssSampler samples the process's RSS and Go heap every 10ms.
type rssSampler struct {
	quit     chan struct{}
	done     chan struct{}
	peak     int64
	heapPeak uint64
	heap0    uint64
}

func startRSSSampler(heap0 uint64) *rssSampler {
	s := &rssSampler{quit: make(chan struct{}), done: make(chan struct{}), heap0: heap0}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for n := 0; ; n++ {
			s.peak = max(s.peak, procStatus("VmRSS"))
			if n%10 == 0 { // ReadMemStats stops the world briefly
				runtime.ReadMemStats(&ms)
				s.heapPeak = max(s.heapPeak, ms.HeapInuse)
			}
			select {
			case <-s.quit:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the peak RSS (KiB) and the peak Go
// heap in use over the baseline's (KiB).
func (s *rssSampler) stop() (int64, int64) {
	close(s.quit)
	<-s.done
	return s.peak, (int64(s.heapPeak) - int64(s.heap0)) / 1024
}

// procStatus returns a KiB field of /proc/self/status, 0 where there is
// none.
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			var kib int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kib)
			return kib
		}
	}
	return 0
}

// countKeys counts the keys matching pattern.
func countKeys(ctx context.Context, rc redis.Cmdable, pattern string) (int, error) {
	n := 0
	iter := rc.Scan(ctx, 0, pattern, 10000).Iterator()
	for iter.Next(ctx) {
		n++
	}
	return n, iter.Err()
}

// escapePattern escapes the characters SCAN MATCH treats as a pattern.
func escapePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`)
	return r.Replace(s)
}
