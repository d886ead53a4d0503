package store_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/schemas"
)

// BenchmarkApply measures batch apply: events/s and Redis round trips per
// batch, with one writer and with two applying batches of disjoint
// envelopes at once (as the processor does for the partitions it owns), and
// with batches of two shapes (see benchBatch): perenv=4, four events for
// each of batch/4 new envelopes, and perenv=1, one event for each of batch
// envelopes, as a processor's batch mostly is. Run it against a real server
// with ESIGNFLOW_TEST_REDIS_URL set; miniredis is far slower.
func BenchmarkApply(b *testing.B) {
	for _, perEnv := range []int{1, 4} {
		for _, writers := range []int{1, 2} {
			for _, size := range []int{100, 500, 1000} {
				b.Run(fmt.Sprintf("perenv=%d/writers=%d/batch=%d", perEnv, writers, size), func(b *testing.B) {
					benchApply(b, perEnv, writers, size)
				})
			}
		}
	}
}

func benchApply(b *testing.B, perEnv, writers, size int) {
	r := redistest.New(b)
	s, err := store.New(store.Config{Client: r.Client, Prefix: r.Prefix})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	// Each writer owns a partition of its own, with its own envelopes and
	// its own builder goroutine, which builds batches a little ahead while
	// the writer applies: the building costs CPU and garbage during the
	// timed loop, as decoding does in a processor. (Building every batch
	// before the timer instead leaves a heap so large that the collector
	// runs twenty times less often, which flatters the figures.)
	owners := make([]*owner, writers)
	for w := range writers {
		owners[w] = claim(b, s, int32(w), 1)
	}
	var trips, events atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	cpu0, self0 := redisCPU(b, r), selfCPU(b)
	b.ResetTimer()
	for w, o := range owners {
		batches := make(chan []store.Input, 2)
		go func() {
			defer close(batches)
			for i := w; i < b.N; i += writers {
				batches <- benchBatch(o.p, i/writers, perEnv, size)
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			// As the processor does: each batch's floor is where the
			// previous one left the checkpoint.
			batch := o.batch(nil)
			for in := range batches {
				batch.Floor, batch.Next = batch.Next, in[len(in)-1].From.Offset+1
				out, err := s.Apply(ctx, batch, in)
				if err != nil {
					errs <- err
					for range batches { // let the builder finish
					}
					return
				}
				trips.Add(int64(out.Stats.RoundTrips))
				events.Add(int64(len(in)))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(events.Load())/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(trips.Load())/float64(b.N), "trips/batch")
	b.ReportMetric(float64(selfCPU(b)-self0)/float64(time.Millisecond)/float64(b.N), "go-cpu-ms/batch")
	if redistest.Real() {
		// The server's own CPU time: a single-threaded Redis can do no
		// more than one second of it per second, whatever the writers do.
		b.ReportMetric(float64(redisCPU(b, r)-cpu0)/float64(time.Millisecond)/float64(b.N), "redis-cpu-ms/batch")
	}
}

// selfCPU returns the CPU time this process has used, user and system:
// the store's, the batch builders' and the runtime's (garbage collection).
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU returns the CPU time the Redis server has used (INFO cpu, user
// and system), summed over the masters of a cluster; zero on miniredis.
// The servers are the whole machine's, so the figure is only meaningful on
// servers the benchmark has to itself.
func redisCPU(b *testing.B, r *redistest.Redis) time.Duration {
	if !redistest.Real() {
		return 0
	}
	ctx := context.Background()
	var mu sync.Mutex
	var total time.Duration
	add := func(ctx context.Context, n redis.Cmdable) error {
		info, err := n.Info(ctx, "cpu").Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\n") {
			name, val, _ := strings.Cut(strings.TrimSpace(line), ":")
			if name == "used_cpu_user" || name == "used_cpu_sys" {
				secs, err := strconv.ParseFloat(val, 64)
				if err != nil {
					return fmt.Errorf("INFO cpu: %s: %w", line, err)
				}
				mu.Lock()
				total += time.Duration(secs * float64(time.Second))
				mu.Unlock()
			}
		}
		return nil
	}
	var err error
	if cc, ok := r.Client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return add(ctx, n) })
	} else {
		err = add(ctx, r.Client)
	}
	if err != nil {
		b.Fatal(err)
	}
	return total
}

// benchBatch returns batch number i of partition p: size events, at
// offsets i*size on, perEnv (1 or 4) for each of size/perEnv envelopes.
// With 4 they are an envelope's whole life (created, sent, a recipient
// viewing, completed); with 1, each envelope
// has its next step, as when a processor's batch holds one event for each
// of many envelopes: envelope k of batch i is at step i%4 of its life.
func benchBatch(p int32, i, perEnv, size int) []store.Input {
	steps := []schemas.Status{schemas.StatusCreated, schemas.StatusSent, "", schemas.StatusCompleted}
	batch := make([]store.Input, size)
	now := time.Now()
	for j := range batch {
		env, step := fmt.Sprintf("env-p%d-%d-%d", p, i, j/4), j%4
		if perEnv == 1 {
			env, step = fmt.Sprintf("env-p%d-%d-%d", p, i/4, j), i%4
		}
		st := steps[step]
		e := schemas.EnvelopeEvent{EventID: fmt.Sprintf("%s-%d", env, step), Provider: "sim", EnvelopeID: env, Source: schemas.SourceWebhook, OccurredAt: now, ReceivedAt: now}
		if st != "" {
			e.Status = &st
		} else {
			e.Recipients = []schemas.RecipientUpdate{{RecipientID: "r1", Email: "a@example.com", Status: schemas.RecipientViewed}}
		}
		batch[j] = store.Input{Event: e, From: store.Coord{Topic: "events", Partition: p, Offset: int64(i*size + j)}}
	}
	return batch
}

// BenchmarkStaleScan measures the reconciler's scan: stale envelopes found
// per second from the indexes of 16 partitions holding 1M non-terminal
// envelopes between them (100k on miniredis), taking 1000 per scan as the
// reconciler does.
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
	const partitions = 16
	for p := range int32(partitions) {
		claim(b, s, p, 1)
	}
	base := time.Now().Add(-48 * time.Hour)
	for lo := 0; lo < size; lo += 10_000 {
		pipe := r.Client.Pipeline()
		for i := lo; i < lo+10_000 && i < size; i++ {
			pipe.ZAdd(ctx, s.ActiveKey(int32(i%partitions)), redis.Z{Score: float64(base.Add(time.Duration(i) * 100 * time.Millisecond).UnixMilli()), Member: fmt.Sprintf("env-%07d", i)})
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
