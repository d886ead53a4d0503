package bench_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/bench"
	"github.com/esignflow/esignflow/internal/redistest"
)

// TestChaos is the acceptance test: the chaos scenario, sized for CI.
// Nothing lost, nothing duplicated, no version gap, every audit chain
// verifies, every terminal envelope finalised exactly once.
func TestChaos(t *testing.T) {
	url := ""
	if redistest.Real() {
		// The scenario flushes Redis: the real-Redis run uses the
		// embedded one too rather than flush a shared server.
		url = ""
	}
	res, err := bench.Pipeline(context.Background(), bench.PipelineConfig{
		Envelopes: 150, Chaos: true, Seed: 42, Step: 30 * time.Millisecond, Timeout: 4 * time.Minute, RedisURL: url,
		Progress: func(p bench.Progress) {
			t.Logf("%5.1fs requested %d, at provider %d, final %d, agreeing %d, status changes %d", p.Elapsed.Seconds(), p.Requested, p.Envelopes, p.Final, p.Matching, p.StatusChanges)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("%s", b)
	if !res.OK() {
		t.Fatalf("correctness: %+v", res.Correctness)
	}
	if res.Work.ProcessorRestarts != 3 || res.Work.ProduceFaultSeconds == 0 || res.Work.Restores == 0 {
		t.Fatalf("the chaos did not all happen: %+v", res.Work)
	}
	if res.Work.DuplicatesDropped == 0 || res.Work.Polls == 0 {
		t.Fatalf("no duplicate suppressed or no poll made: %+v", res.Work)
	}
	_ = os.Getenv
}
