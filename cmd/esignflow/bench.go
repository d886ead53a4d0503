package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/bench"
	"github.com/esignflow/esignflow/internal/compression"
	"github.com/esignflow/esignflow/provider/registry"
	"github.com/esignflow/esignflow/provider/sim"
)

func runBench(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "processor":
			return runBenchProcessor(ctx, e, args[1:])
		case "ingress":
			return runBenchIngress(ctx, e, args[1:])
		case "restore":
			return runBenchRestore(ctx, e, args[1:])
		}
	}
	return runBenchPipeline(ctx, e, args)
}

// benchKafka is the Kafka flags every benchmark shares: the same command
// measures the in-process kfake broker or a real cluster.
type benchKafka struct {
	brokers     string
	compression string
}

func registerBenchKafka(fs flagRegistrar) *benchKafka {
	b := &benchKafka{}
	fs.StringVar(&b.brokers, "brokers", "", "a real Kafka cluster's comma-separated `host:port` list (each run under a fresh topic and group prefix); in-process kfake when empty")
	fs.StringVar(&b.compression, "kafka-compression", compression.Default, "record batch `compression`: "+compression.Names)
	return b
}

// parse returns the seed brokers (nil for kfake) and the client options.
func (b *benchKafka) parse() ([]string, []kgo.Opt, error) {
	opt, err := compression.Opt(b.compression)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: --kafka-compression: %w", errUsage, err)
	}
	c := conn{brokers: b.brokers}
	return c.brokerList(), []kgo.Opt{opt}, nil
}

func runBenchProcessor(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("bench processor", e, "Measure events/s through the processor, at least once and exactly once, on an in-process broker or --brokers.")
	bk := registerBenchKafka(fs)
	envelopes := fs.Int("envelopes", 10000, "envelopes, 8 events each")
	redisURL := fs.String("redis-url", "", "real Redis `URL` (keys under a fresh prefix, removed after); in-process miniredis when empty")
	batch := fs.Int("max-batch", 2000, "processor batch size")
	rounds := fs.Int("rounds", 2, "runs of each mode, alternating which goes first")
	partitions := fs.Int("partitions", 12, "`partitions` of the events topic")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := atLeastOne(intFlag{"rounds", *rounds}, intFlag{"partitions", *partitions}); err != nil {
		return err
	}
	brokers, kopts, err := bk.parse()
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "bench processor: %d envelopes (%d events) per run, %d runs per mode…\n", *envelopes, *envelopes*bench.EventsPerEnvelope, *rounds)
	res, err := bench.Processor(ctx, bench.ProcessorConfig{Envelopes: *envelopes, RedisURL: *redisURL, MaxBatch: *batch, Rounds: *rounds, Partitions: int32(*partitions),
		Brokers: brokers, KafkaOpts: kopts})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(res)
	}
	for _, r := range res {
		fmt.Fprintf(e.stdout, "%-14s %8d events in %-10s %9.0f events/s  %d status changes  %d aborted transactions\n", r.Mode, r.Events, r.Elapsed.Round(time.Millisecond), r.EventsPerSec, r.StatusChanges, r.Aborted)
	}
	fmt.Fprintf(e.stdout, "exactly-once ÷ at-least-once = %.2f\n", res[1].EventsPerSec/res[0].EventsPerSec)
	return nil
}

