package sim_test

import (
	"context"
	"fmt"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/provider/sim"
)

// runFaulty creates n one-recipient envelopes (five webhooks each) on a
// simulator with faults and waits until every webhook is accounted for.
func runFaulty(t *testing.T, n int, seed uint64, f sim.Faults) (*sim.Simulator, map[string]int) {
	t.Helper()
	s, rc := start(t, sim.Config{Seed: seed, Faults: f, Step: time.Millisecond})
	c := client(t, s, 2*time.Second)
	for i := range n {
		if _, err := c.Create(context.Background(), fmt.Sprintf("k%d", i), request(fmt.Sprintf("r%d", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	providertest.WaitFor(t, 90*time.Second, "every envelope final and every webhook delivered or dropped", providertest.Settled(s, n))
	_, ids, bad := rc.snapshot()
	if bad != 0 {
		t.Fatalf("%d bad signatures", bad)
	}
	return s, ids
}

func TestFaultRatesWithinTolerance(t *testing.T) {
	const n = 600 // 3000 webhooks
	s, ids := runFaulty(t, n, 11, sim.Faults{Drop: 0.2, Duplicate: 0.1, Delay: 0.3, MaxDelay: 20 * time.Millisecond})
	st := s.Stats()
	if st.Webhooks != 5*n {
		t.Fatalf("webhooks = %d, want %d", st.Webhooks, 5*n)
	}
	check := func(name string, got, of int64, want float64) {
		rate := float64(got) / float64(of)
		// Four standard deviations of a binomial proportion.
		tol := 4 * math.Sqrt(want*(1-want)/float64(of))
		if math.Abs(rate-want) > tol {
			t.Errorf("%s rate %.3f, want %.3f ± %.3f", name, rate, want, tol)
		}
	}
	check("drop", st.Dropped, st.Webhooks, 0.2)
	check("duplicate", st.Duplicated, st.Webhooks-st.Dropped, 0.1)
	check("delay", st.Delayed, st.Webhooks-st.Dropped+st.Duplicated, 0.3)
	twice := 0
	for _, c := range ids {
		if c == 2 {
			twice++
		}
	}
	if int64(len(ids)) != st.Webhooks-st.Dropped || int64(twice) != st.Duplicated {
		t.Fatalf("received %d distinct (%d twice); sim says %d sent, %d dropped, %d duplicated", len(ids), twice, st.Webhooks, st.Dropped, st.Duplicated)
	}
}

func TestSameSeedSameFaults(t *testing.T) {
	f := sim.Faults{Drop: 0.3, Duplicate: 0.2}
	received := func(seed uint64) []string {
		_, ids := runFaulty(t, 60, seed, f)
		var out []string
		for id, c := range ids {
			out = append(out, fmt.Sprintf("%s×%d", id, c))
		}
		sort.Strings(out)
		return out
	}
	a, b, c := received(5), received(5), received(6)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("the same seed gave different faults")
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Fatal("different seeds gave the same faults")
	}
}
