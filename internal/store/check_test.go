package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/processor"
	"github.com/esignflow/esignflow/reconciler"
)

// redisServer starts a redis-server of the test's own on a free loopback
// port, with args after esignflow's, and returns its address; the server
// is stopped (by its pid) when t ends. It skips t when redis-server is not
// on PATH. Tests that change a server's configuration use one of these,
// never the shared ESIGNFLOW_TEST_REDIS_URL server.
func redisServer(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not on PATH: the start-up checks need a real server (CI installs it)")
	}
	for attempt := 0; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		l.Close()
		addr := net.JoinHostPort("127.0.0.1", port)
		var out bytes.Buffer
		cmd := exec.Command(bin, append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		if up(addr, exited) {
			return addr
		}
		select {
		case <-exited:
			if attempt < 2 { // most likely the port was taken meanwhile
				continue
			}
		default:
		}
		t.Fatalf("redis-server %s did not answer PING within 10s:\n%s", strings.Join(args, " "), out.String())
	}
}

// up waits, at most 10s, until the server at addr answers PING; false if
// it does not or its process exited.
func up(addr string, exited <-chan struct{}) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c.Ping(context.Background()).Err() == nil {
			return true
		}
		select {
		case <-exited:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func client(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestEvictionPolicyRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want error    // nil: accepted
		msg  []string // in the message
	}{
		{"allkeys-lru", []string{"--maxmemory-policy", "allkeys-lru"}, store.ErrEvictionPolicy,
			[]string{"maxmemory-policy is allkeys-lru: esignflow needs noeviction (an evicted key cannot be detected)", "CONFIG SET maxmemory-policy noeviction"}},
		{"volatile-lru", []string{"--maxmemory-policy", "volatile-lru"}, store.ErrEvictionPolicy,
			[]string{"maxmemory-policy is volatile-lru"}},
		// Managed Redis: CONFIG disabled, the policy read from INFO memory.
		{"allkeys-lfu without CONFIG", []string{"--maxmemory-policy", "allkeys-lfu", "--rename-command", "CONFIG", ""}, store.ErrEvictionPolicy,
			[]string{"maxmemory-policy is allkeys-lfu", "CONFIG is not available here"}},
		{"noeviction", []string{"--maxmemory-policy", "noeviction"}, nil, nil},
		{"noeviction without CONFIG", []string{"--maxmemory-policy", "noeviction", "--rename-command", "CONFIG", ""}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := redisServer(t, tc.args...)
			err := store.CheckServer(context.Background(), client(t, addr))
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err == nil {
				return
			}
			if errors.Is(err, store.ErrUnverified) || errors.Is(err, store.ErrReadOnlyReplica) {
				t.Errorf("got %v: a refusal for the policy only", err)
			}
			for _, m := range append(tc.msg, "redis "+addr+": ") {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("got %q, want it to contain %q", err, m)
				}
			}
		})
	}
}

func TestReadOnlyReplicaRefused(t *testing.T) {
	primary := redisServer(t)
	for _, tc := range []struct {
		name string
		args []string
		want error
		msg  []string
	}{
		{"read-only replica", []string{"--replicaof", "127.0.0.1", portOf(primary)}, store.ErrReadOnlyReplica,
			[]string{"role is replica of " + primary + " with replica-read-only yes", "point the Redis URL at the primary " + primary}},
		{"read-only replica without CONFIG", []string{"--replicaof", "127.0.0.1", portOf(primary), "--rename-command", "CONFIG", ""}, store.ErrReadOnlyReplica,
			[]string{"with replica-read-only yes"}}, // from INFO's slave_read_only
		// DESIGN.md refuses read-only replicas; a writable one takes writes.
		{"writable replica", []string{"--replicaof", "127.0.0.1", portOf(primary), "--replica-read-only", "no"}, nil, nil},
		{"primary", nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := primary
			if tc.args != nil {
				addr = redisServer(t, tc.args...)
			}
			err := store.CheckServer(context.Background(), client(t, addr))
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("got %q, want it to contain %q", err, m)
				}
			}
		})
	}
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// TestUnverifiedServerIsNotRefused: a server that answers neither CONFIG
// nor the INFO sections (miniredis; managed Redis that hides both) is not
// refused, only reported.
func TestUnverifiedServerIsNotRefused(t *testing.T) {
	m := miniredis.RunT(t)
	err := store.CheckServer(context.Background(), client(t, m.Addr()))
	if !errors.Is(err, store.ErrUnverified) {
		t.Fatalf("got %v, want %v", err, store.ErrUnverified)
	}
	if errors.Is(err, store.ErrEvictionPolicy) || errors.Is(err, store.ErrReadOnlyReplica) {
		t.Fatalf("got %v: refused", err)
	}
	var se *store.ServerError
	if !errors.As(err, &se) || se.Addr != m.Addr() {
		t.Fatalf("got %v, want a *store.ServerError for %s", err, m.Addr())
	}
	for _, s := range []string{"maxmemory-policy", "role"} {
		if !strings.Contains(err.Error(), "could not read "+s) {
			t.Errorf("got %q, want it to name %s", err, s)
		}
	}
}

