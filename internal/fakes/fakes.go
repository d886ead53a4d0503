// Package fakes starts the embedded infrastructure that tests and
// benchmarks run esignflow on: a kfake broker with esignflow's topics, an
// srfake registry with esignflow's schemas, and the provider simulator.
package fakes

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

// Cluster starts a one-broker kfake cluster with esignflow's topics, each
// with partitions partitions. The caller closes it.
func Cluster(ctx context.Context, partitions int32) (*kfake.Cluster, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, err
	}
	admin, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		c.Close()
		return nil, err
	}
	defer admin.Close()
	if err := topics.Ensure(ctx, admin, topics.Config{Partitions: partitions}); err != nil {
		c.Close()
		return nil, fmt.Errorf("fakes: %w", err)
	}
	return c, nil
}

// Registry starts an srfake registry and returns the codec registered on
// it. The caller closes the registry.
func Registry(ctx context.Context) (*srfake.Registry, *schemas.Codec, error) {
	reg := srfake.New()
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		reg.Close()
		return nil, nil, err
	}
	codec, err := schemas.NewCodec(ctx, cl)
	if err != nil {
		reg.Close()
		return nil, nil, err
	}
	return reg, codec, nil
}

// T starts both for a test, closing them when it ends, and returns the
// cluster and the codec.
func T(t testing.TB, partitions int32) (*kfake.Cluster, *schemas.Codec) {
	t.Helper()
	c, err := Cluster(context.Background(), partitions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	reg, codec, err := Registry(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return c, codec
}

// Sim starts a simulator for a test (on 127.0.0.1 at a free port unless
// cfg.Addr says otherwise) and stops it when the test ends; the test fails
// if it does not start or Run ends with an error.
func Sim(t testing.TB, cfg sim.Config) *sim.Simulator {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	Start(t, s)
	return s
}

// Runner is a long-running component that says when it is ready.
type Runner interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// Start runs r for a test until the test ends, and returns once r is
// ready. The test fails if r does not get ready within a minute, or if
// Run ends with an error.
func Start(t testing.TB, r Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%T.Run: %v", r, err)
		}
	})
	select {
	case <-r.Ready():
	case err := <-done:
		t.Fatalf("%T did not start: %v", r, err)
	case <-time.After(time.Minute):
		t.Fatalf("%T did not start in a minute", r)
	}
}
