package bench_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/bench"
)

// TestRestore runs the restore benchmark small, on the embedded broker and
// Redis (or the real Redis of ESIGNFLOW_TEST_REDIS_URL), and checks that
// its figures are sane: every envelope restored into Redis, every
// partition restored once, and times and memory that add up.
func TestRestore(t *testing.T) {
	const n, parts = 3000, 3
	res, err := bench.Restore(context.Background(), bench.RestoreConfig{Envelopes: n, Partitions: parts,
		RedisURL: os.Getenv("ESIGNFLOW_TEST_REDIS_URL"), Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("%s", b)
	if res.InRedis != n {
		t.Errorf("got %d envelopes in Redis, want %d", res.InRedis, n)
	}
	if res.Restores != parts || len(res.PartitionTimes) != parts {
		t.Errorf("got %d restores (%d timed), want %d", res.Restores, len(res.PartitionTimes), parts)
	}
	if res.Restoring <= 0 || res.Restoring > res.Elapsed {
		t.Errorf("restoring took %s of the %s until every checkpoint, want more than 0 and no more", res.Restoring, res.Elapsed)
	}
	// Partitions restore concurrently, each timed from just before its
	// first log line and rounded to the millisecond: each takes at most
	// the whole window, give or take that.
	for p, d := range res.PartitionTimes {
		if d <= 0 || d > res.Restoring+2*time.Millisecond {
			t.Errorf("partition %d took %s, want more than 0 and at most the %s of every restore", p, d, res.Restoring)
		}
	}
	if res.EnvelopesPerSec <= 0 || res.ChangelogBytes < n*200 {
		t.Errorf("got %.0f envelopes/s, %d changelog bytes; want a rate and at least 200 bytes an envelope", res.EnvelopesPerSec, res.ChangelogBytes)
	}
	if res.BaselineRSSKiB <= 0 || res.PeakRSSKiB < res.BaselineRSSKiB/2 {
		t.Errorf("got RSS baseline %d KiB, peak %d KiB", res.BaselineRSSKiB, res.PeakRSSKiB)
	}
}
