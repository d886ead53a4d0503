package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/esignflow/esignflow/ingress"
	"github.com/esignflow/esignflow/internal/secrets"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/provider/registry"
)

// ingressFlags are the ingress's own flags.
type ingressFlags struct {
	httpAddr       string
	apiAddr        string
	tokensFile     string
	insecureNoAuth bool
	trustedProxies string
	providers      string
	secretsDir     string
	maxBody        int64
	maxInFlight    int
	publishTimeout time.Duration
	tolerance      time.Duration
	partitions     int
	replication    int
}

func registerIngressFlags(fs flagRegistrar, defaultSecrets string) *ingressFlags {
	f := &ingressFlags{}
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8080", "public webhook listen `address`: serves only POST /webhooks/{provider}")
	fs.StringVar(&f.apiAddr, "api-addr", "127.0.0.1:8079", "internal API listen `address`: the signing-request API (bearer token), /metrics, /healthz, /readyz")
	fs.StringVar(&f.tokensFile, "api-tokens-file", "", "`file` of API bearer tokens, one 'TOKEN TENANT' pair per line (# comments); a token acts for its tenant only; re-read on SIGHUP and on change")
	fs.BoolVar(&f.insecureNoAuth, "api-insecure-no-auth", false, "serve the signing-request API without tokens, for any tenant, to anyone who reaches --api-addr")
	fs.StringVar(&f.trustedProxies, "trusted-proxies", "", "comma-separated `CIDR` list of proxies whose X-Forwarded-For / Forwarded headers are believed for the recorded source IP")
	fs.StringVar(&f.providers, "providers", registry.Default(), "comma-separated `names` of the providers signing requests may name (those the processor creates envelopes with); the first is given to a request that names none")
	fs.StringVar(&f.secretsDir, "webhook-secrets-dir", defaultSecrets, "`directory` with one secrets file per provider ("+strings.Join(registry.Names(), ", ")+"), one secret per line; re-read on SIGHUP and on change")
	fs.Int64Var(&f.maxBody, "max-body", 1<<20, "largest request body in `bytes`")
	fs.IntVar(&f.maxInFlight, "max-in-flight", 1024, "most requests handled at once before answering 503")
	fs.DurationVar(&f.publishTimeout, "publish-timeout", 5*time.Second, "longest wait for the broker's acknowledgement before answering 503")
	fs.DurationVar(&f.tolerance, "timestamp-tolerance", 5*time.Minute, "how far a signed webhook timestamp may be from now, either way")
	fs.IntVar(&f.partitions, "partitions", 12, "`partitions` per topic when creating missing topics")
	fs.IntVar(&f.replication, "replication", -1, "replication `factor` when creating missing topics (-1: broker default)")
	return f
}

// apiAuth returns the API's tokens: the file's, or none with
// --api-insecure-no-auth. One of the two is required.
func (f *ingressFlags) apiAuth(e *env) (*ingress.TokenFile, error) {
	switch {
	case f.tokensFile != "" && f.insecureNoAuth:
		return nil, fmt.Errorf("%w: give either --api-tokens-file or --api-insecure-no-auth", errUsage)
	case f.insecureNoAuth:
		e.log.Warn("the signing-request API takes requests for any tenant from anyone who reaches it (--api-insecure-no-auth)", "api_addr", f.apiAddr)
		return nil, nil
	case f.tokensFile == "":
		return nil, fmt.Errorf("%w: --api-tokens-file is required (a file of 'TOKEN TENANT' lines); --api-insecure-no-auth serves the API without tokens", errUsage)
	}
	tokens, err := ingress.OpenTokens(f.tokensFile, e.log)
	if err != nil {
		return nil, fmt.Errorf("--api-tokens-file: %w", err)
	}
	return tokens, nil
}

func runIngress(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("ingress", e, "Serve provider webhooks (verified, published durably) on --http-addr, and the signing-request API, /metrics and readiness on --api-addr.")
	c := connFlags(fs, true).producing(fs)
	f := registerIngressFlags(fs, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.secretsDir == "" {
		return fmt.Errorf("%w: --webhook-secrets-dir is required", errUsage)
	}
	proxies, err := ingress.ParseCIDRs(f.trustedProxies)
	if err != nil {
		return fmt.Errorf("%w: --trusted-proxies: %w", errUsage, err)
	}
	var providers []string
	for _, p := range strings.Split(f.providers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			providers = append(providers, p)
		}
	}
	if len(providers) == 0 {
		return fmt.Errorf("%w: --providers names no provider", errUsage)
	}
	tokens, err := f.apiAuth(e)
	if err != nil {
		return err
	}
	dir, err := secrets.Open(f.secretsDir, registry.DecodeSecret, e.log)
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
	cfg := ingress.Config{
		Addr: f.httpAddr, APIAddr: f.apiAddr, InsecureNoAuth: f.insecureNoAuth, TrustedProxies: proxies, Providers: providers,
		Brokers: c.brokerList(), KafkaOpts: kopts, Codec: codec, Redis: rc, Secrets: dir,
		MaxBody: f.maxBody, MaxInFlight: f.maxInFlight, PublishTimeout: f.publishTimeout, Tolerance: f.tolerance,
		Topics:  topics.Config{Partitions: int32(f.partitions), Replication: int16(f.replication)},
		Metrics: reg, Gatherer: reg, Logger: e.log,
	}
	if tokens != nil {
		cfg.Tokens = tokens
	}
	in, err := ingress.New(cfg)
	if err != nil {
		return err
	}
	e.log.Info("webhook secrets loaded", "providers", dir.Providers())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := make(chan error, 2)
	go func() { watch <- dir.Run(ctx, 2*time.Second) }()
	if tokens != nil {
		e.log.Info("api tokens loaded", "tenants", tokens.Tenants())
		go func() { watch <- tokens.Run(ctx, 2*time.Second) }()
	} else {
		watch <- nil
	}
	err = in.Run(ctx)
	cancel()
	return errors.Join(err, <-watch, <-watch)
}
