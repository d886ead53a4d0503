package docusignfake_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider/docusign/docusignfake"
	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/provider/sim"
)

func TestRateLimitHeadersAndErrors(t *testing.T) {
	tests := []struct {
		name       string
		cfg        docusignfake.Config
		calls      int // answered before the refusal
		wantStatus int
		wantError  string
	}{
		{"hourly", docusignfake.Config{HourlyLimit: 3, BurstLimit: 100}, 3, 400, "HOURLY_APIINVOCATION_LIMIT_EXCEEDED"},
		{"burst", docusignfake.Config{HourlyLimit: 100, BurstLimit: 2}, 2, 400, "BURST_APIINVOCATION_LIMIT_EXCEEDED"},
		{"hourly as 429", docusignfake.Config{HourlyLimit: 2, LimitStatus: 429}, 2, 429, "HOURLY_APIINVOCATION_LIMIT_EXCEEDED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, tt.cfg, sim.Config{})
			hour := time.Now().Truncate(time.Hour).Add(time.Hour).Unix()
			for i := range tt.calls {
				code, hd, raw := h.rest("GET", "/envelopes?from_date=2020-01-01", nil)
				if code != 200 {
					t.Fatalf("call %d: %d %s", i+1, code, raw)
				}
				hourly, burst := tt.cfg.HourlyLimit, tt.cfg.BurstLimit
				if burst == 0 {
					burst = 500
				}
				want := map[string]string{"X-RateLimit-Limit": strconv.Itoa(hourly), "X-RateLimit-Remaining": strconv.Itoa(hourly - i - 1),
					"X-RateLimit-Reset": strconv.FormatInt(hour, 10), "X-BurstLimit-Limit": strconv.Itoa(burst), "X-BurstLimit-Remaining": strconv.Itoa(burst - i - 1)}
				for k, v := range want {
					if got := hd.Get(k); got != v {
						t.Errorf("call %d: %s = %q, want %q", i+1, k, got, v)
					}
				}
			}
			code, out := h.restJSON("GET", "/envelopes?from_date=2020-01-01", nil)
			if code != tt.wantStatus || out["errorCode"] != tt.wantError || out["message"] == "" {
				t.Fatalf("past the limit: %d %v, want %d %s", code, out, tt.wantStatus, tt.wantError)
			}
			// Downloads and errors carry the headers too.
			if _, hd, _ := h.rest("GET", "/envelopes/nope/documents/combined", nil); hd.Get("X-RateLimit-Remaining") != "0" && hd.Get("X-BurstLimit-Remaining") != "0" {
				t.Fatalf("refused call headers: %v", hd)
			}
			if st := h.d.Stats(); st.RateLimited != 2 {
				t.Fatalf("rate limited %d, want 2", st.RateLimited)
			}
		})
	}
}

func TestRateLimitResets(t *testing.T) {
	h := start(t, docusignfake.Config{HourlyLimit: 1, HourlyWindow: time.Second}, sim.Config{})
	code, hd, _ := h.rest("GET", "/envelopes?from_date=2020-01-01", nil)
	if code != 200 {
		t.Fatalf("first call %d", code)
	}
	reset, err := strconv.ParseInt(hd.Get("X-RateLimit-Reset"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := h.rest("GET", "/envelopes?from_date=2020-01-01", nil); code != http.StatusBadRequest {
		t.Fatalf("second call in the window: %d", code)
	}
	providertest.WaitFor(t, 3*time.Second, "the reset time", func() bool { return time.Now().Unix() >= reset })
	if code, hd, raw := h.rest("GET", "/envelopes?from_date=2020-01-01", nil); code != 200 || hd.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("after the reset: %d %s %v", code, raw, hd)
	}
}

func TestEnvelopePollingLimit(t *testing.T) {
	tests := []struct {
		name      string
		interval  time.Duration
		wantError string // on the second read; "" when allowed
	}{
		{"off by default", 0, ""},
		{"within 30s is a burst", 10 * time.Second, "Burst_Envelope_Polling_Limit_Exceeded"},
		{"longer is hourly", 15 * time.Minute, "Hourly_Envelope_Polling_Limit_Exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, docusignfake.Config{PollInterval: tt.interval}, sim.Config{})
			a, b := h.create(definition("a", "sent", 1)), h.create(definition("b", "sent", 1))
			if code, out := h.restJSON("GET", "/envelopes/"+a, nil); code != 200 {
				t.Fatalf("first read: %d %v", code, out)
			}
			code, out := h.restJSON("GET", "/envelopes/"+a+"?include=recipients", nil)
			if tt.wantError == "" {
				if code != 200 {
					t.Fatalf("second read: %d %v", code, out)
				}
				return
			}
			if code != 400 || out["errorCode"] != tt.wantError {
				t.Fatalf("second read: %d %v, want 400 %s", code, out, tt.wantError)
			}
			if code, _ := h.restJSON("GET", "/envelopes/"+b, nil); code != 200 {
				t.Fatalf("another envelope's first read: %d", code)
			}
			if code, _ := h.restJSON("GET", "/envelopes?envelope_ids="+a, nil); code != 200 {
				t.Fatalf("listStatusChanges is not a per-envelope read: %d", code)
			}
		})
	}
}
