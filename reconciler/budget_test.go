package reconciler_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/ratebudget"
	"github.com/esignflow/esignflow/reconciler"
)

// A token bucket grants its burst and then its rate: up to Rate + Burst
// calls within one hour. The strictest provider limit esignflow knows is
// 3,000 calls an hour per account, for everything the account does; the
// reconciler's default budget must stay under it with room for creates and
// downloads. (With the first defaults, 3,000 an hour in bursts of 500, an
// idle account's hour granted 3,499 polls alone.) The embedded Redis's
// clock is the bucket's clock, so the hour passes without waiting.
func TestDefaultBudgetLeavesTheAccountRoom(t *testing.T) {
	mr := miniredis.RunT(t)
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	mr.SetTime(t0)
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rc.Close() })
	b, err := ratebudget.New(ratebudget.Config{Client: rc, Key: "budget:acct", Rate: reconciler.DefaultRate / 3600.0, Burst: reconciler.DefaultBurst})
	if err != nil {
		t.Fatal(err)
	}
	granted := 0
	for {
		wait, err := b.Take(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if wait >= time.Hour { // this call falls in the next hour
			break
		}
		granted++
	}
	const accountLimit, room = 3000, 500
	if granted > accountLimit-room {
		t.Fatalf("the default budget grants %d polls within one hour: the account allows %d calls for everything", granted, accountLimit)
	}
	t.Logf("the default budget grants %d polls within one hour", granted)
}
