package main

import (
	"context"

	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/reconciler"
	"time"
)

func runReconciler(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("reconciler", e, "Poll the provider for envelopes whose webhooks are late, and publish what it says as POLL events.")
	c := connFlags(fs, true).producing(fs)
	rf := registerReconcilerFlags(fs, time.Hour, time.Minute, 15*time.Minute)
	simURL := fs.String("sim-url", "http://127.0.0.1:8090", "`URL` of the simulator provider to poll")
	instance := fs.String("instance-id", "", "this replica's `name` in its leases (random when empty)")
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:9102", "`address` serving /metrics, /healthz and /readyz (ready while Redis answers)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	svc, closeSvc, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer closeSvc()
	kopts, codec, rc := svc.kafka, svc.codec, svc.redis
	st, err := store.New(store.Config{Client: rc})
	if err != nil {
		return err
	}
	reg := newRegistry()
	simc, err := sim.NewClient(sim.ClientConfig{BaseURL: *simURL, Metrics: reg, Logger: e.log})
	if err != nil {
		return err
	}
	r, err := reconciler.New(reconciler.Config{Brokers: c.brokerList(), KafkaOpts: kopts, Codec: codec, Store: st,
		Pollers: map[string]reconciler.Poller{"sim": simc}, StaleAfter: rf.staleAfter, Interval: rf.interval,
		MinPollInterval: rf.minPoll, Rate: rf.rate, Burst: rf.burst, InstanceID: *instance, Metrics: reg, Logger: e.log})
	if err != nil {
		return err
	}
	if _, err := serveOps(ctx, *metricsAddr, "metrics-addr", reg, redisReady(rc)); err != nil {
		return err
	}
	return r.Run(ctx)
}
