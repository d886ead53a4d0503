// Package providertest helps the tests of the provider clients and of
// their fakes: a transport that records the calls a client makes, a
// reader of every page of a listing, and waits on the simulator. It is
// imported by tests only; the clients' and fakes' tests share it instead
// of each keeping a copy.
package providertest

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/sim"
)

// Sent is one HTTP request a client made, and how it ended.
type Sent struct {
	At     time.Time
	Method string
	Path   string
	Err    error // the transport's error, nil when an answer came
}

// Recorder is an http.RoundTripper that sends every request with
// http.DefaultTransport and records it. Its zero value is ready; it is
// safe for concurrent use.
type Recorder struct {
	mu   sync.Mutex
	reqs []Sent
}

// RoundTrip sends req and records it.
func (r *Recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	r.mu.Lock()
	r.reqs = append(r.reqs, Sent{At: time.Now(), Method: req.Method, Path: req.URL.Path, Err: err})
	r.mu.Unlock()
	return resp, err
}

// All returns a copy of the requests recorded so far, in order.
func (r *Recorder) All() []Sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Sent(nil), r.reqs...)
}

// Lister is the part of a provider.Provider ListAll reads.
type Lister interface {
	ChangedSince(ctx context.Context, since time.Time, cursor string) ([]provider.Envelope, string, error)
}

// ListAll reads every page of p.ChangedSince(since), failing t on an
// error, and returns the envelope ids seen and the number of pages.
func ListAll(t testing.TB, p Lister, since time.Time) (map[string]bool, int) {
	t.Helper()
	seen := map[string]bool{}
	pages := 0
	for cursor := ""; ; {
		page, next, err := p.ChangedSince(context.Background(), since, cursor)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range page {
			seen[e.ID] = true
		}
		if next == "" {
			return seen, pages
		}
		cursor = next
	}
}

// WaitFor polls cond until it holds, failing t once d has passed: for
// what the simulator does on its own clock, which signals nothing.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// AllFinal holds once the simulator has at least n envelopes, every one
// final.
func AllFinal(s *sim.Simulator, n int) func() bool {
	return func() bool {
		tr := s.Truth()
		if len(tr) < n {
			return false
		}
		for _, e := range tr {
			if !e.Final {
				return false
			}
		}
		return true
	}
}

// Settled holds once AllFinal(s, n) does and every webhook sent so far is
// accounted for: delivered, or dropped by a fault.
func Settled(s *sim.Simulator, n int) func() bool {
	final := AllFinal(s, n)
	return func() bool {
		if !final() {
			return false
		}
		st := s.Stats()
		return st.Delivered == st.Webhooks-st.Dropped+st.Duplicated
	}
}
