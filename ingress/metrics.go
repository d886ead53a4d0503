package ingress

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests     *prometheus.CounterVec // provider or "signing-requests", outcome
	verifyFails  *prometheus.CounterVec // provider, reason
	ignored      *prometheus.CounterVec // provider
	publish      prometheus.Histogram
	inFlight     prometheus.Gauge
	deadLettered *prometheus.CounterVec   // provider
	duration     *prometheus.HistogramVec // listener, route, code
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_ingress_requests_total", Help: "HTTP requests by endpoint (provider name or signing-requests) and outcome (the status code)."}, []string{"endpoint", "code"}),
		verifyFails:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_ingress_verification_failures_total", Help: "Webhooks refused by signature verification, by provider and reason."}, []string{"provider", "reason"}),
		ignored:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_ingress_ignored_total", Help: "Authentic webhooks that carry no status (e.g. callback_test, envelope-purge): acknowledged, not published."}, []string{"provider"}),
		publish:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "esignflow_ingress_publish_seconds", Help: "Time from a verified request to the broker's acknowledgement.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		inFlight:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "esignflow_ingress_in_flight", Help: "Requests being handled."}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_ingress_dead_lettered_total", Help: "Authentic webhooks that could not be parsed, sent to the DLQ with their raw body."}, []string{"provider"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "esignflow_ingress_http_request_duration_seconds",
			Help:    "HTTP request duration by listener (webhooks or api), route (the matched pattern, or unmatched) and status code, from the first byte read to the last written.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"listener", "route", "code"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.verifyFails, m.ignored, m.publish, m.inFlight, m.deadLettered, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// timed observes every request of a listener's mux in the duration
// histogram, labelled by the route pattern the mux matched: a bounded set,
// unlike the URL path.
func (m *metrics) timed(listener string, mux *http.ServeMux, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		route := "unmatched"
		if _, pattern := mux.Handler(r); pattern != "" {
			route = pattern
		}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		m.duration.WithLabelValues(listener, route, strconv.Itoa(sw.code)).Observe(time.Since(start).Seconds())
	})
}

// statusWriter remembers the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wroteHeader {
		s.code, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
