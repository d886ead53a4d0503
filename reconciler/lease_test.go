package reconciler_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/reconciler"
	"github.com/esignflow/esignflow/schemas"
)

// leaseReader is a provider that notes, at every read, how long the
// envelope's lease has left.
type leaseReader struct {
	*fakeProvider
	env budgetEnv
	mu  sync.Mutex
	ttl map[string]time.Duration // the least seen per envelope
}

func (l *leaseReader) Get(ctx context.Context, id string) (provider.Envelope, error) {
	ttl, err := l.env.st.Client().PTTL(ctx, l.env.st.Key("lease:"+id)).Result()
	if err != nil {
		return provider.Envelope{}, err
	}
	l.mu.Lock()
	if old, ok := l.ttl[id]; !ok || ttl < old {
		l.ttl[id] = ttl
	}
	l.mu.Unlock()
	return l.fakeProvider.Get(ctx, id)
}

// A scan leases its envelopes when it begins, and then waits for the
// account's budget before each call: a scan may outlast its leases (1,000
// envelopes polled one by one at 3,000 an hour take 20 minutes, a DocuSign
// lease lasts 15). The scan renews its leases before they run short of a
// whole interval, so at every read the envelope is leased for one: no other
// replica reads it meanwhile, and the next read is an interval away. With
// leases taken only at the scan's start, the later envelopes were read
// with less than an interval of their leases left.
func TestSlowScanRenewsLeases(t *testing.T) {
	// All eight fit one scan (the budget pays for 1 + 10/s × 2.1s within
	// a lease), whose reads take 0.7s: without the renewal the last is
	// read with 1.4s of its lease left, less than the interval. (An
	// interval shorter than a scan's reads would have the first envelopes
	// polled again before the last: in production each poll moves its
	// envelope to the back of the index, through the processor, which this
	// test does not run.)
	const n, perSecond, interval = 8, 10.0, 2 * time.Second
	env := budgetStore(t, n, time.Now().Add(-time.Hour), time.Millisecond)
	p := &leaseReader{env: env, ttl: map[string]time.Duration{},
		fakeProvider: newFake(func(string, int) (schemas.Status, bool) { return schemas.StatusSent, true })}
	r, err := reconciler.New(reconciler.Config{Brokers: env.brokers, Codec: env.codec, Store: env.st, Pollers: map[string]reconciler.Poller{"sim": p},
		StaleAfter: time.Millisecond, Interval: 20 * time.Millisecond, MinPollInterval: interval, Rate: perSecond * 3600, Burst: 1,
		InFlightEvery: -1, InstanceID: "a", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	followWallClock(t, env.rt)
	runReplicas(t, r)
	eventually(t, func() bool { k, _ := p.polled(); return k == n }, func() string {
		k, _ := p.polled()
		return fmt.Sprintf("%d of %d envelopes read", k, n)
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ttl) != n {
		t.Fatalf("%d of %d envelopes read", len(p.ttl), n)
	}
	for i := range n {
		id := fmt.Sprintf("env-%03d", i)
		if ttl := p.ttl[id]; ttl < interval {
			t.Errorf("%s read with its lease at %v, less than the poll interval %v", id, ttl, interval)
		}
	}
}
