package docusign

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/apicall"
)

// Client is a provider.Provider for DocuSign's eSignature REST API v2.1,
// authenticated with the JWT grant. It retries transient failures with
// backoff and jitter, makes Create idempotent with a transactionId, stops
// every call while the account's hourly or burst limit is exceeded, and
// backs an envelope off after a per-envelope limit error. It is safe for
// concurrent use and holds no goroutine between calls.
type Client struct {
	cfg    Config
	auth   *url.URL
	key    *provider.KeyFile[*rsa.PrivateKey]
	tokens *tokens
	log    *slog.Logger
	api    *apicall.Caller
	docs   provider.Documents // reads a request's documents
	m      *metrics           // nil without Config.Metrics
	lim    limits

	baseMu sync.Mutex
	base   string // <base>/restapi/v2.1/accounts/<id>, once known
}

var _ provider.Provider = (*Client)(nil)

// New returns a Client for cfg. It reads and parses the private key, and
// makes no call: the first call obtains the token (and asks userinfo for
// the base URI). Use Check to find a bad configuration at start-up.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	auth, err := provider.ParseBaseURL(cfg.AuthURL)
	if err != nil {
		return nil, fmt.Errorf("docusign: config: AuthURL: %w", err)
	}
	key, err := provider.OpenKeyFile(cfg.PrivateKeyFile, "docusign: private key", parseRSAKey)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, auth: auth, key: key, log: cfg.Logger.With("component", "docusign-client")}
	c.tokens = &tokens{c: c}
	c.lim.envelopes = map[string]envelopeBackoff{}
	if cfg.BaseURL != "" {
		u, err := provider.ParseBaseURL(cfg.BaseURL)
		if err != nil {
			return nil, fmt.Errorf("docusign: config: BaseURL: %w", err)
		}
		c.base = u.String() + "/restapi/v2.1/accounts/" + url.PathEscape(cfg.AccountID)
	}
	api := apicall.Caller{Provider: "docusign", HTTP: cfg.HTTP, Timeout: cfg.CallTimeout, Attempts: cfg.MaxAttempts,
		BackoffBase: cfg.BackoffBase, BackoffMax: cfg.BackoffMax, Retryable: retryable, Logger: c.log}
	if cfg.Metrics != nil {
		if c.m, err = newMetrics(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("docusign: metrics: %w", err)
		}
		api.Metrics = c.m.CallMetrics
	}
	c.api = apicall.New(api)
	c.docs = provider.Documents{Provider: "docusign", HTTP: c.api.HTTP, Timeout: c.api.Timeout, Limit: cfg.MaxDocumentBytes, HashRequired: true}
	return c, nil
}

// Check obtains a token and the account's REST base: a configuration that
// DocuSign refuses (no consent, wrong key, unknown account) fails here with
// the error a call would get.
func (c *Client) Check(ctx context.Context) error {
	if _, err := c.tokens.get(ctx); err != nil {
		return err
	}
	_, err := c.restBase(ctx)
	return err
}

// Changed reports whether the private key file changed since it was last
// read. With Reload, it makes the Client a reload.Source (SIGHUP and
// periodic checks, as the secrets directory has); the Client also checks
// the file by itself before each token it mints.
func (c *Client) Changed() bool { return c.key.Changed() }

// Reload re-reads the private key file and forgets the cached token, so
// the next call authenticates with the new key. On error the previous key
// stays in use.
func (c *Client) Reload() error {
	if err := c.key.Reload(); err != nil {
		return err
	}
	c.tokens.mu.Lock()
	c.tokens.cur = token{}
	c.tokens.mu.Unlock()
	return nil
}

// request is one REST call.
type request struct {
	method string
	path   string // after <base>/restapi/v2.1/accounts/<id>
	query  url.Values
	body   any      // JSON-encoded when not nil
	envs   []string // envelopes the call is about, for per-envelope limits
	op     string   // operation label for metrics
}

