package sim

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/provider"
)

// clientMetrics count the Client's provider API calls: one per HTTP
// attempt, so retries show.
type clientMetrics struct{ *provider.CallMetrics }

func newClientMetrics(reg prometheus.Registerer) (*clientMetrics, error) {
	m, err := provider.NewCallMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &clientMetrics{m}, nil
}

// observe records one attempt.
func (m *clientMetrics) observe(method, path string, start time.Time, resp *http.Response, err error) {
	if m == nil {
		return
	}
	op := operation(method, path)
	m.Observe("sim", op, start, resp, err)
	if err == nil && resp != nil && resp.StatusCode == http.StatusTooManyRequests {
		m.RateLimited.WithLabelValues("sim", op).Inc()
	}
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
