package ratebudget_test

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/ratebudget"
	"github.com/esignflow/esignflow/internal/redistest"
)

func bucket(t *testing.T, rt *redistest.Redis, rate float64, burst int) *ratebudget.Bucket {
	t.Helper()
	b, err := ratebudget.New(ratebudget.Config{Client: rt.Client, Key: rt.Prefix + "budget:acct", Rate: rate, Burst: burst})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The bucket refills at Rate by the Redis clock, never beyond Burst, and a
// take beyond what it holds is told how long to wait for its tokens.
// Embedded Redis only: its clock is set by the test.
func TestBucketRefillsByRedisClock(t *testing.T) {
	rt := redistest.New(t)
	if rt.Mini == nil {
		t.Skip("sets the embedded Redis's clock")
	}
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	rt.Mini.SetTime(t0)
	b := bucket(t, rt, 2, 3) // 2 tokens a second, 3 at most
	ctx := context.Background()
	take := func(n int, want time.Duration) {
		t.Helper()
		got, err := b.Take(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("Take(%d): wait %s, want %s", n, got, want)
		}
	}
	for range 3 {
		take(1, 0) // a new bucket is full
	}
	take(1, 500*time.Millisecond) // a debt of 1 at 2/s
	rt.Mini.SetTime(t0.Add(time.Second))
	take(1, 0)                    // -1 + 2 = 1 → 0
	take(1, 500*time.Millisecond) // -1
	rt.Mini.SetTime(t0.Add(time.Hour))
	// An hour refills the bucket to its burst, not to 7,200 tokens.
	take(3, 0)
	take(1, 500*time.Millisecond)
	// A clock that went back refills nothing, and takes nothing back.
	rt.Mini.SetTime(t0.Add(30 * time.Minute))
	take(0, 500*time.Millisecond)
	rt.Mini.SetTime(t0.Add(time.Hour + 750*time.Millisecond))
	take(0, 0) // -1 + 1.5
	if n, err := b.Tokens(ctx); err != nil || n != 0.5 {
		t.Fatalf("Tokens = %v (%v), want 0.5", n, err)
	}
	take(2, 750*time.Millisecond) // 0.5 - 2 = -1.5
}

// Buckets with the same key are one budget, whichever process holds them:
// of many concurrent takes on a full bucket that refills slowly, exactly
// Burst get their token at once, and the others are queued one refill
// apart.
func TestBucketSharedByEveryTaker(t *testing.T) {
	rt := redistest.New(t)
	const burst, takers, rate = 5, 12, 0.01 // one token per 100s
	waits := make([]time.Duration, takers)
	var wg sync.WaitGroup
	for i := range takers {
		b := bucket(t, rt, rate, burst) // one per "replica"
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := b.Take(context.Background(), 1)
			if err != nil {
				t.Error(err)
			}
			waits[i] = d
		}()
	}
	wg.Wait()
	sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
	for i, d := range waits {
		// The i'th take past the burst waits for i+1 refills, less the
		// little the bucket refilled while the takes ran.
		want := time.Duration(0)
		if i >= burst {
			want = time.Duration(float64(i-burst+1) / rate * float64(time.Second))
		}
		if d > want || d < want-time.Second {
			t.Errorf("take %d of %d: wait %s, want %s (at most a second less)", i+1, takers, d, want)
		}
	}
}

// Hold empties the bucket for a while, for every holder of the key, and
// Wait waits it out.
func TestBucketHold(t *testing.T) {
	rt := redistest.New(t)
	ctx := context.Background()
	a, b := bucket(t, rt, 1000, 100), bucket(t, rt, 1000, 100)
	if err := a.Hold(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	d, err := b.Take(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if d < 29*time.Second || d > 30*time.Second+time.Millisecond {
		t.Fatalf("a take after a 30s hold waits %s", d)
	}
	// Wait gives up with its context, and says it waited.
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if waited, err := b.Wait(cctx, 1); !waited || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a held bucket with a cancelled context = %v, %v", waited, err)
	}
}

// An idle bucket's key expires once the bucket would be full again.
func TestBucketKeyExpires(t *testing.T) {
	rt := redistest.New(t)
	b := bucket(t, rt, 1, 10)
	if _, err := b.Take(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	ttl, err := rt.Client.PTTL(context.Background(), b.Key()).Result()
	if err != nil {
		t.Fatal(err)
	}
	// 4 tokens to refill at 1/s, plus a second.
	if ttl <= 3*time.Second || ttl > 5*time.Second {
		t.Fatalf("TTL %s, want about 5s", ttl)
	}
}

// Without Redis a take fails with ErrUnavailable and takes nothing.
func TestBucketUnavailable(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	b, err := ratebudget.New(ratebudget.Config{Client: c, Key: "budget:acct", Rate: 1, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := b.Take(context.Background(), 1); !errors.Is(err, ratebudget.ErrUnavailable) {
		t.Fatalf("Take without Redis: %v, want ErrUnavailable", err)
	}
}

func TestConfigValidate(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { c.Close() })
	for _, tc := range []struct {
		name string
		cfg  ratebudget.Config
		ok   bool
	}{
		{"complete", ratebudget.Config{Client: c, Key: "k", Rate: 1}, true},
		{"no client", ratebudget.Config{Key: "k", Rate: 1}, false},
		{"no key", ratebudget.Config{Client: c, Rate: 1}, false},
		{"no rate", ratebudget.Config{Client: c, Key: "k"}, false},
		{"negative burst", ratebudget.Config{Client: c, Key: "k", Rate: 1, Burst: -1}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v", tc.name, err)
		}
	}
}
