package registry

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/provider/stdwebhook"
	"github.com/esignflow/esignflow/schemas"
)

// simProvider is the built-in simulator: its /v1 API and Standard
// Webhooks carrying its own payload.
func simProvider() Provider {
	return Provider{
		Name: "sim", Webhook: stdScheme{name: "sim"}, ParseSecret: parseStdSecret, Dialect: "standard",
		EnableFlags: []string{"sim-url"}, Local: true,
		flags: func(fs *flag.FlagSet) api {
			a := &simAPI{}
			fs.StringVar(&a.url, "sim-url", "http://127.0.0.1:8090", "`URL` of the simulator provider (esignflow sim --dialect standard); empty disables it")
			return a
		},
		simulate: simulateStandard,
	}
}

// standardProvider is any sender of Standard Webhooks with the
// simulator's payload; webhooks only.
func standardProvider() Provider {
	return Provider{Name: "standard", Webhook: stdScheme{name: "standard"}, ParseSecret: parseStdSecret}
}

func parseStdSecret(line string) ([]byte, error) { return stdwebhook.ParseSecret(line) }

// stdScheme is Standard Webhooks with the simulator's payload; the events
// are labelled with the endpoint's provider name.
type stdScheme struct{ name string }

func (s stdScheme) Verify(keys [][]byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	sk := make([]stdwebhook.Secret, len(keys))
	for i, k := range keys {
		sk[i] = k
	}
	_, err := stdwebhook.Verify(sk, h, body, now, tolerance)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, stdwebhook.ErrStale):
		return &provider.VerifyError{Reason: provider.VerifyStale, Err: err}
	case errors.Is(err, stdwebhook.ErrFuture):
		return &provider.VerifyError{Reason: provider.VerifyFuture, Err: err}
	case errors.Is(err, stdwebhook.ErrMissingHeaders):
		return &provider.VerifyError{Reason: provider.VerifyMissing, Err: err}
	case errors.Is(err, stdwebhook.ErrBadTimestamp):
		return &provider.VerifyError{Reason: provider.VerifyBadTimestamp, Err: err}
	default:
		return &provider.VerifyError{Reason: provider.VerifyMismatch, Err: err}
	}
}

func (s stdScheme) Parse(_ http.Header, body []byte) ([]schemas.EnvelopeEvent, error) {
	evs, err := sim.ParseWebhook(body)
	if err != nil {
		return nil, err
	}
	for i := range evs {
		evs[i].Provider = s.name
	}
	return evs, nil
}

func (stdScheme) Reply() string { return "" }

// simAPI is --sim-url.
type simAPI struct{ url string }

func (a *simAPI) enabled() bool { return strings.TrimSpace(a.url) != "" }

// open makes no call: the simulator may start after the service.
func (a *simAPI) open(_ context.Context, o Options) (provider.Provider, error) {
	c, err := sim.NewClient(sim.ClientConfig{BaseURL: a.url, Metrics: o.Metrics, Logger: o.logger()})
	if err != nil {
		return nil, fmt.Errorf("--sim-url: %w", err)
	}
	return c, nil
}

// simulateStandard signs the simulator's Standard Webhooks with a secret
// generated once into SecretsDir/sim.
func simulateStandard(cfg SimulateConfig) (*Simulated, error) {
	key, err := ensureKey(filepath.Join(cfg.SecretsDir, "sim"), stdwebhook.FormatSecret)
	if err != nil {
		return nil, err
	}
	secret, err := stdwebhook.ParseSecret(key)
	if err != nil {
		return nil, err
	}
	return &Simulated{
		Provider:  "sim",
		Configure: func(c *sim.Config) { c.Dialect, c.WebhookSecrets = nil, []stdwebhook.Secret{secret} },
		Connect: func(url string, timeout time.Duration, o Options) (provider.Provider, error) {
			return sim.NewClient(sim.ClientConfig{BaseURL: url, CallTimeout: timeout, Metrics: o.Metrics, Logger: o.logger()})
		},
	}, nil
}

// ensureKey returns the first line of path, writing a key there (32
// random bytes as encode writes them; mode 0600, its directory 0700) when
// the file does not exist.
func ensureKey(path string, encode func([]byte) string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return "", err
		}
		raw = []byte(encode(k) + "\n")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	return strings.TrimSpace(line), nil
}