// call runs r once: no retry. Every error is typed (TransientError,
// PermanentError, RateLimitedError, EnvelopeLimitError, ErrNotFound) or is
// the caller's own cancellation.
func (c *Client) call(ctx context.Context, r request, limit int64) (apicall.Answer, error) {
	if err := c.lim.admit(c.cfg.Now(), r.envs); err != nil {
		return apicall.Answer{}, err
	}
	base, err := c.restBase(ctx)
	if err != nil {
		return apicall.Answer{}, err
	}
	tok, err := c.tokens.get(ctx)
	if err != nil {
		return apicall.Answer{}, err
	}
	var body []byte
	if r.body != nil {
		if body, err = json.Marshal(r.body); err != nil {
			return apicall.Answer{}, &provider.PermanentError{Reason: "docusign: encode request: " + err.Error()}
		}
	}
	return c.api.Call(ctx, apicall.Request{
		Method: r.method, URL: base + r.path, Query: r.query, Body: body, ContentType: "application/json",
		Header: http.Header{"Authorization": {"Bearer " + tok}}, Op: r.op, Limit: limit,
		Answered: func(resp *http.Response) { c.lim.observe(c.m, resp.Header) },
		Refused:  func(resp *http.Response, raw []byte) error { return c.classify(resp, raw, r, tok) },
	})
}

// Rate-limit and per-envelope error codes (compared case-insensitively).
const (
	codeHourly = "HOURLY_APIINVOCATION_LIMIT_EXCEEDED"
	codeBurst  = "BURST_APIINVOCATION_LIMIT_EXCEEDED"
)

// envelopeLimitBackoff is how long an envelope is left alone after a
// per-envelope limit error: DocuSign does not publish the limits, so a
// burst (30-second window) error waits the window out and an hourly one
// an hour.
func envelopeLimitBackoff(code string) time.Duration {
	if strings.HasPrefix(strings.ToLower(code), "burst_") {
		return 30 * time.Second
	}
	return time.Hour
}

// classify turns a non-2xx answer into a typed error, keyed on errorCode
// first and on the HTTP status after.
func (c *Client) classify(resp *http.Response, raw []byte, r request, tok string) error {
	var eb struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}
	_ = json.Unmarshal(raw, &eb)
	ae := &APIError{Status: resp.StatusCode, Code: eb.ErrorCode, Message: eb.Message}
	if ae.Message == "" && ae.Code == "" {
		ae.Message = strings.TrimSpace(string(raw[:min(len(raw), 512)]))
	}
	code := strings.ToUpper(eb.ErrorCode)
	now := c.cfg.Now()
	switch {
	case code == codeHourly || code == codeBurst:
		until := c.lim.stop(now, code, resp.Header)
		c.api.RateLimited(r.op)
		c.log.Warn("docusign account rate limit exceeded; no calls until the reset", "code", eb.ErrorCode, "until", until)
		return &provider.RateLimitedError{RetryAfter: until.Sub(now)}
	case strings.Contains(code, "_ENVELOPE_POLLING_LIMIT_EXCEEDED") || strings.Contains(code, "_APIINVOCATION_ENVELOPE_LIMIT_EXCEEDED"):
		until := now.Add(envelopeLimitBackoff(code))
		c.lim.backOff(now, r.envs, eb.ErrorCode, until)
		c.m.envelopeLimited(eb.ErrorCode)
		return &EnvelopeLimitError{EnvelopeIDs: r.envs, Code: eb.ErrorCode, Until: until}
	case code == "ENVELOPE_DOES_NOT_EXIST" || resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s", provider.ErrNotFound, ae)
	case resp.StatusCode == http.StatusUnauthorized:
		// An expired or revoked token: forget it, so the next attempt
		// mints another.
		c.tokens.drop(tok)
		return &provider.TransientError{Err: ae}
	case resp.StatusCode == http.StatusTooManyRequests:
		until := c.lim.stop(now, "", resp.Header)
		c.api.RateLimited(r.op)
		return &provider.RateLimitedError{RetryAfter: until.Sub(now)}
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout:
		return &provider.TransientError{Err: ae}
	default:
		return &provider.PermanentError{Status: resp.StatusCode, Reason: "docusign: " + ae.Error()}
	}
}

// do runs r with retries and decodes a JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, r request, out any) error {
	return c.api.Decode(ctx, r.op, func(ctx context.Context) (apicall.Answer, error) { return c.call(ctx, r, 32<<20) }, out)
}
