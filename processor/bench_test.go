package processor_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/esignflow/esignflow/internal/bench"
	"github.com/esignflow/esignflow/internal/redistest"
)

// BenchmarkProcessor reports events/s through the processor exactly once
// and at least once (the baseline), on an in-process broker, with the Redis
// of ESIGNFLOW_TEST_REDIS_URL (miniredis without it). Each iteration is a
// whole run of 4,000 envelopes (32,000 events) per mode.
func BenchmarkProcessor(b *testing.B) {
	for _, batch := range []int{500, 2000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				res, err := bench.Processor(context.Background(), bench.ProcessorConfig{Envelopes: 4000, MaxBatch: batch, RedisURL: os.Getenv(redistest.EnvURL)})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(res[0].EventsPerSec, "alo-events/s")
				b.ReportMetric(res[1].EventsPerSec, "eos-events/s")
				b.ReportMetric(res[1].EventsPerSec/res[0].EventsPerSec, "eos/alo")
			}
		})
	}
}
