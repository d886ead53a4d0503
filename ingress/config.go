package ingress

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/registry"
	"github.com/esignflow/esignflow/schemas"
)

// Keys gives the active secrets of a provider: Standard Webhooks keys
// decoded from whsec_, DocuSign HMAC keys and Dropbox Sign API keys as
// their bytes. *secrets.Dir implements it.
type Keys interface {
	Keys(provider string) [][]byte
}

// Tokens maps an API bearer token to the one tenant it acts for. It must
// compare tokens in constant time. *TokenFile implements it.
type Tokens interface {
	Tenant(token string) (tenant string, ok bool)
}

// Config configures an Ingress. Brokers, Codec, Redis and Secrets are
// required.
//
// The ingress serves two listeners: the webhook listener (Addr), which only
// answers POST /webhooks/{provider} and is the one to expose to providers,
// and the API listener (APIAddr), with the signing-request API, /metrics,
// /healthz and /readyz, for the internal network only.
type Config struct {
	// Addr is the webhook listen address, overriding the default
	// 127.0.0.1:8080.
	Addr string
	// Listener, when set, is used instead of listening on Addr.
	Listener net.Listener
	// APIAddr is the API listen address, overriding the default
	// 127.0.0.1:8079 — or 127.0.0.1:0 (a free port) when Listener is set
	// and APIListener is not, so that a caller bringing its own webhook
	// listener (tests, benchmarks) never competes for a fixed port.
	APIAddr string
	// APIListener, when set, is used instead of listening on APIAddr.
	APIListener net.Listener
	// Tokens authenticates the signing-request API: each request needs
	// "Authorization: Bearer TOKEN" and acts for the token's tenant only.
	// Nil refuses every API request with 401, unless InsecureNoAuth.
	// /metrics, /healthz and /readyz need no token.
	Tokens Tokens
	// InsecureNoAuth, with Tokens nil, serves the signing-request API to
	// anyone who can reach the API listener, for any tenant.
	InsecureNoAuth bool
	// TrustedProxies are the peers whose X-Forwarded-For and Forwarded
	// headers are believed for the source IP recorded in events (the
	// rightmost address not itself trusted). Empty believes no header: the
	// source IP is the TCP peer.
	TrustedProxies []netip.Prefix
	// Providers are the providers a signing request may name (those the
	// processor creates envelopes with), overriding the default: the
	// registry's default provider alone. Any other is answered 400 at
	// once. A request that names none is given the first.
	Providers []string
	// Webhooks are the webhook schemes served, by provider name (POST
	// /webhooks/{name}), overriding the default: every provider of the
	// registry that sends webhooks.
	Webhooks map[string]provider.Webhook
	// Topics says how missing topics are created when Run starts (names
	// from Codec); /readyz fails until the ingress's topics exist.
	Topics topics.Config
	// Brokers are the Kafka seed brokers.
	Brokers []string
	// KafkaOpts are passed to the producer after esignflow's own (acks=all,
	// idempotent).
	KafkaOpts []kgo.Opt
	// Codec encodes records through the Schema Registry.
	Codec *schemas.Codec
	// Redis keeps the signing-request API's idempotency keys; request
	// status is read from the processor's store in it.
	Redis redis.UniversalClient
	// Secrets are the webhook secrets, by provider.
	Secrets Keys
	// MaxBody is the largest request body, overriding the default 1 MiB.
	MaxBody int64
	// Tolerance is how far a signed timestamp may be from now, overriding
	// the default 5 minutes.
	Tolerance time.Duration
	// PublishTimeout bounds one publish to Kafka before answering 503,
	// overriding the default 5s.
	PublishTimeout time.Duration
	// MaxInFlight bounds the requests being handled at once; past it the
	// answer is 503 with Retry-After, overriding the default 1024.
	MaxInFlight int
	// IdempotencyTTL is how long a signing request's Idempotency-Key, and
	// the record that the ingress accepted its request, are remembered,
	// overriding the default 24h.
	IdempotencyTTL time.Duration
	// KeyPrefix prefixes the Redis keys, overriding the default "esf:".
	KeyPrefix string
	// Ready adds checks to /readyz (esignflow dev reports its other
	// components through it).
	Ready func(ctx context.Context) error
	// Metrics registers the ingress's metrics, overriding a private
	// registry; /metrics serves Gatherer.
	Metrics prometheus.Registerer
	// Gatherer is what /metrics serves, overriding the Metrics registry
	// when that is a *prometheus.Registry.
	Gatherer prometheus.Gatherer
	// Logger, overriding slog.Default.
	Logger *slog.Logger
	// Now is the clock, overriding time.Now (tests).
	Now func() time.Time
}

// Validate reports the first missing field.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("ingress: Brokers is required")
	case c.Codec == nil:
		return errors.New("ingress: Codec is required")
	case c.Redis == nil:
		return errors.New("ingress: Redis is required")
	case c.Secrets == nil:
		return errors.New("ingress: Secrets is required")
	}
	return nil
}

func (c *Config) defaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.APIAddr == "" {
		c.APIAddr = "127.0.0.1:8079"
		if c.Listener != nil && c.APIListener == nil {
			c.APIAddr = "127.0.0.1:0"
		}
	}
	if len(c.Providers) == 0 {
		c.Providers = []string{registry.Default()}
	}
	if c.Webhooks == nil {
		c.Webhooks = registry.Webhooks()
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 1 << 20
	}
	if c.Tolerance <= 0 {
		c.Tolerance = 5 * time.Minute
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if c.IdempotencyTTL <= 0 {
		c.IdempotencyTTL = 24 * time.Hour
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "esf:"
	}
	if c.Metrics == nil {
		reg := prometheus.NewRegistry()
		c.Metrics, c.Gatherer = reg, reg
	}
	if c.Gatherer == nil {
		if g, ok := c.Metrics.(prometheus.Gatherer); ok {
			c.Gatherer = g
		} else {
			c.Gatherer = prometheus.NewRegistry()
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}
