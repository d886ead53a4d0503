package envelope_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/schemas"
)

var t0 = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

var order = []schemas.Status{
	schemas.StatusCreated, schemas.StatusSent, schemas.StatusDelivered, schemas.StatusViewed,
	schemas.StatusPartiallySigned, schemas.StatusCompleted, schemas.StatusDeclined,
	schemas.StatusVoided, schemas.StatusExpired, schemas.StatusFailed,
}

func event(id string, s schemas.Status, src schemas.Source, at time.Time) schemas.EnvelopeEvent {
	return schemas.EnvelopeEvent{EventID: id, Provider: "sim", EnvelopeID: "env-1", Source: src, Type: "t", Status: &s, OccurredAt: at, ReceivedAt: at}
}

// The expected outcome of every (current, incoming) pair, written out by
// hand: A applied (status becomes the incoming one), I ignored, C conflict.
// Rows are the current status (first row: a new envelope), columns the
// incoming one, both in the order CREATED SENT DELIVERED VIEWED
// PARTIALLY_SIGNED COMPLETED DECLINED VOIDED EXPIRED FAILED.
var webhookTable = []string{
	"AAAAAAAAAA",
	"IAAAAAAAAA",
	"IIAAAAAAAA",
	"IIIAAAAAAA",
	"IIIIAAAAAA",
	"IIIIIAAAAA",
	"IIIIIICCCC",
	"IIIIICICCC",
	"IIIIICCICC",
	"IIIIICCCIC",
	"IIIIICCCCI",
}

// Polls are the provider's truth: a poll's terminal overrides a different
// terminal instead of conflicting with it.
var pollTable = []string{
	"AAAAAAAAAA",
	"IAAAAAAAAA",
	"IIAAAAAAAA",
	"IIIAAAAAAA",
	"IIIIAAAAAA",
	"IIIIIAAAAA",
	"IIIIIIAAAA",
	"IIIIIAIAAA",
	"IIIIIAAIAA",
	"IIIIIAAAIA",
	"IIIIIAAAAI",
}

func TestTransitionTable(t *testing.T) {
	for _, tc := range []struct {
		src   schemas.Source
		table []string
	}{{schemas.SourceWebhook, webhookTable}, {schemas.SourcePoll, pollTable}} {
		for row, line := range tc.table {
			var cur envelope.Envelope
			curName := "new"
			if row > 0 {
				cur, _ = envelope.Envelope{}.Apply(event("setup", order[row-1], schemas.SourceAPI, t0), t0)
				curName = string(order[row-1])
			}
			for col, want := range line {
				in := order[col]
				t.Run(fmt.Sprintf("%s/%s->%s", tc.src, curName, in), func(t *testing.T) {
					next, change := cur.Apply(event("e", in, tc.src, t0.Add(time.Minute)), t0.Add(time.Hour))
					entry := next.State.AuditSeq
					if entry != cur.State.AuditSeq+1 {
						t.Fatalf("audit seq = %d, want %d", entry, cur.State.AuditSeq+1)
					}
					switch want {
					case 'A':
						if change == nil || change.Status != in || *next.State.Status != in || next.State.Version != cur.State.Version+1 {
							t.Fatalf("want applied to %s: change %+v state %+v", in, change, next.State)
						}
						if change.Audit[len(change.Audit)-1].Outcome != schemas.OutcomeApplied || next.State.Conflict != nil {
							t.Fatalf("applied: audit %+v conflict %v", change.Audit, next.State.Conflict)
						}
					case 'I':
						if change != nil || next.State.Version != cur.State.Version || !reflect.DeepEqual(next.State.Status, cur.State.Status) {
							t.Fatalf("want ignored: change %+v", change)
						}
						if n := len(next.Pending); n != len(cur.Pending)+1 || next.Pending[n-1].Outcome != schemas.OutcomeIgnored {
							t.Fatalf("ignored event must be pending audit: %+v", next.Pending)
						}
					case 'C':
						if change == nil || change.Status != *cur.State.Status || next.State.Conflict == nil {
							t.Fatalf("want conflict reported, status kept: change %+v", change)
						}
						if change.Audit[len(change.Audit)-1].Outcome != schemas.OutcomeConflict {
							t.Fatalf("conflict outcome: %+v", change.Audit)
						}
					}
				})
			}
		}
	}
}

