package processor_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/processor"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

func startSim(t *testing.T, cfg sim.Config) *sim.Simulator {
	t.Helper()
	cfg.Logger = quietLogger()
	return fakes.Sim(t, cfg)
}

func (h *harness) requestRecord(req schemas.SigningRequest) *kgo.Record {
	h.t.Helper()
	b, err := h.codec.Encode(&req)
	if err != nil {
		h.t.Fatal(err)
	}
	return &kgo.Record{Topic: h.codec.Topics().Requests, Key: []byte(req.RequestID), Value: b}
}

func signingRequest(id string) schemas.SigningRequest {
	uri := "s3://docs/" + id
	return schemas.SigningRequest{RequestID: id, Tenant: "acme", Provider: "sim", RequestedAt: time.Now(),
		Documents:  []schemas.Document{{Name: "contract.pdf", ContentType: "application/pdf", URI: &uri}},
		Recipients: []schemas.Recipient{{ID: "r1", Name: "Ann", Email: "ann@example.com", RoutingOrder: 1, Auth: schemas.AuthEmail}},
	}
}

// Provider calls time out after acting and fail with 5xx; requests are
// redelivered. Still one envelope per request id, and one CREATED/SENT
// status change each.
func TestIdempotentEnvelopeCreation(t *testing.T) {
	h := newHarness(t)
	s := startSim(t, sim.Config{Step: time.Hour, Faults: sim.Faults{APITimeout: 0.25, APIError: 0.1}, Seed: 4})
	c, err := sim.NewClient(sim.ClientConfig{BaseURL: s.URL(), CallTimeout: 150 * time.Millisecond, BackoffBase: time.Millisecond, BackoffMax: 20 * time.Millisecond, MaxAttempts: 40, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	sr := h.readStatus()
	cfg := h.config("a")
	cfg.Providers = map[string]processor.Creator{"sim": c}
	h.start(cfg)
	const n = 20
	for i := range n {
		h.produce(h.requestRecord(signingRequest(fmt.Sprintf("req-%02d", i))))
	}
	for i := range 5 { // upstream sent these twice
		h.produce(h.requestRecord(signingRequest(fmt.Sprintf("req-%02d", i))))
	}
	bad := signingRequest("req-bad")
	bad.Recipients[0].Email = "not-an-address"
	h.produce(h.requestRecord(bad))

	waitFor(t, 90*time.Second, "a status change for every request", func() bool {
		reqs := map[string]bool{}
		for _, ch := range sr.snapshot() {
			if ch.State.RequestID != nil {
				reqs[*ch.State.RequestID] = true
			}
		}
		return len(reqs) == n+1
	})
	if st := s.Stats(); st.APITimeouts == 0 {
		t.Fatalf("no timeout injected: %+v", st)
	}
	// The refused request left a draft envelope (created, never
	// configured), as a real provider would.
	truth := s.Truth()
	if len(truth) != n+1 {
		t.Fatalf("%d envelopes at the provider for %d requests and one refused", len(truth), n)
	}
	byReq := map[string]string{}
	for _, tr := range truth {
		if prev, dup := byReq[tr.RequestID]; dup {
			t.Fatalf("request %s has two envelopes: %s and %s", tr.RequestID, prev, tr.ID)
		}
		byReq[tr.RequestID] = tr.ID
	}
	perEnvelope := map[string]int{}
	for _, ch := range sr.snapshot() {
		perEnvelope[ch.EnvelopeID]++
		rid := *ch.State.RequestID
		switch {
		case rid == "req-bad":
			if ch.Status != schemas.StatusFailed || ch.State.Reason == nil || !strings.Contains(*ch.State.Reason, "email") {
				t.Errorf("refused request: %s %v", ch.Status, ch.State.Reason)
			}
		case byReq[rid] != ch.EnvelopeID:
			t.Errorf("status for %s names envelope %s, provider has %s", rid, ch.EnvelopeID, byReq[rid])
		case ch.Status != schemas.StatusSent || ch.Version != 1:
			t.Errorf("%s: v%d %s, want v1 SENT", ch.EnvelopeID, ch.Version, ch.Status)
		}
	}
	for id, k := range perEnvelope {
		if k != 1 {
			t.Errorf("%s: %d status changes, want 1", id, k)
		}
	}
}
