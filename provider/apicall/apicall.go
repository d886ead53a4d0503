// Package apicall is the HTTP core the provider API clients (DocuSign,
// Dropbox Sign, the simulator's) share: one attempt bounded in time and in
// the bytes it reads, measured, its transport failures typed; the
// full-jitter retry loop around attempts; and the JSON decoding of an
// answer. It exists so that a fix to any of these reaches every client.
//
// What differs between providers stays with each client and is passed in:
// authentication (Request.Header), the classification of refusals
// (Request.Refused), the rate-limit headers (Request.Answered) and what is
// worth another attempt (Caller.Retryable).
package apicall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/esignflow/esignflow/provider"
)

// Defaults of the Caller's fields, which the DocuSign and Dropbox Sign
// clients document as theirs.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultAttempts    = 6
	DefaultBackoffBase = 100 * time.Millisecond
	DefaultBackoffMax  = 5 * time.Second
)

// Caller makes the HTTP calls of one provider's API client. Build it with
// New, which fills its zero fields; it is not changed after, and is safe
// for concurrent use.
type Caller struct {
	// Provider names the provider: the provider label of the call
	// metrics, and the prefix of the reasons of the errors made here
	// ("docusign: …").
	Provider string
	// HTTP sends every call, overriding a default http.Client.
	HTTP *http.Client
	// Timeout bounds one attempt, its answer read included, overriding
	// DefaultTimeout.
	Timeout time.Duration
	// Attempts bounds the attempts of one Retry, the first included,
	// overriding DefaultAttempts.
	Attempts int
	// BackoffBase and BackoffMax shape the full-jitter exponential
	// backoff between attempts (see Delay), overriding DefaultBackoffBase
	// and DefaultBackoffMax.
	BackoffBase, BackoffMax time.Duration
	// Retryable reports whether an attempt's error is worth another
	// attempt now. Default: a *provider.TransientError that is no
	// *provider.RateLimitedError (a rate limit may last an hour: the
	// caller schedules it rather than wait here).
	Retryable func(error) bool
	// Metrics, when not nil, records every attempt
	// (provider.CallMetrics.Observe) under Provider.
	Metrics *provider.CallMetrics
	// Logger receives a debug line for every wait between attempts,
	// overriding slog.Default.
	Logger *slog.Logger
}