func runBenchRestore(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("bench restore", e, "Fill the changelog with N envelope states, start a processor on an empty Redis and measure how fast it\nrestores every partition (envelopes/s) and the process's peak RSS over its baseline (the processor runs in\nthis process, and so do kfake and miniredis when no --brokers or --redis-url is given).")
	bk := registerBenchKafka(fs)
	envelopes := fs.Int("envelopes", 100000, "envelope states in the changelog (2 recipients and 2 pending audit entries each; every fifth completed)")
	partitions := fs.Int("partitions", 4, "`partitions` of the events topic and the changelog")
	redisURL := fs.String("redis-url", "", "real Redis `URL` (keys under a fresh prefix, removed after); in-process miniredis when empty")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := atLeastOne(intFlag{"envelopes", *envelopes}, intFlag{"partitions", *partitions}); err != nil {
		return err
	}
	brokers, kopts, err := bk.parse()
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "bench restore: %d envelopes on %d partitions…\n", *envelopes, *partitions)
	r, err := bench.Restore(ctx, bench.RestoreConfig{Envelopes: *envelopes, Partitions: int32(*partitions), Brokers: brokers, RedisURL: *redisURL,
		KafkaOpts: kopts, Timeout: *timeout})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(r)
	}
	fmt.Fprintf(e.stdout, "changelog    %d envelopes, %d MiB of values, on %d partitions, filled in %s\n", r.Envelopes, r.ChangelogBytes>>20, r.Partitions, r.Fill.Round(time.Millisecond))
	fmt.Fprintf(e.stdout, "restore      %d partitions in %s (%s from the processor's start to every checkpoint): %.0f envelopes/s\n", r.Restores, r.Restoring.Round(time.Millisecond), r.Elapsed.Round(time.Millisecond), r.EnvelopesPerSec)
	fmt.Fprintf(e.stdout, "memory       RSS baseline %d MiB, peak %d MiB, growth %d MiB; Go heap growth %d MiB (in process)\n", r.BaselineRSSKiB>>10, r.PeakRSSKiB>>10, r.GrowthRSSKiB>>10, r.HeapGrowthKiB>>10)
	fmt.Fprintf(e.stdout, "redis        %d envelopes after the restore\n", r.InRedis)
	return nil
}

func runBenchIngress(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("bench ingress", e, "Drive signed webhooks over loopback at the real ingress and at a bare verify-only handler, and compare.")
	bk := registerBenchKafka(fs)
	redisURL := fs.String("redis-url", "", "real Redis `URL` for idempotency keys (under a fresh prefix, removed after); in-process miniredis when empty")
	requests := fs.Int("requests", 20000, "requests per target")
	conc := fs.Int("concurrency", 64, "connections in flight")
	dur := fs.Duration("duration", 30*time.Second, "longest run per target")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	brokers, kopts, err := bk.parse()
	if err != nil {
		return err
	}
	res, err := bench.Ingress(ctx, bench.IngressConfig{Requests: *requests, Concurrency: *conc, Duration: *dur, Brokers: brokers, RedisURL: *redisURL, KafkaOpts: kopts})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(res)
	}
	for _, r := range res {
		fmt.Fprintf(e.stdout, "%-36s %7d req in %-9s %8.0f req/s  p50 %-9s p99 %-9s errors %d\n", r.Target, r.Requests, r.Elapsed.Round(time.Millisecond), r.PerSec, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Errors)
	}
	fmt.Fprintf(e.stdout, "ingress ÷ bare = %.2f\n", res[0].PerSec/res[1].PerSec)
	if res[0].Errors+res[1].Errors > 0 {
		return fmt.Errorf("%d requests failed", res[0].Errors+res[1].Errors)
	}
	return nil
}