func TestConflictSettledByPoll(t *testing.T) {
	var e envelope.Envelope
	e, _ = e.Apply(event("1", schemas.StatusCompleted, schemas.SourceWebhook, t0), t0)
	e, c := e.Apply(event("2", schemas.StatusVoided, schemas.SourceWebhook, t0), t0)
	if c == nil || e.State.Conflict == nil {
		t.Fatal("conflict not reported")
	}
	e, c = e.Apply(event("3", schemas.StatusDeclined, schemas.SourceWebhook, t0), t0)
	if c != nil {
		t.Fatal("a conflict already reported is not reported again")
	}
	e, c = e.Apply(event("4", schemas.StatusCompleted, schemas.SourcePoll, t0), t0)
	if c == nil || e.State.Conflict != nil || *e.State.Status != schemas.StatusCompleted {
		t.Fatalf("poll must settle the conflict: %+v", e.State)
	}
	if e.State.Version != 3 {
		t.Fatalf("version = %d, want 3", e.State.Version)
	}
	// The ignored DECLINED travels with the poll's change.
	if len(c.Audit) != 2 || c.Audit[0].EventID != "3" || len(e.Pending) != 0 {
		t.Fatalf("pending audit not flushed with the change: %+v", c.Audit)
	}
}

func TestRecipientProgress(t *testing.T) {
	ip := "198.51.100.7"
	verified := t0.Add(90 * time.Second)
	rcp := func(id string, s schemas.RecipientStatus) schemas.EnvelopeEvent {
		return schemas.EnvelopeEvent{EventID: id + string(s), Provider: "sim", EnvelopeID: "env-1", Source: schemas.SourceWebhook,
			Recipients: []schemas.RecipientUpdate{{RecipientID: id, Status: s, SourceIP: &ip}}, OccurredAt: t0}
	}
	var e envelope.Envelope
	e, c := e.Apply(rcp("b", schemas.RecipientViewed), t0)
	if c == nil || c.Status != schemas.StatusCreated {
		t.Fatalf("first recipient event makes the envelope CREATED: %+v", c)
	}
	e, c = e.Apply(rcp("a", schemas.RecipientSent), t0)
	if c == nil || e.State.Recipients[0].RecipientID != "a" {
		t.Fatalf("recipients sorted by id: %+v", e.State.Recipients)
	}
	if _, c = e.Apply(rcp("b", schemas.RecipientDelivered), t0); c != nil {
		t.Fatal("a recipient does not go back")
	}
	signed := rcp("b", schemas.RecipientSigned)
	signed.Recipients[0].IDVerifiedAt = &verified
	e, c = e.Apply(signed, t0)
	if c == nil || e.State.Recipients[1].Status != schemas.RecipientSigned || !e.State.Recipients[1].IDVerifiedAt.Equal(verified) {
		t.Fatalf("signed: %+v", e.State.Recipients)
	}
	last := c.Audit[len(c.Audit)-1]
	if *last.RecipientID != "b" || *last.SourceIP != ip || !last.IDVerifiedAt.Equal(verified) {
		t.Fatalf("audit entry must carry the recipient action: %+v", last)
	}
	if _, c = e.Apply(rcp("b", schemas.RecipientDeclined), t0); c != nil {
		t.Fatal("a terminal recipient status is final")
	}
}

func TestApplyDoesNotModifyInput(t *testing.T) {
	e, _ := envelope.Envelope{}.Apply(schemas.EnvelopeEvent{EventID: "1", EnvelopeID: "x", Recipients: []schemas.RecipientUpdate{{RecipientID: "a", Status: schemas.RecipientSent}}, OccurredAt: t0}, t0)
	before := fmt.Sprintf("%+v", e)
	e.Apply(schemas.EnvelopeEvent{EventID: "2", EnvelopeID: "x", Recipients: []schemas.RecipientUpdate{{RecipientID: "a", Status: schemas.RecipientSigned}, {RecipientID: "0", Status: schemas.RecipientSent}}, OccurredAt: t0}, t0)
	if after := fmt.Sprintf("%+v", e); after != before {
		t.Fatalf("input modified:\n%s\n%s", before, after)
	}
}

