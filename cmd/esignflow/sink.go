package main

import (
	"context"

	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/sink"
)

func runSink(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("sink", e, "Archive finalised envelopes (signed document, certificate, audit trail; hash-verified) and publish esignflow.finalized.v1.")
	c := connFlags(fs, false).producing(fs)
	archive := fs.String("archive-dir", "./archive", "`directory` of the archive (content-addressed files and manifests)")
	simURL := fs.String("sim-url", "http://127.0.0.1:8090", "`URL` of the simulator provider to download from")
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
	simc, err := sim.NewClient(sim.ClientConfig{BaseURL: *simURL, Metrics: reg, Logger: e.log})
	if err != nil {
		return err
	}
	s, err := sink.New(sink.Config{Brokers: c.brokerList(), KafkaOpts: kopts, Codec: codec, Archive: sink.Dir{Root: *archive},
		Downloaders: map[string]sink.Downloader{"sim": simc}, InstanceID: *instance, Attempts: *attempts, Metrics: reg, Logger: e.log})
	if err != nil {
		return err
	}
	if _, err := serveOps(ctx, *metricsAddr, "metrics-addr", reg, s.Ready); err != nil {
		return err
	}
	return s.Run(ctx)
}
