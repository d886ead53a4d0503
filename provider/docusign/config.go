package docusign

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/provider"
)

// DefaultAuthURL is DocuSign's developer (demo) OAuth host. Production
// accounts use https://account.docusign.com.
const DefaultAuthURL = "https://account-d.docusign.com"

// MinPollInterval is DocuSign's polling rule — at most one status request
// per envelope per 15 minutes — and the reconciler's default minimum
// interval between two polls of one DocuSign envelope.
const MinPollInterval = 15 * time.Minute

// Config configures a Client. AccountID, IntegrationKey, UserID and
// PrivateKeyFile are required; every other field has a working default.
type Config struct {
	// AccountID is the DocuSign account (its GUID or external number):
	// REST calls go to <base>/restapi/v2.1/accounts/<AccountID>/…
	AccountID string
	// IntegrationKey is the app's client id: the JWT's iss.
	IntegrationKey string
	// UserID is the GUID of the user the app impersonates: the JWT's sub.
	UserID string
	// PrivateKeyFile is the integration key's RSA private key, PEM
	// (PKCS#1 "RSA PRIVATE KEY" or PKCS#8 "PRIVATE KEY"). It is read when
	// New runs and re-read whenever the file changes (size or modification
	// time), checked each time a token is minted and on Reload; a file that
	// does not parse keeps the previous key in use. The key is never
	// logged.
	PrivateKeyFile string
	// AuthURL is the OAuth server, overriding DefaultAuthURL. The JWT's
	// aud is its host (and port, if any).
	AuthURL string
	// BaseURL, when set, is the REST host (e.g. https://demo.docusign.net):
	// calls go to <BaseURL>/restapi/v2.1/accounts/<AccountID>/… and
	// /oauth/userinfo is never asked. Default: the base_uri userinfo gives
	// for AccountID, asked once.
	BaseURL string
	// IDVerificationWorkflow is the identity-verification workflow id used
	// for recipients whose auth is ID_VERIFICATION; without it such
	// requests are refused (permanently).
	IDVerificationWorkflow string
	// ConsentRedirectURI is a redirect URI registered for the integration
	// key, put in the consent URL that a consent_required error names.
	// Default: none (the URL then says where to put one).
	ConsentRedirectURI string
	// HTTP is the client used for every call, overriding a default
	// http.Client (each call is bounded by CallTimeout anyway).
	HTTP *http.Client
	// CallTimeout bounds one HTTP call, overriding the default 30s.
	CallTimeout time.Duration
	// MaxAttempts bounds the attempts of one operation on transient
	// errors, overriding the default 6.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the full-jitter exponential backoff
	// between attempts; defaults 100ms and 5s.
	BackoffBase, BackoffMax time.Duration
	// PageSize is the count asked per listStatusChanges page, overriding
	// the default 100.
	PageSize int
	// MaxDocumentBytes bounds a document fetched from its URI, overriding
	// the default 25 MiB (DocuSign's recommended maximum per file).
	MaxDocumentBytes int64
	// Metrics registers the provider call metrics
	// (esignflow_provider_calls_total, _call_seconds, _rate_limited_total,
	// shared with the other providers' clients) and DocuSign's rate-limit
	// headers (esignflow_provider_ratelimit_limit, _remaining, _reset_seconds,
	// esignflow_provider_envelope_limited_total); nil keeps none.
	Metrics prometheus.Registerer
	// Logger, overriding slog.Default.
	Logger *slog.Logger
	// Now is the clock, overriding time.Now: JWT iat/exp, token expiry,
	// rate-limit resets and envelope back-offs are read on it.
	Now func() time.Time
}

// Validate reports what is missing or malformed in c, all at once. It does
// not read the key file (New does).
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{
		{"AccountID", c.AccountID}, {"IntegrationKey", c.IntegrationKey},
		{"UserID", c.UserID}, {"PrivateKeyFile", c.PrivateKeyFile},
	} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.name))
		}
	}
	if c.AuthURL != "" {
		if _, err := provider.ParseBaseURL(c.AuthURL); err != nil {
			errs = append(errs, fmt.Errorf("AuthURL: %w", err))
		}
	}
	if c.BaseURL != "" {
		if _, err := provider.ParseBaseURL(c.BaseURL); err != nil {
			errs = append(errs, fmt.Errorf("BaseURL: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("docusign: config: %w", err)
	}
	return nil
}

// defaults fills the fields that are DocuSign's own; the call settings
// (HTTP, CallTimeout, MaxAttempts, BackoffBase, BackoffMax) take their
// defaults in apicall.New.
func (c *Config) defaults() {
	if c.AuthURL == "" {
		c.AuthURL = DefaultAuthURL
	}
	if c.PageSize <= 0 {
		c.PageSize = 100
	}
	if c.MaxDocumentBytes <= 0 {
		c.MaxDocumentBytes = 25 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}
