package provider

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/internal/promreg"
)

// CallMetrics are the metrics every provider's API client shares, told
// apart by their provider label. They are defined here once: two clients
// in one process register the same collectors, which needs the same name
// and help.
type CallMetrics struct {
	Calls       *prometheus.CounterVec   // provider, operation, outcome
	Seconds     *prometheus.HistogramVec // provider, operation
	RateLimited *prometheus.CounterVec   // provider, operation
}

// NewCallMetrics registers the call metrics on reg (reusing those another
// client registered there).
func NewCallMetrics(reg prometheus.Registerer) (*CallMetrics, error) {
	m := &CallMetrics{
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_provider_calls_total",
			Help: "Provider API calls (each attempt), by provider, operation and outcome (ok, rate_limited, not_found, client_error, server_error, transport_error)."},
			[]string{"provider", "operation", "outcome"}),
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "esignflow_provider_call_seconds",
			Help: "Provider API call latency (each attempt), by provider and operation.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)},
			[]string{"provider", "operation"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_provider_rate_limited_total",
			Help: "Provider answers that said to slow down (429), by provider and operation."}, []string{"provider", "operation"}),
	}
	for _, err := range []error{promreg.Register(reg, &m.Calls), promreg.Register(reg, &m.Seconds), promreg.Register(reg, &m.RateLimited)} {
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Observe records one HTTP attempt of operation op of the provider called
// name: its outcome (ok, rate_limited, not_found, client_error,
// server_error, transport_error) and its latency.
func (m *CallMetrics) Observe(name, op string, start time.Time, resp *http.Response, err error) {
	outcome := "transport_error"
	if err == nil && resp != nil {
		switch code := resp.StatusCode; {
		case code/100 == 2:
			outcome = "ok"
		case code == http.StatusTooManyRequests:
			outcome = "rate_limited"
		case code == http.StatusNotFound:
			outcome = "not_found"
		case code >= 500:
			outcome = "server_error"
		default:
			outcome = "client_error"
		}
	}
	m.Calls.WithLabelValues(name, op, outcome).Inc()
	m.Seconds.WithLabelValues(name, op).Observe(time.Since(start).Seconds())
}
