package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// TestRedisCopyPutBack takes a copy of a database holding every type the
// stack writes (with and without a time to live), changes the database,
// puts the copy back and finds the database as it was copied, on
// miniredis and on the real Redis of ESIGNFLOW_TEST_REDIS_URL (database
// 15 of it, flushed).
func TestRedisCopyPutBack(t *testing.T) {
	servers := map[string]func(t *testing.T) *redis.Client{"miniredis": func(t *testing.T) *redis.Client {
		m := miniredis.RunT(t)
		return redis.NewClient(&redis.Options{Addr: m.Addr()})
	}}
	if url := os.Getenv("ESIGNFLOW_TEST_REDIS_URL"); url != "" {
		servers["redis"] = func(t *testing.T) *redis.Client {
			opt, err := redis.ParseURL(url)
			if err != nil {
				t.Fatal(err)
			}
			opt.DB = 15
			return redis.NewClient(opt)
		}
	}
	for name, newClient := range servers {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			rc := newClient(t)
			t.Cleanup(func() { rc.FlushDB(ctx); rc.Close() })
			rc.FlushDB(ctx)
			bin := string([]byte{0, 1, 2, 255, 'x'})
			rc.Set(ctx, "s", bin, 0)
			rc.Set(ctx, "ttl", "v", time.Hour)
			rc.HSet(ctx, "h", "a", "1", "b", bin)
			members := make([]redis.Z, 2500) // more than one chunk
			for i := range members {
				members[i] = redis.Z{Score: float64(i) + 0.5, Member: fmt.Sprintf("m%d", i)}
			}
			rc.ZAdd(ctx, "z", members...)
			rc.RPush(ctx, "l", "x", "y", "x")
			rc.SAdd(ctx, "set", "p", "q")
			before := dumpDB(t, rc)
			c, err := copyRedis(ctx, rc)
			if err != nil {
				t.Fatal(err)
			}
			if c.keys != 6 {
				t.Fatalf("copied %d keys, want 6", c.keys)
			}
			rc.Set(ctx, "s", "later", 0)
			rc.Set(ctx, "new", "later", 0)
			rc.Del(ctx, "h")
			rc.ZAdd(ctx, "z", redis.Z{Score: 9, Member: "late"})
			rc.RPush(ctx, "l", "z")
			if err := c.putBack(ctx, rc); err != nil {
				t.Fatal(err)
			}
			if got := dumpDB(t, rc); got != before {
				t.Fatalf("after the put-back:\n%s\nwant\n%s", got, before)
			}
			if ttl := rc.PTTL(ctx, "ttl").Val(); ttl <= 0 || ttl > time.Hour {
				t.Fatalf("ttl's time to live %s after the put-back, want under an hour", ttl)
			}
			if ttl := rc.PTTL(ctx, "s").Val(); ttl >= 0 {
				t.Fatalf("s's time to live %s after the put-back, want none", ttl)
			}
		})
	}
}

// dumpDB prints the test's keys. A set's members are sorted: SMEMBERS
// answers in the order of the server's hash table, whose seed is chosen
// at start, so the same members added in another order (as the put-back
// adds them) can come back in another order.
func dumpDB(t *testing.T, rc *redis.Client) string {
	t.Helper()
	ctx := context.Background()
	members := rc.SMembers(ctx, "set").Val()
	slices.Sort(members)
	return fmt.Sprint(rc.Get(ctx, "s").Val(), rc.Get(ctx, "ttl").Val(), rc.Exists(ctx, "new").Val(), rc.HGetAll(ctx, "h").Val(),
		rc.ZRangeWithScores(ctx, "z", 0, -1).Val(), rc.LRange(ctx, "l", 0, -1).Val(), members)
}
