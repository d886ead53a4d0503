package reconciler_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/docusign"
	"github.com/esignflow/esignflow/provider/docusign/docusignfake"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/reconciler"
	"github.com/esignflow/esignflow/schemas"
)

// statusReads is an http.RoundTripper that records, per envelope, when the
// DocuSign client read its status on the wire: GET envelopes/{id} (and its
// recipients), and each id of a listStatusChanges by envelope_ids. The
// dialect's PollInterval limits only the former; this sees both.
type statusReads struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func (s *statusReads) RoundTrip(req *http.Request) (*http.Response, error) {
	var ids []string
	if req.Method == http.MethodGet {
		path := req.URL.Path
		if i := strings.Index(path, "/envelopes"); i >= 0 {
			rest := strings.Trim(path[i+len("/envelopes"):], "/")
			switch parts := strings.Split(rest, "/"); {
			case rest == "":
				if q := req.URL.Query().Get("envelope_ids"); q != "" {
					ids = strings.Split(q, ",")
				}
			case len(parts) == 1 || len(parts) == 2 && parts[1] == "recipients":
				ids = parts[:1]
			}
		}
	}
	now := time.Now()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if len(ids) > 0 {
		s.mu.Lock()
		for _, id := range ids {
			s.at[id] = append(s.at[id], now)
		}
		s.mu.Unlock()
	}
	return resp, err
}

// fewest returns the fewest reads of any of ids.
func (s *statusReads) fewest(ids []string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := -1
	for _, id := range ids {
		if k := len(s.at[id]); n < 0 || k < n {
			n = k
		}
	}
	return n
}

// getOnly hides the client's GetMany: the reconciler then polls each
// envelope with GET envelopes/{id}, the read the dialect's PollInterval
// limits.
type getOnly struct{ c *docusign.Client }

func (g getOnly) Get(ctx context.Context, id string) (provider.Envelope, error) {
	return g.c.Get(ctx, id)
}

// startDocuSign runs a simulator speaking DocuSign with the given
// per-envelope polling interval, whose recipients never act, and returns
// it with a client whose status reads are recorded.
func startDocuSign(t *testing.T, pollInterval time.Duration) (*docusignfake.Dialect, *docusign.Client, *statusReads) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	d, err := docusignfake.New(docusignfake.Config{PublicKey: &key.PublicKey, PollInterval: pollInterval})
	if err != nil {
		t.Fatal(err)
	}
	s := fakes.Sim(t, sim.Config{Addr: "127.0.0.1:0", Dialect: d, Step: time.Hour, Logger: quiet()})
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "docusign.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	reads := &statusReads{at: map[string][]time.Time{}}
	c, err := docusign.New(docusign.Config{
		AccountID: docusignfake.DefaultAccountID, IntegrationKey: docusignfake.DefaultIntegrationKey,
		UserID: docusignfake.DefaultUserID, PrivateKeyFile: path, AuthURL: s.URL(),
		HTTP: &http.Client{Transport: reads}, CallTimeout: 2 * time.Second,
		BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return d, c, reads
}

// TestDocuSignPollIntervalHolds: a reconciler scanning every 20ms, whose
// minimum poll interval for DocuSign is the dialect's PollInterval, reads
// each stale envelope's status at most once per interval over a run of
// several intervals — batched (GetMany, listStatusChanges by
// envelope_ids) or one by one (GET envelopes/{id}) — and the dialect never
// answers its per-envelope polling limit.
func TestDocuSignPollIntervalHolds(t *testing.T) {
	const (
		interval = 300 * time.Millisecond
		polls    = 4 // reads of every envelope the run waits for
		n        = 8
	)
	// The reconciler leases an envelope before it polls it, so the
	// provider would see two reads as far apart as the lease, give or take
	// the two calls' jitter (seen: 291ms for a 300ms lease, refused by the
	// dialect): the lease is longer than the interval by a margin
	// (reconciler's leaseFor), and the reads are held to the whole
	// interval.
	for _, tc := range []struct {
		name  string
		batch bool
	}{{"GetMany", true}, {"Get", false}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d, c, reads := startDocuSign(t, interval)
			var ids []string
			for i := range n {
				req := docusignRequest(fmt.Sprintf("req-%02d", i))
				env, err := c.Create(ctx, req.RequestID, req)
				if err != nil {
					t.Fatalf("create %s: %v", req.RequestID, err)
				}
				ids = append(ids, env.ID)
			}
			st := seededStore(t, ids)
			k, codec := fakes.T(t, 1)
			var p reconciler.Poller = c
			if !tc.batch {
				p = getOnly{c}
			}
			r, err := reconciler.New(reconciler.Config{Brokers: k.Brokers, Codec: codec, Store: st,
				Pollers:    map[string]reconciler.Poller{"docusign": p},
				StaleAfter: time.Millisecond, Interval: 20 * time.Millisecond,
				MinPollInterval: time.Hour, PollIntervals: map[string]time.Duration{"docusign": interval},
				Rate: 360000, Burst: 100, InFlightEvery: -1, Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- r.Run(runCtx) }()
			// Until every envelope was read polls times, or the dialect
			// refused one (a refused envelope is backed off by the client
			// and would not be read again for a while).
			deadline := time.Now().Add(30 * time.Second)
			for reads.fewest(ids) < polls && d.Stats().PollingLimited == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := reads.fewest(ids); got < polls && d.Stats().PollingLimited == 0 {
				t.Errorf("after 30s the least polled envelope was read %d times, want %d", got, polls)
			}
			if got := d.Stats().PollingLimited; got != 0 {
				t.Errorf("the dialect answered its per-envelope polling limit %d times", got)
			}
			reads.mu.Lock()
			defer reads.mu.Unlock()
			least := time.Duration(-1)
			defer func() { t.Logf("closest two reads of one envelope: %s apart", least) }()
			for _, id := range ids {
				at := reads.at[id]
				if len(at) < 2 {
					t.Errorf("%s read %d times, want several", id, len(at))
				}
				for i := 1; i < len(at); i++ {
					gap := at[i].Sub(at[i-1])
					if least < 0 || gap < least {
						least = gap
					}
					if gap < interval {
						t.Errorf("%s read twice %s apart, within the %s interval (reads %d and %d of %d)", id, gap, interval, i, i+1, len(at))
					}
				}
			}
		})
	}
}

