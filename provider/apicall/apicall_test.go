package apicall_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/internal/promread"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/apicall"
)

func newCaller(t *testing.T, c apicall.Caller) *apicall.Caller {
	t.Helper()
	if c.Provider == "" {
		c.Provider = "test"
	}
	c.BackoffBase, c.BackoffMax = time.Millisecond, 2*time.Millisecond
	return apicall.New(c)
}

func TestCall(t *testing.T) {
	var gotHeader http.Header
	var gotQuery, gotBody string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHeader, gotQuery = r.Header.Clone(), r.URL.RawQuery
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		w.Header().Set("Content-Type", "text/plain")
		switch r.URL.Path {
		case "/ok":
			_, _ = io.WriteString(w, "0123456789")
		case "/refused":
			w.WriteHeader(http.StatusTeapot)
			_, _ = io.WriteString(w, "no tea")
		}
	}))
	t.Cleanup(s.Close)
	reg := prometheus.NewRegistry()
	m, err := provider.NewCallMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := newCaller(t, apicall.Caller{Metrics: m})
	refused := errors.New("refused")
	for _, tc := range []struct {
		name     string
		path     string
		limit    int64
		wantBody string
		wantErr  func(error) bool
	}{
		{name: "ok", path: "/ok", limit: 10, wantBody: "0123456789"},
		{name: "larger than the limit", path: "/ok", limit: 9, wantErr: provider.IsPermanent},
		{name: "refused", path: "/refused", limit: 10, wantErr: func(err error) bool { return errors.Is(err, refused) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var answered, sawRaw string
			a, err := c.Call(context.Background(), apicall.Request{
				Method: http.MethodPost, URL: s.URL + tc.path, Query: map[string][]string{"q": {"a b"}},
				Body: []byte("body"), ContentType: "application/x-test",
				Header: http.Header{"idempotency-key": {"k1"}}, Op: "op", Limit: tc.limit,
				Answered: func(resp *http.Response) { answered = resp.Status },
				Refused: func(resp *http.Response, raw []byte) error {
					sawRaw = string(raw)
					return refused
				},
			})
			if tc.wantErr != nil {
				if !tc.wantErr(err) {
					t.Fatalf("got %v", err)
				}
			} else if err != nil || string(a.Body) != tc.wantBody || a.ContentType != "text/plain" {
				t.Fatalf("got %q %q %v, want %q", a.Body, a.ContentType, err, tc.wantBody)
			}
			if answered == "" {
				t.Error("Answered was not called")
			}
			if tc.path == "/refused" && sawRaw != "no tea" {
				t.Errorf("Refused saw %q", sawRaw)
			}
			if gotQuery != "q=a+b" || gotBody != "body" || gotHeader.Get("Content-Type") != "application/x-test" ||
				gotHeader.Get("Accept") != "application/json" || gotHeader.Get("Idempotency-Key") != "k1" {
				t.Errorf("server saw query %q body %q header %v", gotQuery, gotBody, gotHeader)
			}
		})
	}
	for outcome, want := range map[string]float64{"ok": 2, "client_error": 1} {
		got, _, err := promread.Sum(reg, "esignflow_provider_calls_total", map[string]string{"provider": "test", "operation": "op", "outcome": outcome})
		if err != nil || got != want {
			t.Errorf("calls %s = %v (%v), want %v", outcome, got, err, want)
		}
	}
}

