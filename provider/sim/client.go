package sim

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/apicall"
	"github.com/esignflow/esignflow/schemas"
)

// ClientConfig configures a Client. BaseURL is required.
type ClientConfig struct {
	// BaseURL is the simulator's URL, e.g. http://127.0.0.1:8090.
	BaseURL string
	// HTTP is the client used, overriding a default http.Client.
	HTTP *http.Client
	// CallTimeout bounds one HTTP call, its answer read included, whatever
	// HTTP's own timeout, overriding the default 5s.
	CallTimeout time.Duration
	// MaxAttempts bounds the attempts of one call on transient errors,
	// overriding the default 8.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the full-jitter exponential backoff
	// between attempts; defaults 50ms and 3s.
	BackoffBase, BackoffMax time.Duration
	// Metrics registers the provider call metrics
	// (esignflow_provider_calls_total, _call_seconds, _rate_limited_total);
	// nil keeps none. Clients sharing a registry share the metrics.
	Metrics prometheus.Registerer
	// Logger, overriding slog.Default.
	Logger *slog.Logger
}

// Client is the simulator's API client: a provider.Provider. It retries
// transient failures (5xx, timeouts, resets) with backoff and jitter, always
// with the same idempotency key, and configures envelopes in serial steps.
// It is safe for concurrent use.
type Client struct {
	base *url.URL
	log  *slog.Logger
	api  *apicall.Caller
}

var _ provider.Provider = (*Client)(nil)

// NewClient returns a Client for cfg.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("sim client: base URL %q is not an absolute URL", cfg.BaseURL)
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = 50 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Client{base: u, log: cfg.Logger.With("component", "sim-client")}
	api := apicall.Caller{Provider: "sim", HTTP: cfg.HTTP, Timeout: cfg.CallTimeout, Attempts: cfg.MaxAttempts,
		BackoffBase: cfg.BackoffBase, BackoffMax: cfg.BackoffMax, Logger: c.log}
	if cfg.Metrics != nil {
		if api.Metrics, err = provider.NewCallMetrics(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("sim client: metrics: %w", err)
		}
	}
	c.api = apicall.New(api)
	return c, nil
}

// Create creates the envelope (POST with the idempotency key), then puts
// its documents, then its recipients, then sends it — each step retried on
// its own. An envelope found already sent skips the remaining steps, so a
// retried Create finishes what an interrupted one started.
func (c *Client) Create(ctx context.Context, key string, req schemas.SigningRequest) (provider.Envelope, error) {
	meta := map[string]string{provider.RequestIDKey: req.RequestID, provider.TenantKey: req.Tenant}
	for k, v := range req.Metadata {
		meta[k] = v
	}
	body, err := json.Marshal(CreateBody{Subject: req.Subject, Message: req.Message, ExpiresAt: req.ExpiresAt, Metadata: meta})
	if err != nil {
		return provider.Envelope{}, err
	}
	var env envelopeJSON
	if err := c.call(ctx, http.MethodPost, "/v1/envelopes", key, body, &env); err != nil {
		return provider.Envelope{}, fmt.Errorf("create envelope for %s: %w", req.RequestID, err)
	}
	if env.Status != schemas.StatusCreated {
		return env.Envelope, nil
	}
	docs := make([]Document, len(req.Documents))
	for i, d := range req.Documents {
		docs[i] = Document{Name: d.Name, ContentType: d.ContentType, Content: d.Content}
		if d.URI != nil {
			docs[i].URI = *d.URI
		}
		if d.SHA256 != nil {
			docs[i].SHA256 = *d.SHA256
		}
	}
	rcps := make([]*recipient, len(req.Recipients))
	for i, r := range req.Recipients {
		rcps[i] = &recipient{ID: r.ID, Name: r.Name, Email: r.Email, Role: r.Role, RoutingOrder: int(r.RoutingOrder), Auth: string(r.Auth)}
	}
	steps := []struct {
		method, path string
		body         any
	}{
		{http.MethodPut, "/v1/envelopes/" + env.ID + "/documents", docs},
		{http.MethodPut, "/v1/envelopes/" + env.ID + "/recipients", rcps},
		{http.MethodPost, "/v1/envelopes/" + env.ID + "/send", nil},
	}
	for _, st := range steps {
		b, err := json.Marshal(st.body)
		if err != nil {
			return provider.Envelope{}, err
		}
		err = c.call(ctx, st.method, st.path, key, b, &env)
		if errors.Is(err, errAlreadySent) {
			// Already sent by an earlier attempt: configuration is done.
			return c.Get(ctx, env.ID)
		}
		if err != nil {
			return provider.Envelope{}, fmt.Errorf("%s %s: %w", st.method, st.path, err)
		}
	}
	return env.Envelope, nil
}

