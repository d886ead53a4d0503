package docusignfake_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/provider/docusign/docusignfake"
	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

// TestConnectAuthFailureAndBounce: with the engine's faults "every
// invitation bounces once" and "every signer fails authentication once",
// the DocuSign dialect sends recipient-autoresponded and
// recipient-authenticationfailed for each recipient, and the envelopes,
// their Connect messages applied by the state machine as they arrived, in
// reverse and in the order they were generated, complete with every
// recipient SIGNED; in the order generated, each recipient is BOUNCED and
// then AUTH_FAILED on the way.
func TestConnectAuthFailureAndBounce(t *testing.T) {
	h := start(t, docusignfake.Config{}, sim.Config{Step: 2 * time.Millisecond, Seed: 5,
		Faults: sim.Faults{AuthFailOnce: 1, BounceOnce: 1}})
	const n = 4
	recipients := 0
	for i := range n {
		h.create(definition(fmt.Sprint("req-", i), "sent", 1+i%3))
		recipients += 1 + i%3
	}
	providertest.WaitFor(t, 30*time.Second, "every envelope final and every message delivered", providertest.Settled(h.sim, n))
	msgs, bad := h.hook.snapshot()
	if len(bad) > 0 {
		t.Fatalf("%d messages failed provider/docusign: %v", len(bad), bad[:min(3, len(bad))])
	}
	types := map[string]int{}
	byEnvelope := map[string][]schemas.EnvelopeEvent{}
	for _, m := range msgs {
		types[m.raw["event"].(string)]++
		for _, ev := range m.events {
			byEnvelope[ev.EnvelopeID] = append(byEnvelope[ev.EnvelopeID], ev)
		}
	}
	if types["recipient-autoresponded"] != recipients || types["recipient-authenticationfailed"] != recipients {
		t.Fatalf("%d recipients; events %v", recipients, types)
	}
	for id, evs := range byEnvelope {
		generated := slices.Clone(evs)
		slices.SortStableFunc(generated, func(a, b schemas.EnvelopeEvent) int { return a.OccurredAt.Compare(b.OccurredAt) })
		for i, order := range [][]schemas.EnvelopeEvent{evs, reversed(evs), generated} {
			var e envelope.Envelope
			seen := map[string][]schemas.RecipientStatus{}
			for _, ev := range order {
				e, _ = e.Apply(ev, ev.ReceivedAt)
				for _, r := range e.State.Recipients {
					if s := seen[r.RecipientID]; len(s) == 0 || s[len(s)-1] != r.Status {
						seen[r.RecipientID] = append(s, r.Status)
					}
				}
			}
			if *e.State.Status != schemas.StatusCompleted {
				t.Fatalf("envelope %s: %s", id, *e.State.Status)
			}
			for _, r := range e.State.Recipients {
				if r.Status != schemas.RecipientSigned {
					t.Fatalf("envelope %s: recipient %s is %s", id, r.RecipientID, r.Status)
				}
			}
			if i < 2 {
				continue
			}
			for rid, path := range seen {
				b, a := slices.Index(path, schemas.RecipientBounced), slices.Index(path, schemas.RecipientAuthFailed)
				if b < 0 || a < b || path[len(path)-1] != schemas.RecipientSigned {
					t.Fatalf("envelope %s recipient %s went %v, want BOUNCED, later AUTH_FAILED, then SIGNED", id, rid, path)
				}
			}
		}
	}
}

func reversed(evs []schemas.EnvelopeEvent) []schemas.EnvelopeEvent {
	r := slices.Clone(evs)
	slices.Reverse(r)
	return r
}