// TestCheckServerReportsUnreachable: a server that cannot be reached is an
// error of its own, neither a refusal nor "unverified".
func TestCheckServerReportsUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	err = store.CheckServer(context.Background(), c)
	if err == nil || errors.Is(err, store.ErrUnverified) || errors.Is(err, store.ErrEvictionPolicy) || errors.Is(err, store.ErrReadOnlyReplica) {
		t.Fatalf("got %v, want a connection error", err)
	}
}

// TestServicesRefuseEvictingRedis: the processor and the reconciler do not
// start on a Redis that may evict keys; Run returns the refusal before it
// touches Kafka.
func TestServicesRefuseEvictingRedis(t *testing.T) {
	addr := redisServer(t, "--maxmemory-policy", "allkeys-lru")
	st, err := store.New(store.Config{Client: client(t, addr)})
	if err != nil {
		t.Fatal(err)
	}
	k, codec := fakes.T(t, 4)
	for _, tc := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"processor", func(ctx context.Context) error {
			p, err := processor.New(processor.Config{Brokers: k.Brokers, Codec: codec, Store: st, Group: k.Group("esignflow-processor"),
				Providers: map[string]processor.Creator{"sim": nil}, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			return p.Run(ctx)
		}},
		{"reconciler", func(ctx context.Context) error {
			r, err := reconciler.New(reconciler.Config{Brokers: k.Brokers, Codec: codec, Store: st,
				Pollers: map[string]reconciler.Poller{"sim": nil}, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			return r.Run(ctx)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := tc.run(ctx)
			if !errors.Is(err, store.ErrEvictionPolicy) {
				t.Fatalf("Run: got %v, want %v", err, store.ErrEvictionPolicy)
			}
			if ctx.Err() != nil {
				t.Fatal("Run returned only when its context ended")
			}
		})
	}
}

// TestEvictionPolicyRefusedOnCluster: through a cluster client every node
// is checked, and the one that may evict keys is named.
func TestEvictionPolicyRefusedOnCluster(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli is not on PATH: it creates the cluster")
	}
	var addrs []string
	for i, policy := range []string{"noeviction", "noeviction", "allkeys-lru"} {
		addrs = append(addrs, redisServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes-"+strconv.Itoa(i)+".conf", "--maxmemory-policy", policy))
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.ClusterInfo(context.Background()).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ok within 10s: %v %s", err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	err = store.CheckServer(context.Background(), c)
	if !errors.Is(err, store.ErrEvictionPolicy) {
		t.Fatalf("got %v, want %v", err, store.ErrEvictionPolicy)
	}
	var se *store.ServerError
	if !errors.As(err, &se) || se.Addr != addrs[2] {
		t.Errorf("got %v, want the refusal to name %s", err, addrs[2])
	}
	if strings.Contains(err.Error(), addrs[0]) || strings.Contains(err.Error(), addrs[1]) {
		t.Errorf("got %v, want only %s named", err, addrs[2])
	}
}
