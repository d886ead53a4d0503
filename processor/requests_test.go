package processor_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/store"
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

// A request is (tenant, request id): two tenants' requests with the same
// id are two envelopes, and one identity sent again with other content is
// a conflicting request, dead-lettered with its reason — never merged away
// in silence.
func TestRequestIdentityIsPerTenant(t *testing.T) {
	h := newHarness(t)
	s := startSim(t, sim.Config{Step: time.Hour, Seed: 5})
	c, err := sim.NewClient(sim.ClientConfig{BaseURL: s.URL(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	sr := h.readStatus()
	cfg := h.config("a")
	cfg.Providers = map[string]processor.Creator{"sim": c}
	h.start(cfg)

	acme, globex := signingRequest("po-1"), signingRequest("po-1")
	globex.Tenant = "globex"
	changed := signingRequest("po-1") // acme's po-1 again, with another subject
	changed.Subject = "a different contract"
	h.produce(h.requestRecord(acme), h.requestRecord(globex))
	waitFor(t, 60*time.Second, "an envelope for each tenant's po-1", func() bool { return len(sr.snapshot()) == 2 })
	h.produce(h.requestRecord(changed), h.requestRecord(acme)) // a conflict, then a plain duplicate

	dls := h.readDeadLetters(1, 60*time.Second)
	if !strings.Contains(dls[0].Error, "conflicting request") || !strings.Contains(dls[0].Error, `"po-1"`) || !strings.Contains(dls[0].Error, `"acme"`) {
		t.Fatalf("dead letter: %+v, want a conflicting request naming po-1 and acme", dls[0])
	}
	tenants := map[string]string{}
	for _, ch := range sr.snapshot() {
		if *ch.State.RequestID != "po-1" || ch.State.Tenant == nil {
			t.Fatalf("unexpected change %+v", ch.State)
		}
		if prev, dup := tenants[*ch.State.Tenant]; dup {
			t.Fatalf("tenant %s has two envelopes: %s and %s", *ch.State.Tenant, prev, ch.EnvelopeID)
		}
		tenants[*ch.State.Tenant] = ch.EnvelopeID
	}
	if len(tenants) != 2 || tenants["acme"] == tenants["globex"] {
		t.Fatalf("envelopes by tenant: %v, want two different ones", tenants)
	}
	if n := len(s.Truth()); n != 2 {
		t.Fatalf("%d envelopes at the provider, want 2", n)
	}
}

// readDeadLetters reads n dead letters (read_committed) or fails the test.
func (h *harness) readDeadLetters(n int, d time.Duration) []schemas.DeadLetter {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(h.codec.Topics().DLQ),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var dls []schemas.DeadLetter
	for len(dls) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			h.t.Fatalf("only %d of %d dead letters: %+v", len(dls), n, dls)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var dl schemas.DeadLetter
			if err := h.codec.Decode(ctx, r.Value, &dl); err != nil {
				h.t.Fatal(err)
			}
			dls = append(dls, dl)
		})
	}
	return dls
}

