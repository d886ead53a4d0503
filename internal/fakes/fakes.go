// Package fakes starts the embedded infrastructure that tests and
// benchmarks run esignflow on: a kfake broker with esignflow's topics, and
// an srfake registry with esignflow's schemas.
package fakes

import (
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/esignflow/esignflow/internal/topics"
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
