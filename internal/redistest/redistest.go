// Package redistest gives tests a Redis: miniredis by default, or the real
// server named by ESIGNFLOW_TEST_REDIS_URL, so one suite runs against both.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// EnvURL names the environment variable that points the suites at a real
// Redis server, e.g. redis://127.0.0.1:6379/0.
const EnvURL = "ESIGNFLOW_TEST_REDIS_URL"

// Redis is one test's Redis: a client and a key prefix of its own, so tests
// of several packages can share one real server at once.
type Redis struct {
	Client *redis.Client
	Prefix string
	// Mini is the embedded server, nil against a real one.
	Mini *miniredis.Miniredis
}

// New returns a Redis for t, closed and cleaned up when t ends.
func New(t testing.TB) *Redis {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	r := &Redis{Prefix: "esftest:" + hex.EncodeToString(b[:]) + ":"}
	if url := os.Getenv(EnvURL); url != "" {
		opt, err := redis.ParseURL(url)
		if err != nil {
			t.Fatalf("%s: %v", EnvURL, err)
		}
		r.Client = redis.NewClient(opt)
		if err := r.Client.Ping(context.Background()).Err(); err != nil {
			t.Fatalf("%s=%s: %v", EnvURL, url, err)
		}
	} else {
		r.Mini = miniredis.RunT(t)
		r.Client = redis.NewClient(&redis.Options{Addr: r.Mini.Addr()})
	}
	t.Cleanup(func() {
		r.Flush(t)
		r.Client.Close()
	})
	return r
}

// Real reports whether the tests run against a real server.
func Real() bool { return os.Getenv(EnvURL) != "" }

// Flush deletes every key of this test's prefix: what a test uses to
// simulate Redis losing its data without touching other tests' keys.
func (r *Redis) Flush(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	iter := r.Client.Scan(ctx, 0, r.Prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Logf("flush %s: %v", r.Prefix, err)
		return
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := r.Client.Del(ctx, keys[:n]...).Err(); err != nil {
			t.Logf("flush %s: %v", r.Prefix, err)
			return
		}
		keys = keys[n:]
	}
}