// seededStore returns a store holding ids as sent DocuSign envelopes last
// updated an hour ago, on a Redis whose clock (embedded) follows the wall
// clock so that poll leases expire.
func seededStore(t *testing.T, ids []string) *store.Store {
	t.Helper()
	rt := redistest.New(t)
	followWallClock(t, rt)
	st, err := store.New(store.Config{Client: rt.Client, Prefix: rt.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	sent := schemas.StatusSent
	var envs []envelope.Envelope
	for i, id := range ids {
		envs = append(envs, envelope.Envelope{State: schemas.EnvelopeState{EnvelopeID: id, Provider: "docusign", Status: &sent,
			Version: int64(i + 1), AuditSeq: int64(i + 1), UpdatedAt: time.Now().Add(-time.Hour), Recipients: []schemas.RecipientState{}}})
	}
	if err := st.Seed(context.Background(), 0, envs...); err != nil {
		t.Fatal(err)
	}
	return st
}

// followWallClock makes an embedded Redis age its keys as the wall clock
// moves (it ages them only when told), so that poll leases expire as they
// do on a real server; on a real server it does nothing. The clock stops
// following when the test ends.
func followWallClock(t *testing.T, rt *redistest.Redis) {
	t.Helper()
	if rt.Mini == nil {
		return
	}
	tick := time.NewTicker(2 * time.Millisecond)
	quit := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		last := time.Now()
		for {
			select {
			case <-quit:
				return
			case now := <-tick.C:
				rt.Mini.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	t.Cleanup(func() { tick.Stop(); close(quit); <-stopped })
}

func docusignRequest(id string) schemas.SigningRequest {
	return schemas.SigningRequest{RequestID: id, Tenant: "acme", Provider: "docusign", Subject: "Please sign", RequestedAt: time.Now(),
		Documents:  []schemas.Document{{Name: "nda.pdf", ContentType: "application/pdf", Content: []byte("%PDF-1.7 nda")}},
		Recipients: []schemas.Recipient{{ID: "r1", Name: "Ann Signer", Email: "ann@example.com", Role: "signer", RoutingOrder: 1, Auth: schemas.AuthEmail}},
		Metadata:   map[string]string{}}
}
