package ingress_test

import (
	"context"
	"testing"

	"github.com/esignflow/esignflow/internal/bench"
)

// BenchmarkIngress compares the real ingress (verify + durable publish to an
// in-process broker) with a bare verify-only handler, over loopback.
func BenchmarkIngress(b *testing.B) {
	for i := 0; i < b.N; i++ {
		res, err := bench.Ingress(context.Background(), bench.IngressConfig{Requests: 10000})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res[0].PerSec, "ingress-req/s")
		b.ReportMetric(res[1].PerSec, "bare-req/s")
		b.ReportMetric(res[0].PerSec/res[1].PerSec, "ratio")
		b.ReportMetric(float64(res[0].P99.Microseconds()), "ingress-p99-µs")
		if res[0].Errors+res[1].Errors > 0 {
			b.Fatalf("errors: %+v", res)
		}
	}
}
