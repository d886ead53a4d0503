// Package redistest gives tests a Redis: miniredis by default, the real
// server named by ESIGNFLOW_TEST_REDIS_URL, or the real Redis Cluster named
// by ESIGNFLOW_TEST_REDIS_CLUSTER, so one suite runs against all three.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// EnvURL names the environment variable that points the suites at a real
// Redis server, e.g. redis://127.0.0.1:6379/0.
const EnvURL = "ESIGNFLOW_TEST_REDIS_URL"

// EnvCluster names the environment variable that points the suites at a
// real Redis Cluster: comma-separated host:port seed addresses, e.g.
// 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103 (cluster.sh start prints
// them). It wins over EnvURL when both are set.
const EnvCluster = "ESIGNFLOW_TEST_REDIS_CLUSTER"

// Redis is one test's Redis: a client and a key prefix of its own, so tests
// of several packages can share one real server or cluster at once.
type Redis struct {
	// Client is a *redis.ClusterClient on the cluster backend and a
	// *redis.Client otherwise.
	Client redis.UniversalClient
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
	switch seeds, url := ClusterAddrs(), os.Getenv(EnvURL); {
	case len(seeds) > 0:
		r.Client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: seeds})
		if err := r.Client.Ping(context.Background()).Err(); err != nil {
			t.Fatalf("%s=%s: %v", EnvCluster, os.Getenv(EnvCluster), err)
		}
	case url != "":
		opt, err := redis.ParseURL(url)
		if err != nil {
			t.Fatalf("%s: %v", EnvURL, err)
		}
		r.Client = redis.NewClient(opt)
		if err := r.Client.Ping(context.Background()).Err(); err != nil {
			t.Fatalf("%s=%s: %v", EnvURL, url, err)
		}
	default:
		r.Mini = miniredis.RunT(t)
		r.Client = redis.NewClient(&redis.Options{Addr: r.Mini.Addr()})
	}
	t.Cleanup(func() {
		r.Flush(t)
		r.Client.Close()
	})
	return r
}

// Real reports whether the tests run against a real server or cluster.
func Real() bool { return Cluster() || os.Getenv(EnvURL) != "" }

// Cluster reports whether the tests run against a real Redis Cluster.
func Cluster() bool { return len(ClusterAddrs()) > 0 }

// ClusterAddrs returns the seed addresses of EnvCluster, nil when it is
// unset.
func ClusterAddrs() []string {
	var out []string
	for _, a := range strings.Split(os.Getenv(EnvCluster), ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Flush deletes every key of this test's prefix, on every master of a
// cluster: what a test uses to simulate Redis losing its data without
// touching other tests' keys. Keys with a hash tag after the prefix
// (esftest:abc:esf:{p3}:env:x) match too, since the prefix stays in front.
func (r *Redis) Flush(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	cc, ok := r.Client.(*redis.ClusterClient)
	if !ok {
		if err := flushNode(ctx, r.Client, r.Prefix); err != nil {
			t.Logf("flush %s: %v", r.Prefix, err)
		}
		return
	}
	// ForEachMaster runs fn on the masters concurrently.
	var mu sync.Mutex
	var errs []error
	err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		if err := flushNode(ctx, n, r.Prefix); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	for _, err := range errs {
		t.Logf("flush %s: %v", r.Prefix, err)
	}
}

// flushNode deletes the keys of prefix that n holds. On a cluster node the
// keys go one DEL each (in one pipeline), since one DEL of keys in several
// slots is refused with CROSSSLOT.
func flushNode(ctx context.Context, n redis.Cmdable, prefix string) error {
	iter := n.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return err
	}
	for len(keys) > 0 {
		k := min(len(keys), 500)
		_, err := n.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, key := range keys[:k] {
				p.Del(ctx, key)
			}
			return nil
		})
		if err != nil {
			return err
		}
		keys = keys[k:]
	}
	return nil
}
