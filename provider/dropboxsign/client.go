package dropboxsign

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/esignflow/esignflow/provider"
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
	m    *metrics // nil without Config.Metrics
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
	if cfg.Metrics != nil {
		if c.m, err = newMetrics(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("dropboxsign: metrics: %w", err)
		}
	}
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

// answer is a 2xx answer, read whole.
type answer struct {
	body        []byte
	contentType string
}

// call runs r once: no retry. Every error is typed (TransientError,
// PermanentError, RateLimitedError, ErrNotFound wrapped) or is the
// caller's own cancellation. A RateLimitedError returned before the call
// means no call was made.
func (c *Client) call(ctx context.Context, r request, limit int64) (answer, error) {
	if err := c.lim.admit(c.cfg.Now(), r.tier); err != nil {
		return answer{}, err
	}
	if err := c.lim.pace(ctx, r.tier); err != nil {
		return answer{}, err
	}
	key, kerr := c.key.Get()
	if kerr != nil {
		c.log.Warn("dropbox sign API key file changed but was not taken; the previous key stays in use", "err", kerr)
	}
	u := c.base + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	var rd io.Reader
	if r.body != nil {
		rd = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, rd)
	if err != nil {
		return answer{}, &provider.PermanentError{Reason: "dropboxsign: " + err.Error()}
	}
	req.SetBasicAuth(key, "")
	req.Header.Set("Accept", "application/json")
	if r.body != nil {
		req.Header.Set("Content-Type", r.contentType)
	}
	if r.idemKey != "" {
		// Spelt in lower case, on purpose: net/http's Transport takes a
		// request carrying a canonical "Idempotency-Key" header as
		// replayable and, when a reused connection breaks after the
		// request was written, sends it again by itself — unseen by
		// Create, whose look-up must come before any resend (Dropbox
		// Sign's replay of the header is not documented). Header names
		// are case-insensitive on the wire; this spelling keeps the
		// Transport from replaying (only a request nothing of which was
		// written is still retried, which is safe).
		req.Header["idempotency-key"] = []string{r.idemKey}
	}
	start := time.Now()
	resp, err := c.cfg.HTTP.Do(req)
	c.m.observe(r.op, start, resp, err)
	if err != nil {
		return answer{}, provider.TransportError(ctx, err)
	}
	defer resp.Body.Close()
	c.lim.observe(c.m, c.cfg.Now(), r.tier, resp.StatusCode, resp.Header)
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return answer{}, provider.TransportError(ctx, fmt.Errorf("read answer: %w", err))
	}
	if resp.StatusCode/100 == 2 {
		if int64(len(raw)) > limit {
			return answer{}, &provider.PermanentError{Status: resp.StatusCode, Reason: fmt.Sprintf("dropboxsign: answer larger than %d bytes", limit)}
		}
		return answer{body: raw, contentType: resp.Header.Get("Content-Type")}, nil
	}
	return answer{}, c.classify(resp, raw, r)
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
		c.m.rateLimitedOp(r.op)
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

// retryable reports whether an error is worth another attempt now: a
// transient failure, but not a rate limit (which the caller schedules) nor
// files not ready (which the sink backs off).
func retryable(err error) bool {
	var rl *provider.RateLimitedError
	var te *provider.TransientError
	return errors.As(err, &te) && !errors.As(err, &rl) && !errors.Is(err, ErrFilesNotReady)
}

// retry runs fn until it succeeds, fails with an error retrying now
// cannot fix, runs out of attempts or ctx ends.
func (c *Client) retry(ctx context.Context, fn func(context.Context) error) error {
	var err error
	for attempt := 0; attempt < c.cfg.MaxAttempts; attempt++ {
		if err = fn(ctx); err == nil || !retryable(err) || attempt == c.cfg.MaxAttempts-1 {
			return err
		}
		if werr := c.backoff(ctx, attempt, err); werr != nil {
			return werr
		}
	}
	return err
}

// backoffFor is the full-jitter backoff after attempt (0-based).
func (c *Client) backoffFor(attempt int) time.Duration {
	wait := c.cfg.BackoffBase << min(attempt, 30)
	if wait > c.cfg.BackoffMax || wait <= 0 {
		wait = c.cfg.BackoffMax
	}
	return time.Duration(rand.Int64N(int64(wait)) + 1)
}

// backoff waits the full-jitter backoff after attempt failed with err, or
// returns when ctx ends.
func (c *Client) backoff(ctx context.Context, attempt int, err error) error {
	return c.sleep(ctx, c.backoffFor(attempt), err)
}

func (c *Client) sleep(ctx context.Context, d time.Duration, err error) error {
	c.log.Debug("retrying dropbox sign call", "wait", d, "err", err)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		if err == nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
	case <-t.C:
		return nil
	}
}

// do runs r with retries and decodes a JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, r request, out any) error {
	return c.retry(ctx, func(ctx context.Context) error {
		a, err := c.call(ctx, r, 32<<20)
		if err != nil {
			return err
		}
		if out == nil || len(a.body) == 0 {
			return nil
		}
		if err := json.Unmarshal(a.body, out); err != nil {
			return &provider.TransientError{Err: fmt.Errorf("dropboxsign: decode %s answer: %w", r.op, err)}
		}
		return nil
	})
}
