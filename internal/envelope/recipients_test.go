package envelope_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/envelope/envelopetest"
	"github.com/esignflow/esignflow/schemas"
)

// authFailed is the status a provider reports for a failed SMS code or ID
// check (a variable so that the story below can be run against the
// statuses of older versions).
var authFailed = schemas.RecipientAuthFailed

// rcpEvent is a webhook about one recipient, at t0 + sec seconds.
func rcpEvent(id, rid string, s schemas.RecipientStatus, sec int) schemas.EnvelopeEvent {
	return schemas.EnvelopeEvent{EventID: id, Provider: "docusign", EnvelopeID: "env-1", Source: schemas.SourceWebhook, Type: "recipient",
		Recipients: []schemas.RecipientUpdate{{RecipientID: rid, Email: rid + "@example.com", Name: rid, Status: s}},
		OccurredAt: t0.Add(time.Duration(sec) * time.Second), ReceivedAt: t0}
}

func envEvent(id string, s schemas.Status, sec int) schemas.EnvelopeEvent {
	return event(id, s, schemas.SourceWebhook, t0.Add(time.Duration(sec)*time.Second))
}

func applyAll(t *testing.T, e envelope.Envelope, evs ...schemas.EnvelopeEvent) (envelope.Envelope, []*schemas.EnvelopeStatusChanged) {
	t.Helper()
	var changes []*schemas.EnvelopeStatusChanged
	for _, ev := range evs {
		var c *schemas.EnvelopeStatusChanged
		e, c = e.Apply(ev, t0.Add(time.Hour))
		if c != nil {
			changes = append(changes, c)
		}
	}
	return e, changes
}

func rcpOf(t *testing.T, e envelope.Envelope, id string) schemas.RecipientState {
	t.Helper()
	for _, r := range e.State.Recipients {
		if r.RecipientID == id {
			return r
		}
	}
	t.Fatalf("no recipient %s in %+v", id, e.State.Recipients)
	return schemas.RecipientState{}
}

// The story of issue 17: a signer fails the SMS code once, then enters the
// right one and signs. The envelope completes and the recipient is SIGNED,
// in whichever order the events arrive.
func TestAuthFailureIsNotFinal(t *testing.T) {
	evs := []schemas.EnvelopeEvent{
		envEvent("sent", schemas.StatusSent, 0),
		rcpEvent("r-sent", "1", schemas.RecipientSent, 1),
		rcpEvent("r-viewed", "1", schemas.RecipientViewed, 60),
		rcpEvent("r-authfailed", "1", authFailed, 90),
		rcpEvent("r-signed", "1", schemas.RecipientSigned, 150),
		envEvent("completed", schemas.StatusCompleted, 151),
	}
	e, _ := applyAll(t, envelope.Envelope{}, evs[:4]...)
	if r := rcpOf(t, e, "1"); r.Status != schemas.RecipientAuthFailed {
		t.Fatalf("after the failed code: recipient %s, want AUTH_FAILED", r.Status)
	}
	e, _ = applyAll(t, e, evs[4:]...)
	if *e.State.Status != schemas.StatusCompleted {
		t.Fatalf("envelope %s, want COMPLETED", *e.State.Status)
	}
	if r := rcpOf(t, e, "1"); r.Status != schemas.RecipientSigned || !r.StatusAt.Equal(t0.Add(150*time.Second)) {
		t.Fatalf("after signing: recipient %s at %s, want SIGNED at +150s", r.Status, r.StatusAt)
	}
	envelopetest.EveryOrder(evs, func(order []schemas.EnvelopeEvent) {
		e, _ := applyAll(t, envelope.Envelope{}, order...)
		if r := rcpOf(t, e, "1"); r.Status != schemas.RecipientSigned || *e.State.Status != schemas.StatusCompleted {
			t.Fatalf("order %v: recipient %s, envelope %s", ids(order), r.Status, *e.State.Status)
		}
	})
}

