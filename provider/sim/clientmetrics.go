package sim

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/internal/promreg"
)

// clientMetrics count the Client's provider API calls: one per HTTP
// attempt, so retries show.
type clientMetrics struct {
	calls       *prometheus.CounterVec   // provider, operation, outcome
	seconds     *prometheus.HistogramVec // provider, operation
	rateLimited *prometheus.CounterVec   // provider, operation
}

func newClientMetrics(reg prometheus.Registerer) (*clientMetrics, error) {
	m := &clientMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_provider_calls_total",
			Help: "Provider API calls (each attempt), by provider, operation and outcome (ok, rate_limited, not_found, client_error, server_error, transport_error)."},
			[]string{"provider", "operation", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "esignflow_provider_call_seconds",
			Help: "Provider API call latency (each attempt), by provider and operation.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)},
			[]string{"provider", "operation"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_provider_rate_limited_total",
			Help: "Provider answers that said to slow down (429), by provider and operation."}, []string{"provider", "operation"}),
	}
	var err error
	if err = promreg.Register(reg, &m.calls); err != nil {
		return nil, err
	}
	if err = promreg.Register(reg, &m.seconds); err != nil {
		return nil, err
	}
	if err = promreg.Register(reg, &m.rateLimited); err != nil {
		return nil, err
	}
	return m, nil
}

// observe records one attempt.
func (m *clientMetrics) observe(method, path string, start time.Time, resp *http.Response, err error) {
	if m == nil {
		return
	}
	op := operation(method, path)
	outcome := "transport_error"
	if err == nil && resp != nil {
		switch code := resp.StatusCode; {
		case code/100 == 2:
			outcome = "ok"
		case code == http.StatusTooManyRequests:
			outcome = "rate_limited"
			m.rateLimited.WithLabelValues("sim", op).Inc()
		case code == http.StatusNotFound:
			outcome = "not_found"
		case code >= 500:
			outcome = "server_error"
		default:
			outcome = "client_error"
		}
	}
	m.calls.WithLabelValues("sim", op, outcome).Inc()
	m.seconds.WithLabelValues("sim", op).Observe(time.Since(start).Seconds())
}

// operation names an API call by its route, without ids, so the label's
// values are bounded.
func operation(method, path string) string {
	path, _, _ = strings.Cut(path, "?")
	parts := strings.Split(strings.Trim(path, "/"), "/") // v1 envelopes {id} ...
	switch {
	case method == http.MethodPost && len(parts) == 2:
		return "create"
	case method == http.MethodGet && len(parts) == 2:
		return "list"
	case method == http.MethodGet && len(parts) == 3:
		return "get"
	case len(parts) == 4 && method == http.MethodPut:
		return "put_" + parts[3]
	case len(parts) == 4 && parts[3] == "send":
		return "send"
	case len(parts) == 5 && parts[3] == "documents":
		return "download"
	}
	return strings.ToLower(method) + "_" + strconv.Itoa(len(parts))
}