// New returns c with its zero fields set to their defaults.
func New(c Caller) *Caller {
	if c.HTTP == nil {
		c.HTTP = &http.Client{}
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Attempts <= 0 {
		c.Attempts = DefaultAttempts
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = DefaultBackoffBase
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.Retryable == nil {
		c.Retryable = Transient
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return &c
}

// Transient is the default Caller.Retryable: a *provider.TransientError
// that is no *provider.RateLimitedError.
func Transient(err error) bool {
	var rl *provider.RateLimitedError
	var te *provider.TransientError
	return errors.As(err, &te) && !errors.As(err, &rl)
}

// Request is one HTTP call of an API.
type Request struct {
	Method string
	// URL is the absolute URL, without its query.
	URL string
	// Query, when not empty, is appended to URL.
	Query url.Values
	// Body, when not nil, is sent with Content-Type ContentType.
	Body        []byte
	ContentType string
	// Header is put on the request as it is, every name spelt as given:
	// unlike Header.Set, nothing is canonicalised (Dropbox Sign's client
	// spells its idempotency-key in lower case on purpose). Accept is
	// application/json unless Header names it.
	Header http.Header
	// Op is the operation's label in the call metrics and in errors.
	Op string
	// Limit is the most bytes of an answer read; a 2xx answer longer than
	// that is refused.
	Limit int64
	// Answered, when set, sees every answer's status and headers before
	// its body is read: a client's rate-limit headers.
	Answered func(*http.Response)
	// Refused turns a non-2xx answer, its body read up to Limit, into the
	// client's typed error. Nil makes it a *provider.PermanentError.
	Refused func(resp *http.Response, raw []byte) error
}

// Answer is a 2xx answer, read whole.
type Answer struct {
	Body        []byte
	ContentType string
	Header      http.Header // the answer's headers, Content-Type included
}

// Download is the answer as the artefact of a finished envelope, of type
// defaultType when the answer names none. It declares no digest: a
// provider that sends one sets DeclaredHash.
func (a Answer) Download(defaultType string) provider.Download {
	ct := a.ContentType
	if ct == "" {
		ct = defaultType
	}
	return provider.Download{Body: a.Body, ContentType: ct}
}

// Call makes r once, within Timeout: no retry. Its errors are those of
// r.Refused, a *provider.TransientError for a failure in transport (the
// caller's own cancellation returned as it is, see
// provider.TransportError), or a *provider.PermanentError for a request
// that cannot be built or a 2xx answer larger than r.Limit.
func (c *Caller) Call(ctx context.Context, r Request) (Answer, error) {
	u := r.URL
	if len(r.Query) > 0 {
		u += "?" + r.Query.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	var rd io.Reader
	if r.Body != nil {
		rd = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, u, rd)
	if err != nil {
		return Answer{}, &provider.PermanentError{Reason: c.Provider + ": " + err.Error()}
	}
	req.Header.Set("Accept", "application/json")
	if r.Body != nil {
		req.Header.Set("Content-Type", r.ContentType)
	}
	for name, v := range r.Header {
		req.Header[name] = v
	}
	start := time.Now()
	resp, err := c.HTTP.Do(req)
	if c.Metrics != nil {
		c.Metrics.Observe(c.Provider, r.Op, start, resp, err)
	}
	if err != nil {
		return Answer{}, provider.TransportError(ctx, err)
	}
	defer resp.Body.Close()
	if r.Answered != nil {
		r.Answered(resp)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, r.Limit+1))
	if err != nil {
		return Answer{}, provider.TransportError(ctx, fmt.Errorf("read answer: %w", err))
	}
	if resp.StatusCode/100 == 2 {
		if int64(len(raw)) > r.Limit {
			return Answer{}, &provider.PermanentError{Status: resp.StatusCode, Reason: fmt.Sprintf("%s: answer larger than %d bytes", c.Provider, r.Limit)}
		}
		return Answer{Body: raw, ContentType: resp.Header.Get("Content-Type"), Header: resp.Header}, nil
	}
	if r.Refused == nil {
		return Answer{}, &provider.PermanentError{Status: resp.StatusCode, Reason: fmt.Sprintf("%s: %s: HTTP %d", c.Provider, r.Op, resp.StatusCode)}
	}
	return Answer{}, r.Refused(resp, raw)
}

// RateLimited counts, in Metrics (when set), an answer of operation op
// that said to slow down.
func (c *Caller) RateLimited(op string) {
	if c.Metrics != nil {
		c.Metrics.RateLimited.WithLabelValues(c.Provider, op).Inc()
	}
}

// Retry runs fn until it succeeds, fails with an error Retryable refuses,
// has run Attempts times or ctx ends, waiting Delay between attempts. It
// returns fn's last error, or ctx's error wrapping it.
func (c *Caller) Retry(ctx context.Context, fn func(context.Context) error) error {
	var err error
	for attempt := 0; attempt < c.Attempts; attempt++ {
		if err = fn(ctx); err == nil || !c.Retryable(err) || attempt == c.Attempts-1 {
			return err
		}
		if werr := c.Backoff(ctx, attempt, err); werr != nil {
			return werr
		}
	}
	return err
}

// Delay is the full-jitter backoff after attempt (0-based) failed:
// uniform in (0, min(BackoffBase·2^attempt, BackoffMax)].
func (c *Caller) Delay(attempt int) time.Duration {
	wait := c.BackoffBase
	for i := 0; i < attempt && wait > 0 && wait < c.BackoffMax; i++ {
		wait <<= 1
	}
	if wait > c.BackoffMax || wait <= 0 {
		wait = c.BackoffMax
	}
	return time.Duration(rand.Int64N(int64(wait)) + 1)
}

// Backoff waits Delay(attempt) after attempt failed with err, or returns
// ctx's error wrapping err when ctx ends first.
func (c *Caller) Backoff(ctx context.Context, attempt int, err error) error {
	d := c.Delay(attempt)
	c.Logger.Debug("retrying provider call", "attempt", attempt+1, "wait", d, "err", err)
	return Sleep(ctx, d, err)
}

// Sleep waits d, or returns ctx's error when ctx ends first, wrapping
// last, the error the wait follows, when there is one.
func Sleep(ctx context.Context, d time.Duration, last error) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		if last == nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
	case <-t.C:
		return nil
	}
}

// Fetch runs attempt with Retry and returns its answer.
func (c *Caller) Fetch(ctx context.Context, attempt func(context.Context) (Answer, error)) (Answer, error) {
	var a Answer
	err := c.Retry(ctx, func(ctx context.Context) error {
		var err error
		a, err = attempt(ctx)
		return err
	})
	return a, err
}

// Decode runs attempt with Retry and decodes the JSON of its answer into
// out (when out is not nil and the answer not empty). An answer that does
// not decode is a *provider.TransientError: the next attempt may read a
// whole one.
func (c *Caller) Decode(ctx context.Context, op string, attempt func(context.Context) (Answer, error), out any) error {
	return c.Retry(ctx, func(ctx context.Context) error {
		a, err := attempt(ctx)
		if err != nil {
			return err
		}
		if out == nil || len(a.Body) == 0 {
			return nil
		}
		if err := json.Unmarshal(a.Body, out); err != nil {
			return &provider.TransientError{Err: fmt.Errorf("%s: decode %s answer: %w", c.Provider, op, err)}
		}
		return nil
	})
}