// TestCallKeepsHeaderSpelling: a header name is put on the request as the
// client spells it, not canonicalised (net/http replays a request with a
// canonical Idempotency-Key on its own).
func TestCallKeepsHeaderSpelling(t *testing.T) {
	var got http.Header
	c := newCaller(t, apicall.Caller{HTTP: &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = r.Header
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("{}")), Header: http.Header{}}, nil
	})}})
	if _, err := c.Call(context.Background(), apicall.Request{Method: http.MethodPost, URL: "http://127.0.0.1/x",
		Header: http.Header{"idempotency-key": {"k"}}, Limit: 10}); err != nil {
		t.Fatal(err)
	}
	if _, ok := got["idempotency-key"]; !ok {
		t.Fatalf("headers %v: idempotency-key not spelt as given", got)
	}
	if _, ok := got["Idempotency-Key"]; ok {
		t.Fatalf("headers %v: canonicalised", got)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestCallTransportError(t *testing.T) {
	broken := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("reset") })
	c := newCaller(t, apicall.Caller{HTTP: &http.Client{Transport: broken}})
	_, err := c.Call(context.Background(), apicall.Request{Method: http.MethodGet, URL: "http://127.0.0.1/x", Limit: 1})
	var te *provider.TransientError
	if !errors.As(err, &te) {
		t.Fatalf("got %v, want a TransientError", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Call(ctx, apicall.Request{Method: http.MethodGet, URL: "http://127.0.0.1/x", Limit: 1})
	if errors.As(err, &te) || err == nil {
		t.Fatalf("canceled: got %v, want the cancellation as it is", err)
	}
}

func TestRetry(t *testing.T) {
	transient := &provider.TransientError{Err: errors.New("503")}
	for _, tc := range []struct {
		name      string
		err       error
		retryable func(error) bool
		want      int32
	}{
		{name: "success", err: nil, want: 1},
		{name: "transient until out of attempts", err: transient, want: 4},
		{name: "permanent", err: &provider.PermanentError{Reason: "no"}, want: 1},
		{name: "rate limited", err: &provider.RateLimitedError{RetryAfter: time.Hour}, want: 1},
		{name: "not retryable by the client", err: transient, retryable: func(error) bool { return false }, want: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCaller(t, apicall.Caller{Attempts: 4, Retryable: tc.retryable})
			var n atomic.Int32
			err := c.Retry(context.Background(), func(context.Context) error {
				n.Add(1)
				return tc.err
			})
			if !errors.Is(err, tc.err) && err != tc.err {
				t.Errorf("got %v, want %v", err, tc.err)
			}
			if got := n.Load(); got != tc.want {
				t.Errorf("%d attempts, want %d", got, tc.want)
			}
		})
	}
}

func TestRetryStopsWithContext(t *testing.T) {
	c := apicall.New(apicall.Caller{Provider: "test", Attempts: 5, BackoffBase: time.Hour, BackoffMax: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	last := &provider.TransientError{Err: errors.New("503")}
	err := c.Retry(ctx, func(context.Context) error {
		cancel()
		return last
	})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, last) {
		t.Fatalf("got %v, want the cancellation wrapping the last error", err)
	}
}

func TestDelay(t *testing.T) {
	c := apicall.New(apicall.Caller{BackoffBase: 100 * time.Millisecond, BackoffMax: 5 * time.Second})
	for _, tc := range []struct {
		attempt int
		max     time.Duration
	}{{0, 100 * time.Millisecond}, {1, 200 * time.Millisecond}, {5, 3200 * time.Millisecond}, {6, 5 * time.Second}, {200, 5 * time.Second}} {
		for range 50 {
			if d := c.Delay(tc.attempt); d <= 0 || d > tc.max {
				t.Fatalf("Delay(%d) = %s, want in (0, %s]", tc.attempt, d, tc.max)
			}
		}
	}
}

func TestDecode(t *testing.T) {
	c := newCaller(t, apicall.Caller{Attempts: 3})
	for _, tc := range []struct {
		name     string
		body     string
		want     string
		attempts int
		wantErr  bool
	}{
		{name: "json", body: `{"a":"x"}`, want: "x", attempts: 1},
		{name: "empty", body: "", want: "", attempts: 1},
		{name: "unreadable is transient", body: "{", attempts: 3, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out struct{ A string }
			n := 0
			err := c.Decode(context.Background(), "get", func(context.Context) (apicall.Answer, error) {
				n++
				return apicall.Answer{Body: []byte(tc.body)}, nil
			}, &out)
			if tc.wantErr != (err != nil) || (err != nil && !provider.IsTransient(err)) || out.A != tc.want || n != tc.attempts {
				t.Fatalf("got %q, %v after %d attempts", out.A, err, n)
			}
		})
	}
}

func TestFetchDownload(t *testing.T) {
	c := newCaller(t, apicall.Caller{Attempts: 3})
	for _, tc := range []struct {
		name, contentType, want string
	}{
		{"named", "application/zip", "application/zip"},
		{"unnamed", "", "application/pdf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			a, err := c.Fetch(context.Background(), func(context.Context) (apicall.Answer, error) {
				if n++; n == 1 {
					return apicall.Answer{}, &provider.TransientError{Err: errors.New("503")}
				}
				return apicall.Answer{Body: []byte("%PDF"), ContentType: tc.contentType}, nil
			})
			d := a.Download("application/pdf")
			if err != nil || n != 2 || string(d.Body) != "%PDF" || d.ContentType != tc.want || d.DeclaredHash != "" {
				t.Fatalf("got %+v, %v after %d attempts; want type %s after 2", d, err, n, tc.want)
			}
		})
	}
}
