package main

import (
	"context"
	"time"

	"github.com/esignflow/esignflow/sink"
)

func runSink(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("sink", e, "Archive finalised envelopes (signed document, certificate, audit trail; hash-verified) and publish esignflow.finalized.v1.\nAn envelope whose provider is down or not ready waits on the sink's retry topic with backoff, without holding the others.")
	c := connFlags(fs, false).producing(fs)
	archive := fs.String("archive-dir", "./archive", "`directory` of the archive (content-addressed files and manifests)")
	pv := registerProviders(fs)
	instance := fs.String("instance-id", "", "this replica's stable `name` in its transactional id (random when empty)")
	retryBase := fs.Duration("retry-base", time.Second, "first wait before trying again an envelope whose provider is down or not ready (it waits on the retry topic, the others go on); doubles with each failed attempt up to --retry-max")
	retryMax := fs.Duration("retry-max", 5*time.Minute, "longest wait between two attempts at a parked envelope: it is retried at least this often for as long as it takes; only a refusal goes to the DLQ")
	attemptTimeout := fs.Duration("attempt-timeout", 30*time.Second, "bound on one attempt at an envelope (all its downloads)")
	digestAttempts := fs.Int("digest-attempts", 3, "downloads of an artefact in a row that may not match the SHA-256 the provider declares before the envelope goes to the DLQ")
	notFoundAfter := fs.Duration("not-found-after", time.Hour, "how long the provider may answer \"not found\" for a finished envelope's files before it goes to the DLQ")
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
		Downloaders: downloaders, InstanceID: *instance, RetryBase: *retryBase, RetryMax: *retryMax, AttemptTimeout: *attemptTimeout,
		DigestAttempts: *digestAttempts, NotFoundAfter: *notFoundAfter, Metrics: reg, Logger: e.log})
	if err != nil {
		return err
	}
	if _, err := serveOps(ctx, *metricsAddr, "metrics-addr", reg, s.Ready); err != nil {
		return err
	}
	return s.Run(ctx)
}
