package bench_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/bench"
	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/kafkatest"
	"github.com/esignflow/esignflow/provider/registry"
)

// TestChaos is the acceptance test: the chaos scenario, sized for CI, in
// every dialect the simulator speaks. It
// runs on the embedded Redis even in the real-Redis suite: the scenario
// flushes Redis, and a shared server is not ours to flush.
// Nothing lost, nothing duplicated, no version gap, every audit chain
// verifies, every terminal envelope finalised exactly once.
//
// In a real-broker run it runs on an Apache Kafka process of its own, not
// the shared one, because its broker fault freezes the broker (SIGSTOP for
// three seconds) and would stall every other test.
func TestChaos(t *testing.T) {
	for _, dialect := range registry.Dialects() {
		t.Run(dialect, func(t *testing.T) { chaosRun(t, dialect) })
	}
}

// chaosRun is the chaos scenario with the simulator speaking dialect and
// the services using that provider's client (for DocuSign: the DocuSign
// adapter, its transaction-id lookups under 5xx and timeouts after acting,
// Connect webhooks dropped, duplicated and reordered).
func chaosRun(t *testing.T, dialect string) {
	var brokers []string
	var fault bench.BrokerFault
	if fakes.Real() {
		b := kafkatest.Start(t)
		brokers, fault = b.Brokers(), b
	}
	res, err := bench.Pipeline(context.Background(), bench.PipelineConfig{
		Brokers: brokers, BrokerFault: fault, Dialect: dialect,
		Envelopes: 150, Chaos: true, Seed: 42, Step: 30 * time.Millisecond, Timeout: 4 * time.Minute,
		Progress: func(p bench.Progress) {
			t.Logf("%5.1fs requested %d, at provider %d, final %d, agreeing %d, status changes %d, unfinalised %d, dead-lettered by the sink %d",
				p.Elapsed.Seconds(), p.Requested, p.Envelopes, p.Final, p.Matching, p.StatusChanges, p.Unfinalized, p.SinkDeadLetters)
		},
		Logger: testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("%s", b)
	if !res.OK() {
		t.Fatalf("correctness: %+v", res.Correctness)
	}
	if res.Work.ProcessorRestarts != 3 || res.Work.ProduceFaultSeconds == 0 || res.Work.RedisFlushes != 1 || res.Work.RedisRollbacks != 1 {
		t.Fatalf("the chaos did not all happen: %+v", res.Work)
	}
	if res.Work.DuplicatesDropped == 0 || res.Work.Polls == 0 {
		t.Fatalf("no duplicate suppressed or no poll made: %+v", res.Work)
	}
}

// testLogger is the stack's logger: discarded, or with ESIGNFLOW_TEST_LOG
// set, every component's log at debug level on stderr.
func testLogger() *slog.Logger {
	if os.Getenv("ESIGNFLOW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