func runBenchPipeline(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("bench", e, "Drive the whole system (in process, loopback only) with N envelopes through the simulator and report\nthroughput, latency, correctness (against the simulator's truth and a read_committed consumer) and work.\nExits non-zero when any correctness figure is not zero. Also: 'bench processor', 'bench ingress', 'bench restore'.")
	n := fs.Int("envelopes", 10000, "signing requests to send")
	bk := registerBenchKafka(fs)
	rate := fs.Float64("rate", 0, "requests per second (0: as fast as they go)")
	dialect := fs.String("dialect", registry.Dialects()[0], "`protocol` the simulator speaks, used through that provider's own client: "+strings.Join(registry.Dialects(), " or "))
	chaos := fs.Bool("chaos", false, "the chaos scenario: dropped, duplicated, reordered webhooks, failing and timing-out API calls, 3 processor restarts, a Redis flush, a Redis rollback (a copy put back 3s later), broker produce faults (kfake only: a real broker is left alone)")
	seed := fs.Uint64("seed", 1, "seed of the simulator's choices and the chaos timing")
	step := fs.Duration("step", 50*time.Millisecond, "simulated recipients' mean time per step")
	drop := fs.Float64("drop", 0, "fraction of webhooks dropped (without --chaos)")
	dup := fs.Float64("duplicate", 0, "fraction of webhooks duplicated (without --chaos)")
	redisURL := fs.String("redis-url", "", "a real Redis `URL` (the chaos scenario flushes its database and rolls it back); embedded when empty")
	timeout := fs.Duration("timeout", 15*time.Minute, "give up after this long")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this `file`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	brokers, kopts, err := bk.parse()
	if err != nil {
		return err
	}
	tty := isTerminal(e.stderr)
	cfg := bench.PipelineConfig{Envelopes: *n, Dialect: *dialect, Rate: *rate, Chaos: *chaos, Seed: *seed, Step: *step, RedisURL: *redisURL, Timeout: *timeout,
		Brokers: brokers, KafkaOpts: kopts,
		Faults: sim.Faults{Drop: *drop, Duplicate: *dup},
		Progress: func(p bench.Progress) {
			line := fmt.Sprintf("%6.1fs  requested %d/%d  final %d  agreeing %d  status changes %d  unfinalised %d",
				p.Elapsed.Seconds(), p.Requested, *n, p.Final, p.Matching, p.StatusChanges, p.Unfinalized)
			if tty {
				width := 30
				done := width * p.Matching / max(1, *n)
				fmt.Fprintf(e.stderr, "\r[%s%s] %s", strings.Repeat("#", done), strings.Repeat(".", width-done), line)
				return
			}
			if int(p.Elapsed.Seconds())%5 == 0 {
				fmt.Fprintln(e.stderr, line)
			}
		}}
	res, err := bench.Pipeline(ctx, cfg)
	if tty {
		fmt.Fprintln(e.stderr)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		if err := json.NewEncoder(e.stdout).Encode(res); err != nil {
			return err
		}
	} else {
		printPipeline(e, res)
	}
	if !res.OK() {
		return fmt.Errorf("correctness figures are not all zero: %+v", res.Correctness)
	}
	return nil
}

func printPipeline(e *env, r *bench.PipelineResult) {
	w := e.stdout
	fmt.Fprintf(w, "%d envelopes in %s (dialect: %s, chaos: %v)\n", r.Envelopes, r.Elapsed.Round(time.Millisecond), r.Dialect, r.Chaos)
	fmt.Fprintf(w, "throughput   requests %.0f/s  webhooks accepted %.0f/s  events processed %.0f/s  status changes %.0f/s\n",
		r.Throughput.RequestsPerSec, r.Throughput.WebhooksPerSec, r.Throughput.EventsPerSec, r.Throughput.StatusChangesPerSec)
	l := r.Latency.EventToStatus
	fmt.Fprintf(w, "latency      provider event → status change (n=%d): p50 %s  p95 %s  p99 %s  max %s\n", l.N, l.P50.Round(time.Millisecond), l.P95.Round(time.Millisecond), l.P99.Round(time.Millisecond), l.Max.Round(time.Millisecond))
	l = r.Latency.RequestToSent
	fmt.Fprintf(w, "             request → SENT (n=%d): p50 %s  p95 %s  p99 %s  max %s\n", l.N, l.P50.Round(time.Millisecond), l.P95.Round(time.Millisecond), l.P99.Round(time.Millisecond), l.Max.Round(time.Millisecond))
	c := r.Correctness
	fmt.Fprintf(w, "correctness  lost %d  duplicated versions %d  version gaps %d  audit failures %d  finalized missing %d  finalized twice %d  dead letters %d\n",
		c.Lost, c.Duplicated, c.Gaps, c.AuditFailures, c.FinalizedMissed, c.FinalizedTwice, c.DeadLetters)
	k := r.Work
	fmt.Fprintf(w, "work         webhooks %d  duplicates suppressed %.0f  replays %.0f  polls %.0f  repairs %.0f  restores %.0f  redis trips/event %.3f  processor restarts %d  peak RSS %d MiB\n",
		k.Webhooks, k.DuplicatesDropped, k.Replays, k.Polls, k.Repairs, k.Restores, k.RedisTripsPerEvent, k.ProcessorRestarts, k.PeakRSSKiB/1024)
	if k.RedisFlushes > 0 || k.RedisRollbacks > 0 {
		fmt.Fprintf(w, "             redis flushed %d×, rolled back %d× (%d keys, a copy %s old)\n", k.RedisFlushes, k.RedisRollbacks, k.RolledBackKeys, k.RollbackAge.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "final        %v\n", r.Truth)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
