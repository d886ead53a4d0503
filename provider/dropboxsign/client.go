package dropboxsign

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
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

// Client is a provider.Provider for Dropbox Sign's API v3, authenticated
// with an API key (HTTP Basic, the key as the user, no password). It
// retries transient failures with backoff and jitter, makes Create
// idempotent with an Idempotency-Key and a look-up by metadata, paces its
// calls to Dropbox Sign's per-minute limits and stops a tier's calls while
// an answer says nothing remains of it. It is safe for concurrent use and
// holds no goroutine between calls.
//
// Dropbox Sign cannot answer for many signature requests in one call (its
// search has no id field), so the Client offers no GetMany: the
// reconciler polls its envelopes one by one.
type Client struct {
	cfg  Config
	base string // BaseURL without a trailing slash
	key  *provider.KeyFile[string]
	log  *slog.Logger
	api  *apicall.Caller
	docs provider.Documents // reads a request's documents
	m    *metrics           // nil without Config.Metrics
	lim  *limits
	// files keeps recent downloads: the three artefacts are one file.
	files fileCache

	// uncertain remembers, per idempotency key, when a send last failed
	// in a way that may have reached Dropbox Sign, so that a later Create
	// of the same request in this process still lets the search index
	// settle before sending again.
	uncertainMu sync.Mutex
	uncertain   map[string]time.Time
}

var _ provider.Provider = (*Client)(nil)

// New returns a Client for cfg. It reads the key file and makes no call:
// use Check to find a bad key at start-up.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	u, err := provider.ParseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("dropboxsign: config: BaseURL: %w", err)
	}
	key, err := provider.OpenKeyFile(cfg.APIKeyFile, "dropboxsign: API key file", parseAPIKey)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg: cfg, base: u.String(), key: key, log: cfg.Logger.With("component", "dropboxsign-client"),
		lim: newLimits(cfg.StandardPerMinute, cfg.HighTierPerMinute), uncertain: map[string]time.Time{},
	}
	api := apicall.Caller{Provider: "dropboxsign", HTTP: cfg.HTTP, Timeout: cfg.CallTimeout, Attempts: cfg.MaxAttempts,
		BackoffBase: cfg.BackoffBase, BackoffMax: cfg.BackoffMax, Retryable: retryable, Logger: c.log}
	if cfg.Metrics != nil {
		if c.m, err = newMetrics(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("dropboxsign: metrics: %w", err)
		}
		api.Metrics = c.m.CallMetrics
	}
	c.api = apicall.New(api)
	c.docs = provider.Documents{Provider: "dropboxsign", HTTP: c.api.HTTP, Timeout: c.api.Timeout, Limit: cfg.MaxDocumentBytes, HashRequired: false}
	return c, nil
}

// Check asks Dropbox Sign for the key's account (GET /account): a key it
// refuses fails here with the error a call would get.
func (c *Client) Check(ctx context.Context) error {
	var out struct {
		Account struct {
			AccountID string `json:"account_id"`
		} `json:"account"`
	}
	if err := c.do(ctx, request{method: http.MethodGet, path: "/account", op: "account", tier: tierStandard}, &out); err != nil {
		return fmt.Errorf("dropboxsign: check the API key: %w", err)
	}
	c.log.Info("dropbox sign API key accepted", "account_id", out.Account.AccountID, "account", c.Account(), "test_mode", c.cfg.TestMode)
	return nil
}

// Account is a stable identity of the account the key belongs to, which
// is not a secret: "dropboxsign:" and the first 12 hex digits of the
// SHA-256 of the API key in use. Every replica configured with the same
// key gives the same value, so a rate budget shared by replicas can be
// keyed on it. It follows a rotated key (two keys of one account are two
// identities: Dropbox Sign's account id would be exact, but only a call
// can learn it).
func (c *Client) Account() string {
	k, _ := c.key.Get()
	sum := sha256.Sum256([]byte(k))
	return "dropboxsign:" + hex.EncodeToString(sum[:])[:12]
}

// Changed reports whether the key file changed since it was last read.
// With Reload, it makes the Client a reload.Source; the Client also
// checks the file by itself before each call.
func (c *Client) Changed() bool { return c.key.Changed() }

// Reload re-reads the key file. On error the previous key stays in use.
func (c *Client) Reload() error { return c.key.Reload() }

// parseAPIKey reads the key file's first line.
func parseAPIKey(raw []byte) (string, error) {
	line, _, _ := strings.Cut(string(raw), "\n")
	key := strings.TrimSpace(line)
	switch {
	case key == "":
		return "", errors.New("empty")
	case strings.ContainsAny(key, ": \t"):
		return "", errors.New("the key holds a colon or a space, which no API key does")
	}
	return key, nil
}

// tier is one of Dropbox Sign's rate-limit classes.
type tier int

const (
	tierStandard tier = iota
	tierHigh          // send, files
)

func (t tier) String() string {
	if t == tierHigh {
		return "high"
	}
	return "standard"
}

// request is one API call.
type request struct {
	method      string
	path        string // after BaseURL
	query       url.Values
	body        []byte // sent as is when not nil
	contentType string
	idemKey     string // Idempotency-Key, POST only
	tier        tier
	op          string // operation label for metrics
}

