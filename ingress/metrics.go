package ingress

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests     *prometheus.CounterVec // provider or "signing-requests", outcome
	verifyFails  *prometheus.CounterVec // provider, reason
	ignored      *prometheus.CounterVec // provider
	publish      prometheus.Histogram
	inFlight     prometheus.Gauge
	deadLettered *prometheus.CounterVec // provider
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_ingress_requests_total", Help: "HTTP requests by endpoint (provider name or signing-requests) and outcome (the status code)."}, []string{"endpoint", "code"}),
		verifyFails:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_ingress_verification_failures_total", Help: "Webhooks refused by signature verification, by provider and reason."}, []string{"provider", "reason"}),
		ignored:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_ingress_ignored_total", Help: "Authentic webhooks that carry no status (e.g. callback_test, envelope-purge): acknowledged, not published."}, []string{"provider"}),
		publish:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "esignflow_ingress_publish_seconds", Help: "Time from a verified request to the broker's acknowledgement.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		inFlight:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "esignflow_ingress_in_flight", Help: "Requests being handled."}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_ingress_dead_lettered_total", Help: "Authentic webhooks that could not be parsed, sent to the DLQ with their raw body."}, []string{"provider"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.verifyFails, m.ignored, m.publish, m.inFlight, m.deadLettered} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