// A bounce is not final: a later delivery, a resend or a signature moves
// the recipient on; an older report does not undo it.
func TestBounceThenDelivered(t *testing.T) {
	sent := rcpEvent("sent", "1", schemas.RecipientSent, 1)
	bounced := rcpEvent("bounced", "1", schemas.RecipientBounced, 2)
	for _, tc := range []struct {
		name   string
		evs    []schemas.EnvelopeEvent
		want   schemas.RecipientStatus
		wantAt int
	}{
		{"bounce", []schemas.EnvelopeEvent{sent, bounced}, schemas.RecipientBounced, 2},
		{"delivered after the address was corrected", []schemas.EnvelopeEvent{sent, bounced, rcpEvent("delivered", "1", schemas.RecipientDelivered, 300)}, schemas.RecipientDelivered, 300},
		{"resent", []schemas.EnvelopeEvent{sent, bounced, rcpEvent("resent", "1", schemas.RecipientSent, 200)}, schemas.RecipientSent, 200},
		{"signed", []schemas.EnvelopeEvent{sent, bounced, rcpEvent("signed", "1", schemas.RecipientSigned, 400)}, schemas.RecipientSigned, 400},
		{"the send it bounced, arriving late, does not undo it", []schemas.EnvelopeEvent{bounced, sent}, schemas.RecipientBounced, 2},
		{"a bounce after the view is history", []schemas.EnvelopeEvent{sent, rcpEvent("viewed", "1", schemas.RecipientViewed, 3), bounced}, schemas.RecipientViewed, 3},
		{"a bounce and its send at the same millisecond: the bounce", []schemas.EnvelopeEvent{rcpEvent("bounced", "1", schemas.RecipientBounced, 1), sent}, schemas.RecipientBounced, 1},
		{"the FAILED older versions wrote for a bounce is not final either", []schemas.EnvelopeEvent{rcpEvent("old", "1", schemas.RecipientFailed, 2), rcpEvent("signed", "1", schemas.RecipientSigned, 400)}, schemas.RecipientSigned, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			envelopetest.EveryOrder(tc.evs, func(order []schemas.EnvelopeEvent) {
				if tc.name == "the send it bounced, arriving late, does not undo it" && order[0].EventID != "bounced" {
					return // the order is the point of this case
				}
				e, _ := applyAll(t, envelope.Envelope{}, order...)
				r := rcpOf(t, e, "1")
				if r.Status != tc.want || !r.StatusAt.Equal(t0.Add(time.Duration(tc.wantAt)*time.Second)) {
					t.Fatalf("order %v: %s at %s, want %s at +%ds", ids(order), r.Status, r.StatusAt, tc.want, tc.wantAt)
				}
			})
		})
	}
}

// An authentication failure behaves likewise within its rank: a later
// view (the signer came back) wins, an earlier one does not.
func TestAuthFailureAgainstViews(t *testing.T) {
	v1 := rcpEvent("v1", "1", schemas.RecipientViewed, 10)
	af := rcpEvent("af", "1", schemas.RecipientAuthFailed, 20)
	v2 := rcpEvent("v2", "1", schemas.RecipientViewed, 30)
	envelopetest.EveryOrder([]schemas.EnvelopeEvent{v1, af, v2}, func(order []schemas.EnvelopeEvent) {
		e, changes := applyAll(t, envelope.Envelope{}, order...)
		if r := rcpOf(t, e, "1"); r.Status != schemas.RecipientViewed || !r.StatusAt.Equal(t0.Add(30*time.Second)) {
			t.Fatalf("order %v: %s at %s, want VIEWED at +30s", ids(order), r.Status, r.StatusAt)
		}
		if len(changes) > 3 {
			t.Fatalf("order %v: %d changes", ids(order), len(changes))
		}
	})
	e, _ := applyAll(t, envelope.Envelope{}, v1, af)
	if r := rcpOf(t, e, "1"); r.Status != schemas.RecipientAuthFailed {
		t.Fatalf("view then failure: %s", r.Status)
	}
}