// Get returns an envelope's status.
func (c *Client) Get(ctx context.Context, id string) (provider.Envelope, error) {
	var env envelopeJSON
	if err := c.call(ctx, http.MethodGet, "/v1/envelopes/"+url.PathEscape(id), "", nil, &env); err != nil {
		return provider.Envelope{}, err
	}
	return env.Envelope, nil
}

// ChangedSince lists envelopes changed at or after since.
func (c *Client) ChangedSince(ctx context.Context, since time.Time, cursor string) ([]provider.Envelope, string, error) {
	q := url.Values{"changed_since": {since.UTC().Format(time.RFC3339Nano)}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var page listPage
	if err := c.call(ctx, http.MethodGet, "/v1/envelopes?"+q.Encode(), "", nil, &page); err != nil {
		return nil, "", err
	}
	out := make([]provider.Envelope, len(page.Envelopes))
	for i, e := range page.Envelopes {
		out[i] = e.Envelope
	}
	return out, page.NextCursor, nil
}

// Download fetches an artefact and the hash the simulator declares for it.
func (c *Client) Download(ctx context.Context, id string, kind provider.Artifact) (provider.Download, error) {
	var d provider.Download
	err := c.retry(ctx, func(ctx context.Context) error {
		a, err := c.once(ctx, http.MethodGet, "/v1/envelopes/"+url.PathEscape(id)+"/documents/"+string(kind), "", nil, 256<<20)
		if err != nil {
			return err
		}
		d = a.Download("")
		d.DeclaredHash = strings.ToLower(a.Header.Get("X-Content-SHA256"))
		if _, err := hex.DecodeString(d.DeclaredHash); err != nil {
			d.DeclaredHash = ""
		}
		return nil
	})
	return d, err
}

// call makes one API call with retries and decodes a 2xx JSON answer.
func (c *Client) call(ctx context.Context, method, path, key string, body []byte, out any) error {
	return c.retry(ctx, func(ctx context.Context) error {
		a, err := c.once(ctx, method, path, key, body, 32<<20)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(a.Body, out); err != nil {
			return &provider.TransientError{Err: fmt.Errorf("decode answer: %w", err)}
		}
		return nil
	})
}

// once makes one attempt of an API call (apicall), reading at most limit
// bytes of the answer.
func (c *Client) once(ctx context.Context, method, path, key string, body []byte, limit int64) (apicall.Answer, error) {
	h := http.Header{}
	if key != "" {
		h.Set("Idempotency-Key", key)
	}
	op := operation(method, path)
	return c.api.Call(ctx, apicall.Request{
		Method: method, URL: c.base.String() + path, Body: body, ContentType: "application/json", Header: h, Op: op, Limit: limit,
		Answered: func(resp *http.Response) {
			if resp.StatusCode == http.StatusTooManyRequests {
				c.api.RateLimited(op)
			}
		},
		Refused: classify,
	})
}

// errAlreadySent means a configuration step found the envelope sent.
var errAlreadySent = &provider.PermanentError{Status: http.StatusConflict, Reason: "envelope already sent"}

// classify turns a non-2xx answer into a typed error.
func classify(resp *http.Response, raw []byte) error {
	raw = raw[:min(len(raw), 64<<10)]
	var p problemBody
	_ = json.Unmarshal(raw, &p)
	reason := p.Detail
	if reason == "" {
		reason = strings.TrimSpace(string(raw))
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		wait := time.Second
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			wait = time.Duration(s) * time.Second
		}
		return &provider.RateLimitedError{RetryAfter: wait}
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s", provider.ErrNotFound, reason)
	case resp.StatusCode == http.StatusConflict && p.Type == problemInFlight:
		return &provider.TransientError{Err: errors.New(reason)}
	case resp.StatusCode == http.StatusConflict && p.Type == problemSent:
		return errAlreadySent
	case resp.StatusCode >= 500:
		return &provider.TransientError{Err: fmt.Errorf("HTTP %d: %s", resp.StatusCode, reason)}
	default:
		return &provider.PermanentError{Status: resp.StatusCode, Reason: reason}
	}
}

// retry runs fn until it succeeds, fails permanently, runs out of attempts
// or ctx ends; waits use full jitter (apicall's Delay), or the provider's
// Retry-After. Unlike apicall's Retry it waits out a rate limit too: the
// simulator's last a second, not an hour.
func (c *Client) retry(ctx context.Context, fn func(context.Context) error) error {
	var err error
	for attempt := 0; attempt < c.api.Attempts; attempt++ {
		if err = fn(ctx); err == nil || !provider.IsTransient(err) {
			return err
		}
		wait := c.api.Delay(attempt)
		var rl *provider.RateLimitedError
		if errors.As(err, &rl) {
			wait = rl.RetryAfter
		}
		c.log.Debug("retrying provider call", "attempt", attempt+1, "wait", wait, "err", err)
		if werr := apicall.Sleep(ctx, wait, err); werr != nil {
			return werr
		}
	}
	return err
}
