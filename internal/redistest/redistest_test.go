package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/redistest"
)

// backend names the backend the tests run on, for their logs.
func backend() string {
	switch {
	case redistest.Cluster():
		return "cluster"
	case redistest.Real():
		return "server"
	default:
		return "miniredis"
	}
}

// A WATCH/MULTI/EXEC over two keys with the same hash tag commits both, on
// every backend: the store's per-partition batch, in small.
func TestSameHashTagTransaction(t *testing.T) {
	ctx := context.Background()
	r := redistest.New(t)
	t.Logf("backend: %s", backend())
	env, ckpt := r.Prefix+"esf:{p3}:env:x", r.Prefix+"esf:{p3}:ckpt"
	err := r.Client.Watch(ctx, func(tx *redis.Tx) error {
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, env, "state", 0)
			p.Set(ctx, ckpt, "41", 0)
			return nil
		})
		return err
	}, env, ckpt)
	if err != nil {
		t.Fatalf("watch/multi/exec over %s and %s: %v", env, ckpt, err)
	}
	for key, want := range map[string]string{env: "state", ckpt: "41"} {
		if got, err := r.Client.Get(ctx, key).Result(); err != nil || got != want {
			t.Errorf("GET %s = %q, %v; want %q", key, got, err, want)
		}
	}
}

// On the cluster backend, one MULTI over keys of two slots is refused: by
// the server with CROSSSLOT when both slots are on the node that gets it,
// and by go-redis's cluster client before anything is sent. This is what
// shows the harness is a real cluster and not one server.
func TestCrossSlotTransactionRefused(t *testing.T) {
	if !redistest.Cluster() {
		t.Skipf("needs a Redis Cluster (%s)", redistest.EnvCluster)
	}
	ctx := context.Background()
	r := redistest.New(t)
	cc := r.Client.(*redis.ClusterClient)
	a := r.Prefix + "esf:{p0}:ckpt"
	node, err := cc.MasterForKey(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	// A key of another slot that the same master serves, so the server
	// answers CROSSSLOT rather than redirecting with MOVED.
	var b string
	for i := 1; b == "" && i < 1000; i++ {
		k := fmt.Sprintf("%sesf:{p%d}:ckpt", r.Prefix, i)
		n, err := cc.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if n.Options().Addr == node.Options().Addr && cc.ClusterKeySlot(ctx, k).Val() != cc.ClusterKeySlot(ctx, a).Val() {
			b = k
		}
	}
	if b == "" {
		t.Fatalf("no key of another slot on %s", node.Options().Addr)
	}

	// node is a plain client of one master: no slot logic of its own, so
	// the refusal is the server's.
	_, err = node.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, a, "1", 0)
		p.Set(ctx, b, "2", 0)
		return nil
	})
	if !errors.Is(err, redis.ErrCrossSlot) {
		t.Errorf("MULTI SET %s SET %s EXEC on %s: %v, want CROSSSLOT", a, b, node.Options().Addr, err)
	} else {
		t.Logf("%s answered: %v", node.Options().Addr, err)
	}
	for _, k := range []string{a, b} {
		if n := cc.Exists(ctx, k).Val(); n != 0 {
			t.Errorf("%s exists after a refused transaction", k)
		}
	}

	_, err = cc.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, a, "1", 0)
		p.Set(ctx, b, "2", 0)
		return nil
	})
	if !errors.Is(err, redis.ErrCrossSlot) {
		t.Errorf("cluster client MULTI over two slots: %v, want CROSSSLOT", err)
	}
}

// Flush deletes the test's keys wherever they live, hash tag and all, and
// leaves other prefixes alone.
func TestFlush(t *testing.T) {
	ctx := context.Background()
	r := redistest.New(t)
	other := redistest.New(t)
	var keys []string
	for p := range 32 { // 32 partitions: on a cluster, keys on every master
		keys = append(keys, fmt.Sprintf("%sesf:{p%d}:env:x", r.Prefix, p))
	}
	keys = append(keys, r.Prefix+"req:acme:r1")
	keep := other.Prefix + "esf:{p1}:env:x"
	for _, k := range append(keys, keep) {
		if err := r.Client.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	r.Flush(t)
	for _, k := range keys {
		if n := r.Client.Exists(ctx, k).Val(); n != 0 {
			t.Errorf("%s exists after Flush", k)
		}
	}
	if n := r.Client.Exists(ctx, keep).Val(); n != 1 {
		t.Errorf("%s of another prefix is gone after Flush", keep)
	}
}