// call runs r once: no retry. Every error is typed (TransientError,
// PermanentError, RateLimitedError, ErrNotFound wrapped) or is the
// caller's own cancellation. A RateLimitedError returned before the call
// means no call was made.
func (c *Client) call(ctx context.Context, r request, limit int64) (apicall.Answer, error) {
	if err := c.lim.admit(c.cfg.Now(), r.tier); err != nil {
		return apicall.Answer{}, err
	}
	if err := c.lim.pace(ctx, r.tier); err != nil {
		return apicall.Answer{}, err
	}
	key, kerr := c.key.Get()
	if kerr != nil {
		c.log.Warn("dropbox sign API key file changed but was not taken; the previous key stays in use", "err", kerr)
	}
	h := http.Header{"Authorization": {basicAuth(key)}}
	if r.idemKey != "" {
		// Spelt in lower case, on purpose: net/http's Transport takes a
		// request carrying a canonical "Idempotency-Key" header as
		// replayable and, when a reused connection breaks after the
		// request was written, sends it again by itself — unseen by
		// Create, whose look-up must come before any resend (Dropbox
		// Sign's replay of the header is not documented). Header names
		// are case-insensitive on the wire; this spelling keeps the
		// Transport from replaying (only a request nothing of which was
		// written is still retried, which is safe). apicall puts the
		// header on the request as spelt here.
		h["idempotency-key"] = []string{r.idemKey}
	}
	return c.api.Call(ctx, apicall.Request{
		Method: r.method, URL: c.base + r.path, Query: r.query, Body: r.body, ContentType: r.contentType,
		Header: h, Op: r.op, Limit: limit,
		Answered: func(resp *http.Response) { c.lim.observe(c.m, c.cfg.Now(), r.tier, resp.StatusCode, resp.Header) },
		Refused:  func(resp *http.Response, raw []byte) error { return c.classify(resp, raw, r) },
	})
}

// basicAuth is the Authorization of the API key: HTTP Basic, the key as
// the user and no password (as http.Request.SetBasicAuth writes it).
func basicAuth(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
}

// errGone marks a 410: the signature request was canceled or removed.
var errGone = errors.New("dropboxsign: signature request deleted")

// classify turns a non-2xx answer into a typed error, keyed on the HTTP
// status (error_name confirms a rate limit whatever the status).
func (c *Client) classify(resp *http.Response, raw []byte, r request) error {
	var eb struct {
		Error struct {
			Msg  string `json:"error_msg"`
			Name string `json:"error_name"`
			Path string `json:"error_path"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &eb)
	ae := &APIError{Status: resp.StatusCode, Name: eb.Error.Name, Msg: eb.Error.Msg, Path: eb.Error.Path}
	if ae.Name == "" && ae.Msg == "" {
		ae.Msg = strings.TrimSpace(string(raw[:min(len(raw), 512)]))
	}
	now := c.cfg.Now()
	switch st := resp.StatusCode; {
	case st == http.StatusTooManyRequests || ae.Name == "exceeded_rate":
		until := c.lim.stop(now, r.tier, resp.Header)
		c.api.RateLimited(r.op)
		c.log.Warn("dropbox sign rate limit exceeded; no calls of this tier until the reset", "tier", r.tier.String(), "until", until)
		return &provider.RateLimitedError{RetryAfter: until.Sub(now)}
	case st == http.StatusNotFound:
		return fmt.Errorf("%w: %w", provider.ErrNotFound, ae)
	case st == http.StatusGone:
		return fmt.Errorf("%w: %w", errGone, &provider.PermanentError{Status: st, Reason: "dropboxsign: " + ae.Error()})
	case st == http.StatusConflict && r.op == "send":
		return &provider.TransientError{Err: fmt.Errorf("%w: %w", ErrInFlight, ae)}
	case st == http.StatusConflict && strings.HasPrefix(r.op, "download"):
		return &provider.TransientError{Err: fmt.Errorf("%w: %w", ErrFilesNotReady, ae)}
	case st == http.StatusConflict || st >= 500 || st == http.StatusRequestTimeout:
		return &provider.TransientError{Err: ae}
	case st == http.StatusUnauthorized:
		return &provider.PermanentError{Status: st, Reason: "dropboxsign: the API key is refused: " + ae.Error()}
	case st == http.StatusPaymentRequired:
		return &provider.PermanentError{Status: st, Reason: "dropboxsign: the account's plan does not allow this (payment required): " + ae.Error()}
	default:
		return &provider.PermanentError{Status: st, Reason: "dropboxsign: " + ae.Error()}
	}
}

// retryable reports whether an error is worth another attempt now:
// apicall's default (a transient failure, not a rate limit, which the
// caller schedules), nor files not ready (which the sink backs off).
func retryable(err error) bool {
	return apicall.Transient(err) && !errors.Is(err, ErrFilesNotReady)
}

// do runs r with retries and decodes a JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, r request, out any) error {
	return c.api.Decode(ctx, r.op, func(ctx context.Context) (apicall.Answer, error) { return c.call(ctx, r, 32<<20) }, out)
}
