package envelope

import (
	"math/rand/v2"
	"testing"
	"time"
)

// appendMillis must write exactly what the layout it replaces writes.
func TestAppendMillisMatchesFormat(t *testing.T) {
	times := []time.Time{
		{},
		time.Date(2026, 11, 27, 9, 0, 1, 250_999_999, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 999_000_000, time.FixedZone("X", -5*3600)),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10_000 {
		times = append(times, time.Unix(r.Int64N(1<<37)-1<<36, r.Int64N(1e9)).In(time.FixedZone("Z", r.IntN(50_000)-25_000)))
	}
	for _, tm := range times {
		want := tm.UTC().Format("2006-01-02T15:04:05.000Z")
		if got := string(appendMillis([]byte("x"), tm)); got != "x"+want {
			t.Fatalf("%v: got %q, want %q", tm, got, "x"+want)
		}
	}
}
