package processor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/registry"
	"github.com/esignflow/esignflow/schemas"
)

// Creator creates envelopes at a provider: the one thing the processor asks
// of provider.Provider.
type Creator interface {
	Create(ctx context.Context, key string, req schemas.SigningRequest) (provider.Envelope, error)
}

// Point names a step of the processing protocol, for Config.Crash.
type Point string

// The points a test may crash the processor at.
const (
	// AfterStore: the batch's Redis write is done, nothing is produced.
	AfterStore Point = "after-store"
	// AfterProduce: the status changes are produced in the open
	// transaction, which is not committed.
	AfterProduce Point = "after-produce"
	// Fenced: a batch was refused because another member claimed its
	// partition since this member did (it is a zombie).
	Fenced Point = "fenced"
	// Restoring: a partition's restore has begun (its keys are deleted)
	// and its changelog is about to be read; a test may make it slow.
	Restoring Point = "restoring"
)

// ErrCrashed is returned by Run when Config.Crash asked for a crash.
var ErrCrashed = errors.New("processor: injected crash")

// Config configures a Processor. Brokers, Codec, Store and at least one
// Provider are required.
type Config struct {
	// Brokers are the Kafka seed brokers.
	Brokers []string
	// Codec encodes and decodes records through the Schema Registry.
	Codec *schemas.Codec
	// Store is the Redis envelope store.
	Store *store.Store
	// Providers create envelopes, by the provider name a request carries
	// (DefaultProvider when it carries none): the enabled providers. A
	// request for any other is dead-lettered with the reason the registry
	// gives (for a provider esignflow has an API client for, the flags
	// that enable it).
	Providers map[string]Creator
	// DefaultProvider is the provider of a request that names none,
	// overriding the registry's default (registry.Default).
	DefaultProvider string
	// KnownProviders are the provider names an event may carry; an event
	// of any other goes to the DLQ. Defaults to every provider of the
	// registry (registry.Names) plus the names in Providers.
	KnownProviders []string
	// Group is the consumer group, overriding the default
	// "esignflow-processor". Requests are consumed by Group+"-requests",
	// events by Group+"-events".
	Group string
	// InstanceID names this replica in its transactional ids, overriding a
	// random one. Give a restarted replica its old id so that it fences
	// the transactions its previous life left open.
	InstanceID string
	// MaxBatch is the most records processed in one transaction,
	// overriding the default 2000.
	MaxBatch int
	// ApplyChunk is the most events applied to Redis at once, overriding
	// the default 500. A partition's events in a batch are applied chunk
	// after chunk, each chunk's status records produced while the next is
	// applied, so the transaction's end waits only for the last chunk.
	ApplyChunk int
	// ApplyConcurrency bounds the partitions of one batch whose events
	// are applied at once, overriding the default 4: Redis works on one
	// partition's chunk while the processor decodes and encodes another's.
	ApplyConcurrency int
	// RequestBatch is the most signing requests processed in one
	// transaction, overriding the default 64: each costs provider calls
	// (seconds when the provider is slow), and the whole batch must finish
	// within the transaction timeout.
	RequestBatch int
	// CreateConcurrency bounds the provider calls in flight for one batch
	// of requests, overriding the default 32.
	CreateConcurrency int
	// AdoptForeign tracks the envelopes esignflow did not create (their
	// events carry no request id: a provider account reports every
	// envelope in it, including those sent from its web app) as envelopes
	// of their own kind, with a foreign state, instead of counting and
	// ignoring their events.
	AdoptForeign bool
	// Topics says how missing topics are created at start.
	Topics topics.Config
	// AtLeastOnce drops the transactions (plain consumer, commits after
	// produce): the baseline that shows what exactly-once costs. Never use
	// it in production.
	AtLeastOnce bool
	// KafkaOpts are passed to every Kafka client after esignflow's own.
	KafkaOpts []kgo.Opt
	// Metrics registers the processor's metrics, overriding a private
	// registry.
	Metrics prometheus.Registerer
	// Logger, overriding slog.Default.
	Logger *slog.Logger
	// RetryMax caps the backoff after a failed batch, overriding 5s.
	RetryMax time.Duration
	// BatchTimeout bounds one batch's work, overriding txloop's 2m. A
	// restore is not a batch's work: it runs before the batch, unbounded.
	BatchTimeout time.Duration
	// Crash, when it returns true at a point, makes Run return ErrCrashed
	// there at once, as if the process died: for tests.
	Crash func(Point) bool
}

// Validate reports the first missing or invalid field.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("processor: Brokers is required")
	case c.Codec == nil:
		return errors.New("processor: Codec is required")
	case c.Store == nil:
		return errors.New("processor: Store is required")
	case len(c.Providers) == 0:
		return errors.New("processor: at least one Provider is required")
	case c.MaxBatch < 0:
		return errors.New("processor: MaxBatch must not be negative")
	case c.ApplyChunk < 0:
		return errors.New("processor: ApplyChunk must not be negative")
	case c.ApplyConcurrency < 0:
		return errors.New("processor: ApplyConcurrency must not be negative")
	}
	return nil
}

func (c *Config) defaults() {
	if c.Group == "" {
		c.Group = "esignflow-processor"
	}
	if c.InstanceID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		c.InstanceID = hex.EncodeToString(b[:])
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 2000
	}
	if c.ApplyChunk == 0 {
		c.ApplyChunk = 500
	}
	if c.ApplyConcurrency == 0 {
		c.ApplyConcurrency = 4
	}
	if c.RequestBatch <= 0 {
		c.RequestBatch = 64
	}
	if c.CreateConcurrency <= 0 {
		c.CreateConcurrency = 32
	}
	if len(c.KnownProviders) == 0 {
		c.KnownProviders = registry.Names()
		for name := range c.Providers {
			c.KnownProviders = append(c.KnownProviders, name)
		}
	}
	if c.DefaultProvider == "" {
		c.DefaultProvider = registry.Default()
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Second
	}
}
