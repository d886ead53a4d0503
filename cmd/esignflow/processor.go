package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/processor"
)

// processorFlags are the processor's own flags, shared with dev.
type processorFlags struct {
	group       string
	instanceID  string
	maxBatch    int
	partitions  int
	replication int
	dedupTTL    time.Duration
	applyChunk  int
	applyConc   int
	adopt       bool
}

func registerProcessorFlags(fs flagRegistrar) *processorFlags {
	f := &processorFlags{}
	host, _ := os.Hostname()
	fs.StringVar(&f.group, "group", "esignflow-processor", "consumer group `prefix` (-requests and -events are appended)")
	fs.StringVar(&f.instanceID, "instance-id", host, "this replica's stable `name` in its transactional ids; keep it across restarts")
	fs.IntVar(&f.maxBatch, "max-batch", 2000, "most `records` per transaction")
	fs.IntVar(&f.applyChunk, "apply-chunk", 500, "most `events` applied to Redis at once; a transaction's chunks produce while the next applies")
	fs.IntVar(&f.applyConc, "apply-concurrency", 4, "most `partitions` of one transaction applied to Redis at once")
	fs.IntVar(&f.partitions, "partitions", 12, "`partitions` per topic when creating missing topics")
	fs.IntVar(&f.replication, "replication", -1, "replication `factor` when creating missing topics (-1: broker default)")
	fs.DurationVar(&f.dedupTTL, "dedup-ttl", 7*24*time.Hour, "how long event dedup records are kept, a `duration` longer than any provider retries")
	fs.BoolVar(&f.adopt, "adopt-foreign-envelopes", false, "track the envelopes esignflow did not create (events without a request id: the provider account reports every envelope, including those sent from its web app) as foreign envelopes, instead of counting and ignoring their events")
	return f
}

func runProcessor(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("processor", e, "Apply signing requests and events exactly once and publish status changes.")
	c := connFlags(fs, true).producing(fs)
	pf := registerProcessorFlags(fs)
	pv := registerProviders(fs)
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:9101", "`address` serving /metrics, /healthz and /readyz (ready while Redis answers)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := atLeastOne(intFlag{"max-batch", pf.maxBatch}, intFlag{"apply-chunk", pf.applyChunk}, intFlag{"apply-concurrency", pf.applyConc}); err != nil {
		return err
	}
	svc, closeSvc, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer closeSvc()
	kopts, codec, rc := svc.kafka, svc.codec, svc.redis
	st, err := store.New(store.Config{Client: rc, DedupTTL: pf.dedupTTL})
	if err != nil {
		return err
	}
	reg := newRegistry()
	clients, err := openProviders(ctx, e, pv, reg)
	if err != nil {
		return err
	}
	creators := map[string]processor.Creator{}
	for name, cl := range clients {
		creators[name] = cl
	}
	p, err := processor.New(processor.Config{
		Brokers: c.brokerList(), Codec: codec, Store: st, Providers: creators,
		Group: pf.group, InstanceID: pf.instanceID, AdoptForeign: pf.adopt, MaxBatch: pf.maxBatch, ApplyChunk: pf.applyChunk, ApplyConcurrency: pf.applyConc,
		Topics:    topics.Config{Partitions: int32(pf.partitions), Replication: int16(pf.replication)},
		KafkaOpts: kopts, Metrics: reg, Logger: e.log,
	})
	if err != nil {
		return err
	}
	if _, err := serveOps(ctx, *metricsAddr, "metrics-addr", reg, redisReady(rc)); err != nil {
		return err
	}
	return p.Run(ctx)
}

// redisReady is the readiness of a service that cannot work without Redis:
// nil while Redis answers PING.
func redisReady(rc redis.UniversalClient) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := rc.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		return nil
	}
}