// A reassignment (or a delegation) replaces the recipient: the old one is
// REPLACED with replaced_by, the new one has replaces, and the audit entry
// of the event names both. The old one's own late events change nothing.
func TestReassignReplacesRecipient(t *testing.T) {
	old := "1"
	reassign := rcpEvent("reassign", "3", schemas.RecipientSent, 100)
	reassign.Type = "recipient-reassign"
	reassign.Recipients[0].Replaces = &old
	evs := []schemas.EnvelopeEvent{
		envEvent("sent", schemas.StatusSent, 0),
		rcpEvent("1-sent", "1", schemas.RecipientSent, 1),
		rcpEvent("1-viewed", "1", schemas.RecipientViewed, 50),
		reassign,
		rcpEvent("3-viewed", "3", schemas.RecipientViewed, 200),
		rcpEvent("3-signed", "3", schemas.RecipientSigned, 300),
		envEvent("completed", schemas.StatusCompleted, 301),
	}
	e, changes := applyAll(t, envelope.Envelope{}, evs[:4]...)
	last := changes[len(changes)-1]
	a := last.Audit[len(last.Audit)-1]
	if a.EventID != "reassign" || a.RecipientID == nil || *a.RecipientID != "3" || a.Replaces == nil || *a.Replaces != "1" {
		t.Fatalf("the reassignment's audit entry must keep both recipients: %+v", a)
	}
	if last.Kind != schemas.ChangeKindRecipient {
		t.Fatalf("kind %v, want RECIPIENT", last.Kind)
	}
	if err := envelope.Verify(chainOf(changes, e)); err != nil {
		t.Fatal(err)
	}
	check := func(e envelope.Envelope, order string) {
		o, n := rcpOf(t, e, "1"), rcpOf(t, e, "3")
		if o.Status != schemas.RecipientReplaced || o.ReplacedBy == nil || *o.ReplacedBy != "3" || !o.StatusAt.Equal(t0.Add(100*time.Second)) || o.Email != "1@example.com" {
			t.Fatalf("%s: old recipient %+v", order, o)
		}
		if n.Replaces == nil || *n.Replaces != "1" || n.Email != "3@example.com" {
			t.Fatalf("%s: new recipient %+v", order, n)
		}
	}
	check(e, "in order, before signing")
	envelopetest.EveryOrder(evs, func(order []schemas.EnvelopeEvent) {
		e, _ := applyAll(t, envelope.Envelope{}, order...)
		check(e, fmt.Sprint(ids(order)))
		if n := rcpOf(t, e, "3"); n.Status != schemas.RecipientSigned || *e.State.Status != schemas.StatusCompleted {
			t.Fatalf("order %v: new recipient %s, envelope %s", ids(order), n.Status, *e.State.Status)
		}
	})
	// A summary that reports the replaced one as signed (providers' words
	// for it are not documented) does not undo the replacement, in either
	// order: nobody is reassigned after signing.
	signedOld := rcpEvent("1-signed?", "1", schemas.RecipientSigned, 120)
	envelopetest.EveryOrder([]schemas.EnvelopeEvent{evs[1], reassign, signedOld}, func(order []schemas.EnvelopeEvent) {
		e, _ := applyAll(t, envelope.Envelope{}, order...)
		if o := rcpOf(t, e, "1"); o.Status != schemas.RecipientReplaced || o.ReplacedBy == nil {
			t.Fatalf("order %v: old recipient %+v", ids(order), o)
		}
	})
	// The old recipient's own view after the reassignment is history.
	if _, c := e.Apply(rcpEvent("1-late", "1", schemas.RecipientViewed, 60), t0); c != nil {
		t.Fatalf("a replaced recipient moved: %+v", c.State.Recipients)
	}
}

