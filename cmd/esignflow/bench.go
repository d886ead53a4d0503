package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/esignflow/esignflow/internal/bench"
)

func runBench(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "processor":
			return runBenchProcessor(ctx, e, args[1:])
		case "ingress":
			return runBenchIngress(ctx, e, args[1:])
		}
	}
	return runBenchPipeline(ctx, e, args)
}

func runBenchProcessor(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("bench processor", e, "Measure events/s through the processor, at least once and exactly once, on an in-process broker.")
	envelopes := fs.Int("envelopes", 10000, "envelopes, 8 events each")
	redisURL := fs.String("redis-url", "", "real Redis `URL` (keys under a fresh prefix, removed after); in-process miniredis when empty")
	batch := fs.Int("max-batch", 2000, "processor batch size")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "bench processor: %d envelopes (%d events) per mode…\n", *envelopes, *envelopes*bench.EventsPerEnvelope)
	res, err := bench.Processor(ctx, bench.ProcessorConfig{Envelopes: *envelopes, RedisURL: *redisURL, MaxBatch: *batch})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(res)
	}
	for _, r := range res {
		fmt.Fprintf(e.stdout, "%-14s %8d events in %-10s %9.0f events/s  %d status changes\n", r.Mode, r.Events, r.Elapsed.Round(time.Millisecond), r.EventsPerSec, r.StatusChanges)
	}
	fmt.Fprintf(e.stdout, "exactly-once ÷ at-least-once = %.2f\n", res[1].EventsPerSec/res[0].EventsPerSec)
	return nil
}

func runBenchIngress(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("bench ingress", e, "Drive signed webhooks over loopback at the real ingress and at a bare verify-only handler, and compare.")
	requests := fs.Int("requests", 20000, "requests per target")
	conc := fs.Int("concurrency", 64, "connections in flight")
	dur := fs.Duration("duration", 30*time.Second, "longest run per target")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	res, err := bench.Ingress(ctx, bench.IngressConfig{Requests: *requests, Concurrency: *conc, Duration: *dur})
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
	_ = os.Stdout
	return fmt.Errorf("the pipeline benchmark is not yet implemented; try 'esignflow bench processor' or 'esignflow bench ingress'")
}
