package registry

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/dropboxsign"
	"github.com/esignflow/esignflow/provider/dropboxsign/dropboxsignfake"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

// dropboxsignKeyFlag enables Dropbox Sign's API.
const dropboxsignKeyFlag = "dropboxsign-api-key-file"

// dropboxsignProvider is Dropbox Sign API v3 (an API key) and its
// callbacks (event_hash keyed with the same API key). Dropbox Sign has no
// per-request polling rule (its limits are per account and minute, which
// the client paces itself), so MinPollInterval is left to the
// reconciler's default.
func dropboxsignProvider() Provider {
	return Provider{
		Name: "dropboxsign", Webhook: callbackScheme{}, Dialect: "dropboxsign",
		EnableFlags: []string{dropboxsignKeyFlag},
		flags:       dropboxsignFlags,
		simulate:    simulateDropboxSign,
	}
}

// callbackScheme is Dropbox Sign's: event_hash inside the body, no
// timestamp window (a replay is caught by the dedup id).
type callbackScheme struct{}

func (callbackScheme) Verify(keys [][]byte, h http.Header, body []byte, _ time.Time, _ time.Duration) error {
	cb, err := dropboxsign.Decode(h.Get("Content-Type"), body)
	if err != nil {
		return fmt.Errorf("%w: %w", provider.ErrWebhookMalformed, err)
	}
	if err := dropboxsign.Verify(keys, cb); err != nil {
		return &provider.VerifyError{Reason: provider.VerifyMismatch, Err: err}
	}
	return nil
}

func (callbackScheme) Parse(h http.Header, body []byte) ([]schemas.EnvelopeEvent, error) {
	cb, err := dropboxsign.Decode(h.Get("Content-Type"), body)
	if err != nil {
		return nil, err
	}
	evs, err := dropboxsign.Parse(cb)
	if errors.Is(err, dropboxsign.ErrIgnored) {
		return nil, fmt.Errorf("%w: %w", provider.ErrWebhookIgnored, err)
	}
	return evs, err
}

func (callbackScheme) Reply() string { return dropboxsign.Reply }

// dropboxsignAPI is the --dropboxsign-* flags.
type dropboxsignAPI struct {
	cfg dropboxsign.Config
}

func dropboxsignFlags(fs *flag.FlagSet) api {
	a := &dropboxsignAPI{}
	fs.StringVar(&a.cfg.APIKeyFile, dropboxsignKeyFlag, "", "`file` whose first line is the Dropbox Sign API key (HTTP Basic user of every call); enables Dropbox Sign; re-read when it changes, never logged. Callbacks are hashed with the same key: put it in the webhook secrets file dropboxsign too")
	fs.StringVar(&a.cfg.BaseURL, "dropboxsign-base-url", dropboxsign.DefaultBaseURL, "Dropbox Sign API `URL`")
	fs.BoolVar(&a.cfg.TestMode, "dropboxsign-test-mode", false, "send signature requests in Dropbox Sign's test mode (not legally binding, free; 10 sends a minute)")
	return a
}

func (a *dropboxsignAPI) enabled() bool { return strings.TrimSpace(a.cfg.APIKeyFile) != "" }

// open builds the client and asks Dropbox Sign for the key's account, so
// that a wrong key stops the service at start.
func (a *dropboxsignAPI) open(ctx context.Context, o Options) (provider.Provider, error) {
	cfg := a.cfg
	cfg.Metrics, cfg.Logger = o.Metrics, o.logger()
	c, err := dropboxsign.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: check --%s and --dropboxsign-base-url: %w", dropboxsignKeyFlag, err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.Check(cctx); err != nil {
		return nil, fmt.Errorf("dropboxsign: Dropbox Sign refuses the API key of --%s (at --dropboxsign-base-url %s): %w", dropboxsignKeyFlag, cfg.BaseURL, err)
	}
	return c, nil
}

// simulatedLookupSettle is the look-up's settle time against the
// simulator: its dialect lists a signature request as soon as it is
// created (dropboxsignfake.Config.SearchLag 0) and replays the
// Idempotency-Key, so the 10s allowed to the real index would only slow a
// chaos run's retries.
const simulatedLookupSettle = 250 * time.Millisecond

// simulateDropboxSign makes the simulator speak Dropbox Sign: an API key
// generated once into SecretsDir/dropboxsign — the webhook secrets file
// the ingress verifies event_hash with, and the key file the client
// authenticates with — and the account's limits raised out of the way
// (25 sends a minute would stop a demo or a benchmark; the client's
// handling of the limits is tested against the dialect directly), the
// client's own pacing off likewise.
func simulateDropboxSign(cfg SimulateConfig) (*Simulated, error) {
	keyFile := filepath.Join(cfg.SecretsDir, "dropboxsign")
	key, err := ensureKey(keyFile, hex.EncodeToString)
	if err != nil {
		return nil, err
	}
	d, err := dropboxsignfake.New(dropboxsignfake.Config{APIKey: key,
		StandardLimit: 1 << 30, HighTierLimit: 1 << 30, TestModeLimit: 1 << 30})
	if err != nil {
		return nil, err
	}
	return &Simulated{
		Provider:  "dropboxsign",
		Configure: func(c *sim.Config) { c.Dialect, c.WebhookSecrets = d, nil },
		Connect: func(url string, timeout time.Duration, o Options) (provider.Provider, error) {
			return dropboxsign.New(dropboxsign.Config{
				APIKeyFile: keyFile, BaseURL: strings.TrimSuffix(url, "/") + "/v3", CallTimeout: timeout,
				LookupSettle: simulatedLookupSettle, StandardPerMinute: -1, HighTierPerMinute: -1,
				Metrics: o.Metrics, Logger: o.logger(),
			})
		},
	}, nil
}
