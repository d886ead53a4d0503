package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/schemas"
)

// BenchmarkApply measures batch apply: events/s and Redis round trips per
// batch. Each batch carries four events (created, sent, a recipient viewing,
// completed) for each of batch/4 new envelopes; building the batch is not
// timed. Run it against a real server
// with ESIGNFLOW_TEST_REDIS_URL set; miniredis is far slower.
func BenchmarkApply(b *testing.B) {
	for _, size := range []int{100, 500, 1000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			r := redistest.New(b)
			s, err := store.New(store.Config{Client: r.Client, Prefix: r.Prefix})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := s.SetMarker(ctx); err != nil {
				b.Fatal(err)
			}
			steps := []schemas.Status{schemas.StatusCreated, schemas.StatusSent, "", schemas.StatusCompleted}
			batch := make([]store.Input, size)
			var trips, events int
			var offset int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for j := range batch {
					env := fmt.Sprintf("env-%d-%d", i, j/4)
					st := steps[j%4]
					e := schemas.EnvelopeEvent{EventID: fmt.Sprintf("%s-%d", env, j%4), Provider: "sim", EnvelopeID: env, Source: schemas.SourceWebhook, OccurredAt: time.Now(), ReceivedAt: time.Now()}
					if st != "" {
						e.Status = &st
					} else {
						e.Recipients = []schemas.RecipientUpdate{{RecipientID: "r1", Email: "a@example.com", Status: schemas.RecipientViewed}}
					}
					batch[j] = store.Input{Event: e, From: store.Coord{Topic: "events", Offset: offset}}
					offset++
				}
				b.StartTimer()
				_, stats, err := s.Apply(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				trips += stats.RoundTrips
				events += size
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(trips)/float64(b.N), "trips/batch")
		})
	}
}

// BenchmarkStaleScan measures the reconciler's scan: stale envelopes found
// per second from an index of 1M non-terminal envelopes (100k on
// miniredis), taking 1000 per scan as the reconciler does.
func BenchmarkStaleScan(b *testing.B) {
	r := redistest.New(b)
	s, err := store.New(store.Config{Client: r.Client, Prefix: r.Prefix})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	size := 100_000
	if redistest.Real() {
		size = 1_000_000
	}
	base := time.Now().Add(-48 * time.Hour)
	for lo := 0; lo < size; lo += 10_000 {
		pipe := r.Client.Pipeline()
		for i := lo; i < lo+10_000 && i < size; i++ {
			pipe.ZAdd(ctx, s.Key("active"), redis.Z{Score: float64(base.Add(time.Duration(i) * 100 * time.Millisecond).UnixMilli()), Member: fmt.Sprintf("env-%07d", i)})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	cutoff := time.Now().Add(-time.Hour)
	found := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, err := s.Stale(ctx, cutoff, 1000)
		if err != nil || len(st) != 1000 {
			b.Fatalf("%d stale, %v", len(st), err)
		}
		found += len(st)
	}
	b.ReportMetric(float64(found)/b.Elapsed().Seconds(), "stale/s")
	b.ReportMetric(float64(size), "index-size")
}
