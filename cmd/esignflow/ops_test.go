package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/promread"
	"github.com/esignflow/esignflow/sink"
)

// opsReady serves ops with ready on a free loopback port and returns the
// /readyz and /healthz status codes as functions.
func opsReady(t *testing.T, ready func(context.Context) error) (readyz, healthz func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	stop, err := serveOps(ctx, addr, "metrics-addr", newRegistry(), ready)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); stop() })
	get := func(path string) func() int {
		return func() int {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
	}
	return get("/readyz"), get("/healthz")
}

// The processor and the reconciler are ready while Redis answers, and not
// while it is down; alive all along.
func TestReadyzFollowsRedis(t *testing.T) {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		t.Fatal(err)
	}
	addr := mr.Addr()
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	readyz, healthz := opsReady(t, redisReady(rc))
	if got := readyz(); got != http.StatusOK {
		t.Fatalf("redis up: /readyz %d, want 200", got)
	}
	mr.Close()
	if got := readyz(); got != http.StatusServiceUnavailable {
		t.Fatalf("redis down: /readyz %d, want 503", got)
	}
	if got := healthz(); got != http.StatusOK {
		t.Fatalf("redis down: /healthz %d, want 200 (alive, not ready)", got)
	}
	if err := mr.StartAddr(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mr.Close)
	if got := readyz(); got != http.StatusOK {
		t.Fatalf("redis back: /readyz %d, want 200", got)
	}
}

// The sink's /readyz is what its archive says: a root that is a regular
// file (what a root-owned volume is to a non-root user) is 503.
func TestReadyzFollowsArchive(t *testing.T) {
	root := filepath.Join(t.TempDir(), "archive")
	readyz, _ := opsReady(t, sink.Dir{Root: root}.Check)
	if got := readyz(); got != http.StatusOK {
		t.Fatalf("writable archive: /readyz %d", got)
	}
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := readyz(); got != http.StatusServiceUnavailable {
		t.Fatalf("unwritable archive: /readyz %d, want 503", got)
	}
}

// Every service's registry, the ingress's included, exports build_info.
func TestEveryRegistryHasBuildInfo(t *testing.T) {
	_, found, err := promread.Sum(newRegistry(), "esignflow_build_info", nil)
	if err != nil || !found {
		t.Fatalf("esignflow_build_info not in a service's registry (err %v)", err)
	}
}
