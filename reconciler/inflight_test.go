package reconciler_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/reconciler"
	"github.com/esignflow/esignflow/schemas"
)

// The envelopes in flight are counted by status from the store; terminal
// ones are not in flight, and a status that empties reads 0.
func TestCountInFlightByStatus(t *testing.T) {
	ctx := context.Background()
	rt := redistest.New(t)
	rc := rt.Client
	st, err := store.New(store.Config{Client: rc, Prefix: rt.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	sr, codec, err := fakes.Registry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sr.Close)
	reg := prometheus.NewRegistry()
	r, err := reconciler.New(reconciler.Config{Brokers: []string{"127.0.0.1:1"}, Codec: codec, Store: st,
		Pollers: map[string]reconciler.Poller{"sim": nil}, Metrics: reg, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	seq := int64(0)
	partOf := map[string]int32{} // spread over three partitions
	put := func(id string, s schemas.Status) {
		t.Helper()
		seq++
		if _, ok := partOf[id]; !ok {
			partOf[id] = int32(len(partOf) % 3)
		}
		if err := st.Seed(ctx, partOf[id], envelope.Envelope{State: schemas.EnvelopeState{EnvelopeID: id, Provider: "sim", Status: &s, Version: seq, AuditSeq: seq,
			UpdatedAt: time.Now(), Recipients: []schemas.RecipientState{}}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		put(fmt.Sprintf("sent-%d", i), schemas.StatusSent)
	}
	put("viewed", schemas.StatusViewed)
	put("done", schemas.StatusCompleted)
	if err := r.CountInFlight(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"CREATED": 0, "SENT": 3, "DELIVERED": 0, "VIEWED": 1, "PARTIALLY_SIGNED": 0, "UNKNOWN": 0}
	check := func() {
		t.Helper()
		got := inFlight(t, reg)
		for s, n := range want {
			if v, ok := got[s]; !ok || v != n {
				t.Errorf("esignflow_envelopes_in_flight{status=%s} = %v (exported %v), want %v", s, v, ok, n)
			}
		}
		for s := range got {
			if _, ok := want[s]; !ok {
				t.Errorf("esignflow_envelopes_in_flight{status=%s} exported: not a status in flight", s)
			}
		}
	}
	check()

	put("viewed", schemas.StatusCompleted)
	put("sent-0", schemas.StatusDelivered)
	if err := r.CountInFlight(ctx); err != nil {
		t.Fatal(err)
	}
	want["VIEWED"], want["SENT"], want["DELIVERED"] = 0, 2, 1
	check()
}

func inFlight(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "esignflow_envelopes_in_flight" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status" {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}
