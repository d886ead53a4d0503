package dropboxsign

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/provider"
)

// DefaultBaseURL is Dropbox Sign's API v3.
const DefaultBaseURL = "https://api.hellosign.com/v3"

// Dropbox Sign's published limits, per account: "Standard API endpoints:
// 100 requests per minute; High tier API endpoints: 25 requests per
// minute; Test mode: 10 requests per minute". High tier is send and the
// files downloads among the calls the Client makes. They are the Client's
// own pacing by default (see Config.StandardPerMinute).
const (
	StandardPerMinute = 100
	HighTierPerMinute = 25
	TestModePerMinute = 10
)

// Config configures a Client. APIKeyFile is required; every other field
// has a working default.
type Config struct {
	// APIKeyFile holds the account's API key on its first line
	// (surrounding white space is trimmed). It is read when New runs and
	// re-read whenever the file changes (size or modification time),
	// checked before each call and on Reload; a file that cannot be read
	// or is empty keeps the previous key in use. The key is never logged
	// and never appears in an error.
	APIKeyFile string
	// BaseURL is the API, overriding DefaultBaseURL: calls go to
	// <BaseURL>/signature_request/…
	BaseURL string
	// TestMode sends every signature request with test_mode (not legally
	// binding, free, and limited to TestModePerMinute calls).
	TestMode bool
	// HTTP is the client used for every call, overriding a default
	// http.Client (each call is bounded by CallTimeout anyway).
	HTTP *http.Client
	// CallTimeout bounds one HTTP call, overriding the default 30s.
	CallTimeout time.Duration
	// MaxAttempts bounds the failed calls of one operation, overriding the
	// default 6.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the full-jitter exponential backoff
	// between attempts; defaults 100ms and 5s.
	BackoffBase, BackoffMax time.Duration
	// LookupSettle is how long, after a send that may have reached Dropbox
	// Sign (a timeout, a dropped connection, a 5xx, a 409 "already being
	// processed"), the look-up by metadata must keep finding nothing
	// before the request is sent again; default 10s. Dropbox Sign's search
	// index lags behind a create by a "minor delay" it does not quantify:
	// this is the delay esignflow allows it (see Create).
	LookupSettle time.Duration
	// PageSize is the page_size of list calls, overriding the default 100
	// (Dropbox Sign's maximum).
	PageSize int
	// MaxDocumentBytes bounds a document uploaded (inline, or read from a
	// file:// URI), overriding the default 40 MiB.
	MaxDocumentBytes int64
	// StandardPerMinute and HighTierPerMinute pace the Client's calls,
	// per process: at most so many standard (get, list, account) and high
	// tier (send, files) calls a minute, waiting for a slot rather than
	// calling. Defaults: Dropbox Sign's published limits,
	// StandardPerMinute and HighTierPerMinute, with TestMode
	// TestModePerMinute for the high tier (Dropbox Sign does not say
	// which calls its test-mode limit counts; sends certainly, so the
	// tier that holds them). A negative value disables the pacing of that
	// tier (the simulator's dialect, tests). Whatever the pacing, the
	// X-RateLimit-* headers of every answer are honoured: when one says
	// nothing remains, no call of its tier leaves before the reset.
	StandardPerMinute, HighTierPerMinute int
	// Metrics registers the provider call metrics
	// (esignflow_provider_calls_total, _call_seconds, _rate_limited_total,
	// shared with the other providers' clients) and the rate-limit headers
	// (esignflow_dropboxsign_ratelimit_limit, _remaining, _reset_seconds,
	// by tier); nil keeps none.
	Metrics prometheus.Registerer
	// Logger, overriding slog.Default.
	Logger *slog.Logger
	// Now is the clock, overriding time.Now: rate-limit resets, expiry
	// checks and the look-up's settle time are read on it.
	Now func() time.Time
}

// Validate reports what is missing or malformed in c, all at once. It does
// not read the key file (New does).
func (c Config) Validate() error {
	var errs []error
	if c.APIKeyFile == "" {
		errs = append(errs, errors.New("APIKeyFile is required"))
	}
	if c.BaseURL != "" {
		if _, err := provider.ParseBaseURL(c.BaseURL); err != nil {
			errs = append(errs, fmt.Errorf("BaseURL: %w", err))
		}
	}
	if c.PageSize > 100 {
		errs = append(errs, fmt.Errorf("PageSize %d: Dropbox Sign pages hold at most 100", c.PageSize))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dropboxsign: config: %w", err)
	}
	return nil
}

// defaults fills Dropbox Sign's own fields. The call settings take theirs
// (documented above) in apicall.New, which the Client's calls read.
func (c *Config) defaults() {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.LookupSettle <= 0 {
		c.LookupSettle = 10 * time.Second
	}
	if c.PageSize <= 0 {
		c.PageSize = 100
	}
	if c.MaxDocumentBytes <= 0 {
		c.MaxDocumentBytes = 40 << 20
	}
	high := HighTierPerMinute
	if c.TestMode {
		high = TestModePerMinute
	}
	if c.StandardPerMinute == 0 {
		c.StandardPerMinute = StandardPerMinute
	}
	if c.HighTierPerMinute == 0 {
		c.HighTierPerMinute = high
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}
