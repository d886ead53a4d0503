package processor_test

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/redis/go-redis/v9"
)

// snapshot is a copy of every key of a test's Redis prefix, by type: what
// Redis restarted from an older RDB or AOF, or a lagging replica promoted,
// holds. (DUMP/RESTORE would do, but miniredis dumps strings only.)
type snapshot struct {
	strings map[string]string
	hashes  map[string]map[string]string
	zsets   map[string][]redis.Z
	lists   map[string][]string
	sets    map[string][]string
}

// keys returns every key under the harness's prefix, on every master of a
// cluster.
func (h *harness) keys(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, h.redis.Prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			out = append(out, iter.Val())
		}
		return iter.Err()
	}
	var err error
	switch c := h.redis.Client.(type) {
	case *redis.ClusterClient:
		var mu = make(chan struct{}, 1)
		err = c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			mu <- struct{}{}
			defer func() { <-mu }()
			return scan(ctx, n)
		})
	case *redis.Client:
		err = scan(ctx, c)
	default:
		t.Fatalf("unexpected client %T", c)
	}
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// snapshot copies the harness's keys.
func (h *harness) snapshot(t *testing.T) *snapshot {
	t.Helper()
	ctx := context.Background()
	c := h.redis.Client
	s := &snapshot{strings: map[string]string{}, hashes: map[string]map[string]string{}, zsets: map[string][]redis.Z{},
		lists: map[string][]string{}, sets: map[string][]string{}}
	for _, k := range h.keys(t) {
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case "string":
			s.strings[k], err = c.Get(ctx, k).Result()
		case "hash":
			s.hashes[k], err = c.HGetAll(ctx, k).Result()
		case "zset":
			s.zsets[k], err = c.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "list":
			s.lists[k], err = c.LRange(ctx, k, 0, -1).Result()
		case "set":
			s.sets[k], err = c.SMembers(ctx, k).Result()
		case "none": // gone meanwhile
		default:
			t.Fatalf("key %s of type %s", k, typ)
		}
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
	}
	return s
}

// putBack replaces the harness's keys with the snapshot's.
func (h *harness) putBack(t *testing.T, s *snapshot) {
	t.Helper()
	ctx := context.Background()
	c := h.redis.Client
	h.redis.Flush(t)
	var err error
	for k, v := range s.strings {
		if err = c.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range s.hashes {
		if err = c.HSet(ctx, k, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range s.zsets {
		if err = c.ZAdd(ctx, k, v...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range s.lists {
		args := make([]any, len(v))
		for i := range v {
			args[i] = v[i]
		}
		if err = c.RPush(ctx, k, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range s.sets {
		args := make([]any, len(v))
		for i := range v {
			args[i] = v[i]
		}
		if err = c.SAdd(ctx, k, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// String describes the snapshot's content, for comparing two.
func (s *snapshot) String() string {
	return fmt.Sprint(s.strings, s.hashes, s.zsets, s.lists, s.sets)
}