// lifecycle returns a realistic event set for one envelope: creation, each
// recipient's progress, envelope milestones, one terminal status, and a poll
// that confirms it. Along the way, as real providers do: an invitation
// bounces (and is resent, or the address corrected, or neither), a signer
// fails an authentication once, a recipient is reassigned to another who
// signs in their place, the sender corrects or resends the envelope.
func lifecycle(rng *rand.Rand, id string) []schemas.EnvelopeEvent {
	at := t0
	tick := func() time.Time { at = at.Add(time.Duration(1+rng.IntN(60)) * time.Second); return at }
	env := func(s schemas.Status, src schemas.Source) schemas.EnvelopeEvent {
		e := event(fmt.Sprintf("%s-%s-%s", id, s, src), s, src, tick())
		e.EnvelopeID = id
		return e
	}
	evs := []schemas.EnvelopeEvent{env(schemas.StatusCreated, schemas.SourceAPI), env(schemas.StatusSent, schemas.SourceWebhook)}
	n := 1 + rng.IntN(3)
	declined := rng.IntN(4) == 0
	// A voided envelope leaves its last recipient wherever they were:
	// sent, bounced, viewed, failing to authenticate.
	voided := !declined && rng.IntN(4) == 0
	rcp := func(rid string, s schemas.RecipientStatus, tag string) schemas.EnvelopeEvent {
		u := schemas.RecipientUpdate{RecipientID: rid, Email: rid + "@example.com", Status: s}
		if s == schemas.RecipientSigned {
			v := tick()
			u.IDVerifiedAt = &v
		}
		return schemas.EnvelopeEvent{EventID: id + rid + string(s) + tag, Provider: "sim", EnvelopeID: id, Source: schemas.SourceWebhook, Recipients: []schemas.RecipientUpdate{u}, OccurredAt: tick()}
	}
	kinded := func(k schemas.EventKind, tag string) schemas.EnvelopeEvent {
		e := env(schemas.StatusSent, schemas.SourceWebhook) // a summary that lags
		e.EventID += tag
		e.Kind = k
		return e
	}
	for r := range n {
		rid := fmt.Sprintf("r%d", r)
		start := len(evs)
		evs = append(evs, rcp(rid, schemas.RecipientSent, ""))
		if rng.IntN(4) == 0 {
			evs = append(evs, rcp(rid, schemas.RecipientBounced, ""))
			switch rng.IntN(3) {
			case 0:
				evs = append(evs, rcp(rid, schemas.RecipientSent, "resent"))
			case 1:
				evs = append(evs, kinded(schemas.EventKindCorrected, "corrected"+rid))
			}
		}
		if rng.IntN(5) == 0 {
			// Reassigned before opening it: the new recipient goes on.
			old := rid
			rid += "x"
			reassign := rcp(rid, schemas.RecipientSent, "reassign")
			reassign.Recipients[0].Replaces = &old
			evs = append(evs, reassign)
		}
		evs = append(evs, rcp(rid, schemas.RecipientDelivered, ""), rcp(rid, schemas.RecipientViewed, ""))
		if rng.IntN(4) == 0 {
			evs = append(evs, rcp(rid, schemas.RecipientAuthFailed, ""))
			if rng.IntN(2) == 0 {
				evs = append(evs, rcp(rid, schemas.RecipientViewed, "again"))
			}
		}
		if rng.IntN(6) == 0 {
			evs = append(evs, kinded(schemas.EventKindResent, "resent"+rid))
		}
		last := schemas.RecipientSigned
		if declined && r == n-1 {
			last = schemas.RecipientDeclined
		}
		if voided && r == n-1 {
			evs = evs[:start+1+rng.IntN(len(evs)-start)]
		} else {
			evs = append(evs, rcp(rid, last, ""))
		}
		if r == 0 {
			evs = append(evs, env(schemas.StatusDelivered, schemas.SourceWebhook), env(schemas.StatusViewed, schemas.SourceWebhook))
		}
	}
	final := schemas.StatusCompleted
	switch {
	case declined:
		final = schemas.StatusDeclined
	case voided:
		final = schemas.StatusVoided
	case n > 1:
		evs = append(evs, env(schemas.StatusPartiallySigned, schemas.SourceWebhook))
	}
	// A poll reports the provider's own status time, the webhook's.
	hook := env(final, schemas.SourceWebhook)
	poll := env(final, schemas.SourcePoll)
	poll.OccurredAt = hook.OccurredAt
	evs = append(evs, hook, poll)
	return evs
}

