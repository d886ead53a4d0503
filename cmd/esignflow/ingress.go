package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/esignflow/esignflow/ingress"
	"github.com/esignflow/esignflow/internal/secrets"
	"github.com/esignflow/esignflow/provider/stdwebhook"
)

// decodeSecret turns a line of a provider's secrets file into key bytes:
// Standard Webhooks secrets (sim, standard) are whsec_<base64>; DocuSign
// HMAC keys and Dropbox Sign API keys are used as their bytes.
func decodeSecret(provider, line string) ([]byte, error) {
	switch provider {
	case "sim", "standard":
		return stdwebhook.ParseSecret(line)
	default:
		return []byte(line), nil
	}
}

// ingressFlags are the ingress's own flags, shared with dev.
type ingressFlags struct {
	httpAddr       string
	secretsDir     string
	maxBody        int64
	maxInFlight    int
	publishTimeout time.Duration
	tolerance      time.Duration
}

func registerIngressFlags(fs flagRegistrar, defaultSecrets string) *ingressFlags {
	f := &ingressFlags{}
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8080", "ingress listen `address`")
	fs.StringVar(&f.secretsDir, "webhook-secrets-dir", defaultSecrets, "`directory` with one secrets file per provider (sim, standard, docusign, dropboxsign), one secret per line; re-read on SIGHUP and on change")
	fs.Int64Var(&f.maxBody, "max-body", 1<<20, "largest request body in `bytes`")
	fs.IntVar(&f.maxInFlight, "max-in-flight", 1024, "most requests handled at once before answering 503")
	fs.DurationVar(&f.publishTimeout, "publish-timeout", 5*time.Second, "longest wait for the broker's acknowledgement before answering 503")
	fs.DurationVar(&f.tolerance, "timestamp-tolerance", 5*time.Minute, "how far a signed webhook timestamp may be from now, either way")
	return f
}

func runIngress(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("ingress", e, "Serve provider webhooks (verified, published durably) and the signing-request API.")
	c := connFlags(fs, true).producing(fs)
	f := registerIngressFlags(fs, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.secretsDir == "" {
		return fmt.Errorf("%w: --webhook-secrets-dir is required", errUsage)
	}
	dir, err := secrets.Open(f.secretsDir, decodeSecret, e.log)
	if err != nil {
		return fmt.Errorf("--webhook-secrets-dir: %w", err)
	}
	svc, closeSvc, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer closeSvc()
	kopts, codec, rc := svc.kafka, svc.codec, svc.redis
	reg := newRegistry()
	in, err := ingress.New(ingress.Config{
		Addr: f.httpAddr, Brokers: c.brokerList(), KafkaOpts: kopts, Codec: codec, Redis: rc, Secrets: dir,
		MaxBody: f.maxBody, MaxInFlight: f.maxInFlight, PublishTimeout: f.publishTimeout, Tolerance: f.tolerance,
		Metrics: reg, Gatherer: reg, Logger: e.log,
	})
	if err != nil {
		return err
	}
	e.log.Info("webhook secrets loaded", "providers", dir.Providers())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := make(chan error, 1)
	go func() { watch <- dir.Run(ctx, 2*time.Second) }()
	err = in.Run(ctx)
	cancel()
	return errors.Join(err, <-watch)
}
