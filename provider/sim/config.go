package sim

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/esignflow/esignflow/provider/stdwebhook"
)

// Config configures a Simulator. The zero value runs a fault-free provider
// on 127.0.0.1:8090 that sends no webhooks.
type Config struct {
	// Addr is the listen address, overriding the default 127.0.0.1:8090.
	// Use 127.0.0.1:0 in tests and read URL after Ready.
	Addr string
	// Listener, when set, is used instead of listening on Addr.
	Listener net.Listener
	// Dialect is the protocol spoken: the HTTP API served and the
	// webhooks sent, overriding the default standard dialect (the /v1 API
	// and Standard Webhooks signed with WebhookSecrets). See Dialect.
	Dialect Dialect
	// WebhookURL receives every transition as a signed webhook; empty
	// sends none.
	WebhookURL string
	// WebhookSecrets sign every webhook of the standard dialect (one
	// signature entry each); another dialect signs with its own keys.
	WebhookSecrets []stdwebhook.Secret
	// Step is the mean time a recipient takes for each step (sent →
	// delivered → viewed → signed), overriding the default 2s; each step
	// varies between half and one and a half times it.
	Step time.Duration
	// DeclineRate, VoidRate and ExpireRate are the probabilities that an
	// envelope ends declined (by its last recipient), voided by the sender
	// or expired instead of completed. Default 0.
	DeclineRate, VoidRate, ExpireRate float64
	// Faults are the failures injected; change them later with SetFaults.
	Faults Faults
	// Seed makes every random choice (lifecycle and faults) repeatable.
	Seed uint64
	// DeliveryWorkers is how many webhooks are in flight at once,
	// overriding the default 16.
	DeliveryWorkers int
	// DeliveryAttempts bounds the attempts per webhook (the first
	// included), overriding the default 10. A webhook that exhausts them is
	// lost, as with a real provider.
	DeliveryAttempts int
	// RetryBase is the first retry's delay, doubling each attempt up to
	// RetryMax; defaults 200ms and 10s.
	RetryBase, RetryMax time.Duration
	// DeliveryTimeout bounds one webhook POST, overriding the default 5s.
	DeliveryTimeout time.Duration
	// RateLimit, when > 0, is the API calls per second the standard
	// dialect allows (with a burst of the same size) before 429 with
	// Retry-After; another dialect limits calls its own way.
	RateLimit float64
	// StateFile, when set, keeps the simulator's envelopes and idempotency
	// keys across restarts, even abrupt ones: read when Run starts, then
	// rewritten atomically (temporary file, fsync, rename) after changes,
	// at most every SaveEvery, and once more when Run stops. Deliveries
	// waiting in the queue are not kept (see snapshot).
	StateFile string
	// SaveEvery is the shortest time between two saves of StateFile,
	// overriding the default 200ms: changes in between are saved together.
	SaveEvery time.Duration
	// CreateDelay is how long creating an envelope takes, overriding the
	// default 0; a second request with the same key meanwhile gets 409.
	CreateDelay time.Duration
	// PageSize is the largest page of the changed_since listing,
	// overriding the default 100.
	PageSize int
	// Logger receives the simulator's logs, overriding slog.Default.
	Logger *slog.Logger
}

// Faults are the failures the simulator injects. Rates are probabilities in
// [0, 1]; webhook decisions are drawn per webhook id from the seed, so the
// same seed gives the same faults whatever the timing.
type Faults struct {
	// Drop loses a webhook for good: never delivered.
	Drop float64
	// Duplicate delivers a webhook twice.
	Duplicate float64
	// Delay holds a webhook back for a random time up to MaxDelay, which
	// reorders it with later ones.
	Delay    float64
	MaxDelay time.Duration
	// APIError answers an API call with 503 before acting.
	APIError float64
	// APITimeout performs an API call and then never answers: the client
	// times out not knowing whether it happened.
	APITimeout float64
	// CorruptDownload flips a byte of a downloaded artefact while keeping
	// the declared digest of the true bytes.
	CorruptDownload float64
	// PartitionFrom and PartitionFor make a window, measured from when the
	// simulator starts, in which no webhook gets through; deliveries fail
	// and are retried after it.
	PartitionFrom, PartitionFor time.Duration
	// AuthFailOnce is the probability that a recipient fails their
	// authentication (an SMS code, an ID check) once before signing: a
	// recipient.auth_failed transition, the status still viewed, then the
	// signature a step later.
	AuthFailOnce float64
	// BounceOnce is the probability that a recipient's invitation bounces
	// once: a recipient.bounced transition just after recipient.sent, the
	// status still sent; the sender corrects it and the recipient goes on.
	BounceOnce float64
}

func (f Faults) validate() error {
	for name, v := range map[string]float64{"drop": f.Drop, "duplicate": f.Duplicate, "delay": f.Delay,
		"api-error": f.APIError, "api-timeout": f.APITimeout, "corrupt-download": f.CorruptDownload,
		"auth-fail-once": f.AuthFailOnce, "bounce-once": f.BounceOnce} {
		if v < 0 || v > 1 {
			return fmt.Errorf("sim: fault %s = %v: %w", name, v, errRate)
		}
	}
	if f.Delay > 0 && f.MaxDelay <= 0 {
		return errors.New("sim: fault delay needs a max delay > 0")
	}
	return nil
}

var errRate = errors.New("a rate must be between 0 and 1")

// Validate reports the first invalid field.
func (c Config) Validate() error {
	for name, v := range map[string]float64{"decline-rate": c.DeclineRate, "void-rate": c.VoidRate, "expire-rate": c.ExpireRate} {
		if v < 0 || v > 1 {
			return fmt.Errorf("sim: %s = %v: %w", name, v, errRate)
		}
	}
	if c.DeclineRate+c.VoidRate+c.ExpireRate > 1 {
		return errors.New("sim: decline, void and expire rates add up to more than 1")
	}
	return c.Faults.validate()
}

func (c *Config) defaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8090"
	}
	if c.Step <= 0 {
		c.Step = 2 * time.Second
	}
	if c.DeliveryWorkers <= 0 {
		c.DeliveryWorkers = 16
	}
	if c.DeliveryAttempts <= 0 {
		c.DeliveryAttempts = 10
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 200 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.DeliveryTimeout <= 0 {
		c.DeliveryTimeout = 5 * time.Second
	}
	if c.SaveEvery <= 0 {
		c.SaveEvery = 200 * time.Millisecond
	}
	if c.PageSize <= 0 {
		c.PageSize = 100
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}