// essence is the part of the state that must not depend on arrival order:
// not the version (fewer changes when late events are ignored), the audit
// chain or the time of recording.
func essence(s schemas.EnvelopeState) string {
	str := func(p *string) string {
		if p == nil {
			return "-"
		}
		return *p
	}
	out := fmt.Sprintf("%s %v %s %s:", s.EnvelopeID, *s.Status, s.StatusAt, str(s.Conflict))
	for _, r := range s.Recipients {
		v := "-"
		if r.IDVerifiedAt != nil {
			v = r.IDVerifiedAt.String()
		}
		out += fmt.Sprintf(" [%s %s %q %s %s verified %s by %s replaces %s]", r.RecipientID, r.Status, r.Email, r.Name, r.StatusAt, v, str(r.ReplacedBy), str(r.Replaces))
	}
	return out
}

func TestPermutationsConverge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 500 {
		evs := lifecycle(rng, fmt.Sprintf("env-%d", round))
		apply := func(in []schemas.EnvelopeEvent) (envelope.Envelope, []*schemas.EnvelopeStatusChanged) {
			var e envelope.Envelope
			var changes []*schemas.EnvelopeStatusChanged
			seen := map[string]bool{}
			for _, ev := range in {
				if seen[ev.EventID] { // the store's dedup
					continue
				}
				seen[ev.EventID] = true
				var c *schemas.EnvelopeStatusChanged
				e, c = e.Apply(ev, t0)
				if c != nil {
					changes = append(changes, c)
				}
			}
			return e, changes
		}
		want, wantChanges := apply(evs)
		shuffled := append([]schemas.EnvelopeEvent(nil), evs...)
		for range rng.IntN(len(evs)) { // random duplicates
			shuffled = append(shuffled, evs[rng.IntN(len(evs))])
		}
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got, gotChanges := apply(shuffled)
		if essence(got.State) != essence(want.State) {
			t.Fatalf("round %d: permutation diverged:\n got %s\nwant %s", round, essence(got.State), essence(want.State))
		}
		if len(gotChanges) > len(wantChanges) {
			t.Fatalf("round %d: %d changes out of order, %d in order", round, len(gotChanges), len(wantChanges))
		}
		for i, c := range gotChanges {
			if c.Version != int64(i)+1 {
				t.Fatalf("round %d: versions not contiguous: change %d has version %d", round, i, c.Version)
			}
		}
		// The chain of every change's audit entries plus what is still
		// pending is complete and verifies.
		var chain []schemas.AuditEntry
		for _, c := range gotChanges {
			chain = append(chain, c.Audit...)
		}
		chain = append(chain, got.Pending...)
		if err := envelope.Verify(chain); err != nil || int64(len(chain)) != got.State.AuditSeq {
			t.Fatalf("round %d: chain of %d entries (seq %d): %v", round, len(chain), got.State.AuditSeq, err)
		}
	}
}

// ApplyTo with one change reused for every event (its audit slice longer
// or shorter than the next one's) gives, event by event, what Apply gives.
func TestApplyToReusedChangeMatchesApply(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 100 {
		evs := lifecycle(rng, fmt.Sprintf("env-%d", round))
		rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		var a, b envelope.Envelope
		var reused schemas.EnvelopeStatusChanged
		for i, ev := range evs {
			var want *schemas.EnvelopeStatusChanged
			a, want = a.Apply(ev, t0)
			var changed bool
			b, changed = b.ApplyTo(ev, t0, &reused)
			if changed != (want != nil) || !reflect.DeepEqual(a, b) {
				t.Fatalf("round %d event %d: changed %v, Apply's change %v; envelopes equal %v", round, i, changed, want != nil, reflect.DeepEqual(a, b))
			}
			if changed && !reflect.DeepEqual(reused, *want) {
				t.Fatalf("round %d event %d: change\n%+v\nApply's\n%+v", round, i, reused, *want)
			}
		}
	}
}

