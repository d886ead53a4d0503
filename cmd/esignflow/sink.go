package main

import (
	"context"

	"github.com/esignflow/esignflow/sink"
)

func runSink(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("sink", e, "Archive finalised envelopes (signed document, certificate, audit trail; hash-verified) and publish esignflow.finalized.v1.")
	c := connFlags(fs, false).producing(fs)
	archive := fs.String("archive-dir", "./archive", "`directory` of the archive (content-addressed files and manifests)")
	pv := registerProviders(fs)
	instance := fs.String("instance-id", "", "this replica's stable `name` in its transactional id (random when empty)")
	attempts := fs.Int("attempts", 5, "download attempts before a status change goes to the DLQ")
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:9103", "`address` serving /metrics, /healthz and /readyz (ready while the archive is writable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	svc, closeSvc, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer closeSvc()
	kopts, codec := svc.kafka, svc.codec
	reg := newRegistry()
	clients, err := openProviders(ctx, e, pv, reg)
	if err != nil {
		return err
	}
	downloaders := map[string]sink.Downloader{}
	for name, cl := range clients {
		downloaders[name] = cl
	}
	s, err := sink.New(sink.Config{Brokers: c.brokerList(), KafkaOpts: kopts, Codec: codec, Archive: sink.Dir{Root: *archive},
		Downloaders: downloaders, InstanceID: *instance, Attempts: *attempts, Metrics: reg, Logger: e.log})
	if err != nil {
		return err
	}
	if _, err := serveOps(ctx, *metricsAddr, "metrics-addr", reg, s.Ready); err != nil {
		return err
	}
	return s.Run(ctx)
}
