package main

import (
	"context"
	"time"

	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/reconciler"
)

func runReconciler(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("reconciler", e, "Poll the provider for envelopes whose webhooks are late, and publish what it says as POLL events.")
	c := connFlags(fs, true).producing(fs)
	rf := registerReconcilerFlags(fs, time.Hour, time.Minute, 15*time.Minute)
	fs.Lookup("min-poll-interval").Usage = "least `duration` between two polls of one envelope, across replicas, for every provider (default: each provider's own rule where it has one — DocuSign's 15m — else 15m)"
	pv := registerProviders(fs)
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
	clients, err := openProviders(ctx, e, pv, reg)
	if err != nil {
		return err
	}
	pollers := map[string]reconciler.Poller{}
	for name, cl := range clients {
		pollers[name] = cl
	}
	r, err := reconciler.New(reconciler.Config{Brokers: c.brokerList(), KafkaOpts: kopts, Codec: codec, Store: st,
		Pollers: pollers, PollIntervals: pollIntervals(fs, clients), StaleAfter: rf.staleAfter, Interval: rf.interval,
		MinPollInterval: rf.minPoll, Rate: rf.rate, Burst: rf.burst, NotFoundAfter: rf.notFoundAfter, InstanceID: *instance, Metrics: reg, Logger: e.log})
	if err != nil {
		return err
	}
	if _, err := serveOps(ctx, *metricsAddr, "metrics-addr", reg, redisReady(rc)); err != nil {
		return err
	}
	return r.Run(ctx)
}