func TestVerifyNamesTamperedEntry(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var e envelope.Envelope
	var chain []schemas.AuditEntry
	for _, ev := range lifecycle(rng, "env-t") {
		var c *schemas.EnvelopeStatusChanged
		e, c = e.Apply(ev, t0)
		if c != nil {
			chain = append(chain, c.Audit...)
		}
	}
	chain = append(chain, e.Pending...)
	if err := envelope.Verify(chain); err != nil {
		t.Fatal(err)
	}
	ip := "192.0.2.66"
	for _, tc := range []struct {
		name   string
		mutate func([]schemas.AuditEntry)
		seq    int64
		reason string
	}{
		{"content", func(c []schemas.AuditEntry) { c[3].SourceIP = &ip }, 4, "hash"},
		{"relinked", func(c []schemas.AuditEntry) { c[4].PrevHash = c[2].Hash }, 5, "prev_hash"},
		{"dropped", func(c []schemas.AuditEntry) { copy(c[2:], c[3:]) }, 4, "sequence"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := append([]schemas.AuditEntry(nil), chain...)
			tc.mutate(c)
			err := envelope.Verify(c)
			var ce *envelope.ChainError
			if !errors.As(err, &ce) || ce.Seq != tc.seq || !strings.Contains(ce.Reason, tc.reason) {
				t.Fatalf("got %v, want entry %d (%s)", err, tc.seq, tc.reason)
			}
		})
	}
}

// The request's content hash comes with the create's event and is kept
// from the first event that has one, whatever comes later: it is what the
// request index a restore rebuilds from the changelog compares a later
// request with, so a later event (a webhook without it, a stray event
// naming another) must never change or drop it. It travels in the status
// change's state too.
func TestRequestHashKeptFromFirstEvent(t *testing.T) {
	hashed := func(ev schemas.EnvelopeEvent, h string) schemas.EnvelopeEvent {
		ev.RequestHash = &h
		return ev
	}
	created := event("api", schemas.StatusCreated, schemas.SourceAPI, t0)
	sent := event("sent", schemas.StatusSent, schemas.SourceWebhook, t0.Add(time.Second))
	completed := event("done", schemas.StatusCompleted, schemas.SourceWebhook, t0.Add(2*time.Second))
	for _, tc := range []struct {
		name string
		evs  []schemas.EnvelopeEvent
		want string // "": none
	}{
		{"from the create, kept by later events", []schemas.EnvelopeEvent{hashed(created, "h1"), sent, completed}, "h1"},
		{"from the create shuffled behind a webhook", []schemas.EnvelopeEvent{sent, hashed(created, "h1"), completed}, "h1"},
		{"a later event naming another is ignored", []schemas.EnvelopeEvent{hashed(created, "h1"), hashed(sent, "h2"), completed}, "h1"},
		{"an event that changes nothing still keeps it", []schemas.EnvelopeEvent{hashed(sent, "h1"), hashed(created, "h2")}, "h1"},
		{"none when no event has one", []schemas.EnvelopeEvent{created, sent, completed}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e envelope.Envelope
			for i, ev := range tc.evs {
				var ch *schemas.EnvelopeStatusChanged
				e, ch = e.Apply(ev, t0)
				if ch != nil && !reflect.DeepEqual(ch.State.RequestHash, e.State.RequestHash) {
					t.Fatalf("event %d: change's state has request hash %v, the envelope's %v", i, ch.State.RequestHash, e.State.RequestHash)
				}
			}
			var got string
			if e.State.RequestHash != nil {
				got = *e.State.RequestHash
			}
			if got != tc.want {
				t.Fatalf("request hash %q, want %q", got, tc.want)
			}
		})
	}
}