// A correction or a resend is a status change of its own kind: version +1,
// the status not moved back (previous_status = status), the audit entry
// saying which; two corrections are two changes; one that arrives after
// the envelope finished is recorded and changes nothing.
func TestCorrectionIsItsOwnKindOfChange(t *testing.T) {
	e, changes := applyAll(t, envelope.Envelope{},
		envEvent("sent", schemas.StatusSent, 0), envEvent("delivered", schemas.StatusDelivered, 10))
	if changes[1].Kind != schemas.ChangeKindStatus {
		t.Fatalf("a status move has kind %v", changes[1].Kind)
	}
	correction := func(id string, kind schemas.EventKind, sec int) schemas.EnvelopeEvent {
		ev := envEvent(id, schemas.StatusSent, sec) // the summary may lag: SENT
		ev.Kind, ev.Type = kind, "envelope-corrected"
		ev.Recipients = []schemas.RecipientUpdate{{RecipientID: "1", Status: schemas.RecipientSent}}
		return ev
	}
	for i, tc := range []struct {
		ev   schemas.EnvelopeEvent
		kind schemas.ChangeKind
	}{
		{correction("c1", schemas.EventKindCorrected, 20), schemas.ChangeKindCorrected},
		{correction("c2", schemas.EventKindCorrected, 30), schemas.ChangeKindCorrected},
		{correction("r1", schemas.EventKindResent, 40), schemas.ChangeKindResent},
		{correction("r2", schemas.EventKindResent, 40), schemas.ChangeKindResent},
	} {
		before := e.State.Version
		var c *schemas.EnvelopeStatusChanged
		e, c = e.Apply(tc.ev, t0.Add(time.Hour))
		if c == nil {
			t.Fatalf("%s: no change", tc.ev.EventID)
		}
		if c.Kind != tc.kind || c.Version != before+1 || c.Status != schemas.StatusDelivered || c.PreviousStatus == nil || *c.PreviousStatus != schemas.StatusDelivered {
			t.Fatalf("%s: kind %v version %d (was %d) status %s previous %v", tc.ev.EventID, c.Kind, c.Version, before, c.Status, c.PreviousStatus)
		}
		a := c.Audit[len(c.Audit)-1]
		if a.Kind == nil || *a.Kind != tc.ev.Kind || a.Outcome != schemas.OutcomeApplied {
			t.Fatalf("%s: audit entry %+v", tc.ev.EventID, a)
		}
		if i == 0 && rcpOf(t, e, "1").Status != schemas.RecipientSent {
			t.Fatalf("the correction's recipients apply too")
		}
	}
	e, c := e.Apply(rcpEvent("1-viewed", "1", schemas.RecipientViewed, 50), t0)
	if c == nil || c.Kind != schemas.ChangeKindRecipient {
		t.Fatalf("a recipient-only change: %+v", c)
	}
	e, _ = e.Apply(envEvent("completed", schemas.StatusCompleted, 60), t0)
	late := correction("c3", schemas.EventKindCorrected, 25)
	e2, c := e.Apply(late, t0)
	if c != nil || e2.State.Version != e.State.Version {
		t.Fatalf("a correction after completion changed the envelope: %+v", c)
	}
	if p := e2.Pending[len(e2.Pending)-1]; p.EventID != "c3" || p.Kind == nil || *p.Kind != schemas.EventKindCorrected || p.Outcome != schemas.OutcomeIgnored {
		t.Fatalf("the late correction must be in the audit trail: %+v", p)
	}
}

func ids(evs []schemas.EnvelopeEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventID
	}
	return out
}

func chainOf(changes []*schemas.EnvelopeStatusChanged, e envelope.Envelope) []schemas.AuditEntry {
	var chain []schemas.AuditEntry
	for _, c := range changes {
		chain = append(chain, c.Audit...)
	}
	return append(chain, e.Pending...)
}
