package processor_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/schemas"
)

func ptr[T any](v T) *T { return &v }

// A provider account reports every envelope in it, including those sent
// by people from the provider's web app. Their events carry no request id
// and their envelopes have no state: by default they are counted and
// ignored; with AdoptForeign they are tracked, with no request and no
// tenant. An event without a request id of an envelope esignflow did
// create (one with state) is applied either way.
func TestForeignEnvelopes(t *testing.T) {
	for _, adopt := range []bool{false, true} {
		t.Run(fmt.Sprintf("adopt=%v", adopt), func(t *testing.T) {
			h := newHarness(t)
			sr := h.readStatus()
			reg := prometheus.NewRegistry()
			cfg := h.config("a")
			cfg.Metrics, cfg.AdoptForeign = reg, adopt
			h.start(cfg)

			at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
			event := func(env, eid string, s schemas.Status) schemas.EnvelopeEvent {
				at = at.Add(time.Minute)
				return schemas.EnvelopeEvent{EventID: eid, Provider: "sim", EnvelopeID: env, Source: schemas.SourceWebhook,
					Type: string(s), Status: &s, OccurredAt: at, ReceivedAt: at, Recipients: []schemas.RecipientUpdate{}, Metadata: map[string]string{}}
			}
			foreign := func(eid string, s schemas.Status) schemas.EnvelopeEvent { return event("web-app-envelope", eid, s) }
			created := event("known-envelope", "k-created", schemas.StatusCreated)
			rid := "req-known"
			created.Source, created.RequestID = schemas.SourceAPI, &rid
			// Two batches: the second event finds the first's state
			// (adopted) or none (ignored).
			h.produce(h.eventRecord(foreign("f-sent", schemas.StatusSent)))
			h.waitConsumed(1, 30*time.Second)
			h.produce(h.eventRecord(foreign("f-done", schemas.StatusCompleted)), h.eventRecord(created))
			w := newWorkload(3, 10)
			for _, ev := range w.events {
				h.produce(h.eventRecord(ev))
			}
			h.waitConsumed(int64(len(w.events)+3), 60*time.Second)
			// The known envelope has state now: its webhook without a
			// request id is applied.
			h.produce(h.eventRecord(event("known-envelope", "k-sent", schemas.StatusSent)))
			w.final["known-envelope"] = envelope.Envelope{State: schemas.EnvelopeState{Status: ptr(schemas.StatusSent), Version: 2}}
			waitFinal(t, sr, w, 60*time.Second)
			delete(w.final, "known-envelope")
			for _, c := range sr.snapshot() {
				if c.State.Foreign && c.EnvelopeID != "web-app-envelope" {
					t.Fatalf("%s, created by esignflow, is foreign: %+v", c.EnvelopeID, c.State)
				}
			}
			checkExactlyOnce(t, sr.snapshot(), w.final)

			var fchanges []schemas.EnvelopeStatusChanged
			for _, c := range sr.snapshot() {
				if c.EnvelopeID == "web-app-envelope" {
					fchanges = append(fchanges, c)
				}
			}
			stored, err := h.stored([]string{"web-app-envelope"})
			if err != nil {
				t.Fatal(err)
			}
			ignored, _ := counter(t, reg, "esignflow_processor_foreign_events_total", map[string]string{"outcome": "ignored"})
			adopted, _ := counter(t, reg, "esignflow_processor_foreign_events_total", map[string]string{"outcome": "adopted"})
			if !adopt {
				if len(fchanges) != 0 || len(stored) != 0 {
					t.Fatalf("an envelope esignflow did not create: %d status changes, stored %v; want none", len(fchanges), stored)
				}
				if ignored != 2 || adopted != 0 {
					t.Fatalf("foreign events: ignored %v, adopted %v; want 2 and 0", ignored, adopted)
				}
				return
			}
			waitFor(t, 30*time.Second, "the adopted envelope's two changes", func() bool {
				fchanges = fchanges[:0]
				for _, c := range sr.snapshot() {
					if c.EnvelopeID == "web-app-envelope" {
						fchanges = append(fchanges, c)
					}
				}
				return len(fchanges) == 2
			})
			last := fchanges[1]
			if last.Status != schemas.StatusCompleted || last.State.RequestID != nil || last.State.Tenant != nil || !last.State.Foreign {
				t.Fatalf("adopted envelope: %s, request %v, tenant %v, foreign %v; want COMPLETED, foreign, with neither", last.Status, last.State.RequestID, last.State.Tenant, last.State.Foreign)
			}
			if ignored != 0 || adopted != 2 {
				t.Fatalf("foreign events: ignored %v, adopted %v; want 0 and 2", ignored, adopted)
			}
		})
	}
}