// Redis is a cache of Kafka, and the content hash that tells a conflicting
// request from a duplicate is part of what it caches: after Redis is lost
// and the request index is rebuilt from the changelog, a request with the
// same tenant and id but other content is still dead-lettered as
// conflicting — not counted as a duplicate and dropped, which would leave
// upstream believing its second request was taken — and the same content
// again is still a duplicate, with no second envelope.
func TestConflictingRequestRefusedAfterRedisLoss(t *testing.T) {
	h, s, sr, reg, cfg := newRequestsHarness(t, 6)
	h.start(cfg)

	first := signingRequest("po-7")
	h.produce(h.requestRecord(first))
	waitFor(t, 60*time.Second, "the request's envelope on the status topic", func() bool { return len(sr.snapshot()) == 1 })

	h.redis.Flush(t)
	// The processor finds the loss (its idle check) and restores the
	// partition from the changelog, the request index entry with it.
	key := store.RequestKey{Tenant: first.Tenant, ID: first.RequestID}
	waitFor(t, 60*time.Second, "the request index rebuilt by a restore", func() bool {
		reqs, err := h.store.Requests(context.Background(), []store.RequestKey{key})
		return err == nil && reqs[key].EnvelopeID != ""
	})

	changed := first
	changed.Subject = "a different contract"
	h.produce(h.requestRecord(changed))
	h.waitRequestsConsumed(2, 60*time.Second)
	if got, _ := counter(t, reg, "esignflow_processor_duplicate_requests_total", nil); got != 0 {
		t.Fatalf("the conflicting request was counted as a duplicate (esignflow_processor_duplicate_requests_total = %v), not refused", got)
	}
	dls := h.readDeadLetters(1, 10*time.Second)
	if !strings.Contains(dls[0].Error, "conflicting request") || !strings.Contains(dls[0].Error, `"po-7"`) || !strings.Contains(dls[0].Error, `"acme"`) {
		t.Fatalf("dead letter: %+v, want a conflicting request naming po-7 and acme", dls[0])
	}

	h.produce(h.requestRecord(first)) // the same content again
	h.waitRequestsConsumed(3, 60*time.Second)
	if got, _ := counter(t, reg, "esignflow_processor_duplicate_requests_total", nil); got != 1 {
		t.Fatalf("esignflow_processor_duplicate_requests_total = %v after the same request again, want 1", got)
	}
	if n := len(s.Truth()); n != 1 {
		t.Fatalf("%d envelopes at the provider, want 1", n)
	}
	envs := map[string]bool{}
	for _, ch := range sr.snapshot() {
		envs[ch.EnvelopeID] = true
	}
	if len(envs) != 1 {
		t.Fatalf("status changes of %d envelopes, want 1: %v", len(envs), envs)
	}
}

// TestConflictingRequestInOneBatchIsRefused: two records of one request
// identity in one batch are told apart by their content too: the second
// with other content is dead-lettered as conflicting (it was skipped as
// "the same request twice", silently), and the same content again is a
// duplicate. One envelope in all.
func TestConflictingRequestInOneBatchIsRefused(t *testing.T) {
	h, s, sr, reg, cfg := newRequestsHarness(t, 7)

	first := signingRequest("po-8")
	changed := first
	changed.Subject = "a different contract"
	// Produced together before the processor starts: one record batch,
	// so one fetch and one processing batch.
	h.produce(h.requestRecord(first), h.requestRecord(changed), h.requestRecord(first))
	h.start(cfg)
	h.waitRequestsConsumed(3, 60*time.Second)
	dls := h.readDeadLetters(1, 10*time.Second)
	if !strings.Contains(dls[0].Error, "conflicting request") || !strings.Contains(dls[0].Error, `"po-8"`) {
		t.Fatalf("dead letter: %+v, want a conflicting request naming po-8", dls[0])
	}
	if got, _ := counter(t, reg, "esignflow_processor_duplicate_requests_total", nil); got != 1 {
		t.Fatalf("esignflow_processor_duplicate_requests_total = %v, want 1 (the third record)", got)
	}
	waitFor(t, 60*time.Second, "the request's envelope on the status topic", func() bool { return len(sr.snapshot()) >= 1 })
	if n := len(s.Truth()); n != 1 {
		t.Fatalf("%d envelopes at the provider, want 1", n)
	}
}

// newRequestsHarness is a harness whose processor, configured by cfg (not
// started), creates envelopes at a simulator of seed whose recipients do
// not move, and records its metrics in reg; sr reads the status topic.
func newRequestsHarness(t *testing.T, seed uint64) (*harness, *sim.Simulator, *statusReader, *prometheus.Registry, processor.Config) {
	t.Helper()
	h := newHarness(t)
	s := startSim(t, sim.Config{Step: time.Hour, Seed: seed})
	c, err := sim.NewClient(sim.ClientConfig{BaseURL: s.URL(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	sr := h.readStatus()
	reg := prometheus.NewRegistry()
	cfg := h.config("a")
	cfg.Providers = map[string]processor.Creator{"sim": c}
	cfg.Metrics = reg
	return h, s, sr, reg, cfg
}
