// Package envelope is esignflow's envelope state machine: pure functions,
// no I/O, so that every replica, every replay and every restore computes the
// same state from the same events.
//
// The machine is monotonic. Statuses are ordered CREATED < SENT < DELIVERED
// < VIEWED < PARTIALLY_SIGNED < {COMPLETED, DECLINED, VOIDED, EXPIRED,
// FAILED}; an event that would move an envelope (or a recipient) backwards is
// audited and ignored; a terminal status is final. Two different terminal
// statuses are a conflict: the state records it and only the provider's
// answer to a poll (source POLL) may settle it. Every accepted event
// increments the envelope's version by one.
package envelope

import (
	"slices"
	"time"

	"github.com/esignflow/esignflow/schemas"
)

var statusRank = map[schemas.Status]int{
	schemas.StatusCreated:         1,
	schemas.StatusSent:            2,
	schemas.StatusDelivered:       3,
	schemas.StatusViewed:          4,
	schemas.StatusPartiallySigned: 5,
	schemas.StatusCompleted:       6,
	schemas.StatusDeclined:        6,
	schemas.StatusVoided:          6,
	schemas.StatusExpired:         6,
	schemas.StatusFailed:          6,
}

var recipientRank = map[schemas.RecipientStatus]int{
	schemas.RecipientCreated:   1,
	schemas.RecipientSent:      2,
	schemas.RecipientDelivered: 3,
	schemas.RecipientViewed:    4,
	schemas.RecipientSigned:    5,
	schemas.RecipientDeclined:  5,
	schemas.RecipientFailed:    5,
}

// Terminal reports whether s is final: COMPLETED, DECLINED, VOIDED, EXPIRED
// or FAILED.
func Terminal(s schemas.Status) bool { return statusRank[s] == 6 }

// Valid reports whether s is one of the normalised statuses.
func Valid(s schemas.Status) bool { return statusRank[s] > 0 }

// ValidRecipient reports whether s is one of the recipient statuses.
func ValidRecipient(s schemas.RecipientStatus) bool { return recipientRank[s] > 0 }

// Envelope is an envelope's state plus the audit entries of events that
// changed nothing since its last status change; they travel with the next
// change so the chain on the status topic has no holes.
type Envelope struct {
	State   schemas.EnvelopeState `avro:"state"`
	Pending []schemas.AuditEntry  `avro:"pending"`
}

// Rev is the envelope's revision: it moves with every applied event,
// accepted or ignored, and is what writers compare-and-set on.
func (e Envelope) Rev() int64 { return e.State.AuditSeq }

// Terminal reports whether the envelope's status is final.
func (e Envelope) Terminal() bool { return e.State.Status != nil && Terminal(*e.State.Status) }

// Apply applies ev to e, recorded at now, and returns the envelope after it
// and the status change to publish, or nil when the event changed nothing.
// It never modifies e: the returned Envelope shares no slices with it.
func (e Envelope) Apply(ev schemas.EnvelopeEvent, now time.Time) (Envelope, *schemas.EnvelopeStatusChanged) {
	ch := new(schemas.EnvelopeStatusChanged)
	next, changed := e.ApplyTo(ev, now, ch)
	if !changed {
		return next, nil
	}
	return next, ch
}

// ApplyTo is Apply writing the status change into ch, which it overwrites
// whole, reusing the capacity of ch.Audit; it reports whether there is a
// change (when false, ch holds nothing of use). It is for callers that
// encode each change at once and can reuse one: ch shares the recipients of
// the returned Envelope, which must not be modified while ch is in use.
func (e Envelope) ApplyTo(ev schemas.EnvelopeEvent, now time.Time, ch *schemas.EnvelopeStatusChanged) (Envelope, bool) {
	st := e.State
	// Never nil, so a state reads the same before and after an Avro round
	// trip.
	st.Recipients = append([]schemas.RecipientState{}, e.State.Recipients...)
	now = ms(now)
	if st.EnvelopeID == "" {
		st.EnvelopeID = ev.EnvelopeID
		st.Provider = ev.Provider
	}
	if st.RequestID == nil && ev.RequestID != nil {
		st.RequestID = ev.RequestID
	}
	if st.Tenant == nil && ev.Tenant != nil {
		st.Tenant = ev.Tenant
	}
	prev := st.Status
	outcome := schemas.OutcomeIgnored
	if ev.Status != nil {
		outcome = applyStatus(&st, ev)
	}
	rcp, recipientsChanged := applyRecipients(&st, ev)
	if recipientsChanged && outcome == schemas.OutcomeIgnored {
		outcome = schemas.OutcomeApplied
	}

	entry := schemas.AuditEntry{
		Seq:            st.AuditSeq + 1,
		EnvelopeID:     st.EnvelopeID,
		EventID:        ev.EventID,
		Source:         ev.Source,
		Type:           ev.Type,
		Outcome:        outcome,
		Status:         ev.Status,
		OccurredAt:     ms(ev.OccurredAt),
		RecordedAt:     now,
		SourceIP:       ev.SourceIP,
		UserAgent:      ev.UserAgent,
		DocumentSHA256: ev.DocumentSHA256,
		PrevHash:       st.AuditHead,
	}
	if entry.PrevHash == "" {
		entry.PrevHash = GenesisHash
	}
	if rcp != nil {
		entry.RecipientID = &rcp.RecipientID
		entry.RecipientStatus = &rcp.Status
		entry.IDVerifiedAt = msPtr(rcp.IDVerifiedAt)
		if entry.SourceIP == nil {
			entry.SourceIP = rcp.SourceIP
		}
		if entry.UserAgent == nil {
			entry.UserAgent = rcp.UserAgent
		}
	}
	entry.Hash = Hash(entry)
	st.AuditSeq = entry.Seq
	st.AuditHead = entry.Hash
	st.UpdatedAt = now

	next := Envelope{State: st}
	if outcome == schemas.OutcomeIgnored {
		next.Pending = append(slices.Clone(e.Pending), entry)
		return next, false
	}
	st.Version++
	next.State = st
	*ch = schemas.EnvelopeStatusChanged{
		EnvelopeID:     st.EnvelopeID,
		Version:        st.Version,
		PreviousStatus: prev,
		EventID:        ev.EventID,
		ChangedAt:      now,
		State:          st,
		Audit:          append(append(ch.Audit[:0], e.Pending...), entry),
	}
	if st.Status != nil {
		ch.Status = *st.Status
	} else {
		// A recipient-only event before any envelope event: the envelope
		// exists at the provider, so it is at least CREATED.
		created := schemas.StatusCreated
		next.State.Status, ch.State.Status, ch.Status = &created, &created, created
		next.State.StatusAt, ch.State.StatusAt = ms(ev.OccurredAt), ms(ev.OccurredAt)
	}
	return next, true
}

// applyStatus moves st's status for ev and says what it did.
func applyStatus(st *schemas.EnvelopeState, ev schemas.EnvelopeEvent) schemas.Outcome {
	in := *ev.Status
	if !Valid(in) {
		return schemas.OutcomeIgnored
	}
	set := func() {
		st.Status = &in
		st.StatusAt = ms(ev.OccurredAt)
		if in == schemas.StatusFailed && ev.Reason != nil {
			st.Reason = ev.Reason
		}
	}
	switch {
	case st.Status == nil:
		set()
		return schemas.OutcomeApplied
	case Terminal(*st.Status):
		cur := *st.Status
		switch {
		case !Terminal(in):
			return schemas.OutcomeIgnored
		case ev.Source == schemas.SourcePoll && (in != cur || st.Conflict != nil):
			// The provider is the source of truth: its answer to a
			// poll settles a conflict, or overrides a terminal status
			// it disagrees with.
			set()
			st.Conflict = nil
			return schemas.OutcomeApplied
		case in == cur:
			return schemas.OutcomeIgnored
		default:
			if st.Conflict != nil {
				return schemas.OutcomeIgnored // already reported
			}
			msg := string(cur) + " then " + string(in)
			st.Conflict = &msg
			return schemas.OutcomeConflict
		}
	case statusRank[in] > statusRank[*st.Status]:
		set()
		return schemas.OutcomeApplied
	default:
		return schemas.OutcomeIgnored
	}
}

// applyRecipients applies ev's recipient updates to st, keeping recipients
// sorted by id so that the state does not depend on arrival order. It
// returns the first update that changed something (for the audit entry, or
// the first update when none did) and whether any did.
func applyRecipients(st *schemas.EnvelopeState, ev schemas.EnvelopeEvent) (*schemas.RecipientUpdate, bool) {
	var first *schemas.RecipientUpdate
	changed := false
	for i := range ev.Recipients {
		u := &ev.Recipients[i]
		if !ValidRecipient(u.Status) || u.RecipientID == "" {
			continue
		}
		idx, found := slices.BinarySearchFunc(st.Recipients, u.RecipientID, func(r schemas.RecipientState, id string) int {
			switch {
			case r.RecipientID < id:
				return -1
			case r.RecipientID > id:
				return 1
			}
			return 0
		})
		did := false
		if !found {
			st.Recipients = slices.Insert(st.Recipients, idx, schemas.RecipientState{
				RecipientID: u.RecipientID, Email: u.Email, Name: u.Name,
				Status: u.Status, StatusAt: ms(ev.OccurredAt), IDVerifiedAt: msPtr(u.IDVerifiedAt),
			})
			did = true
		} else {
			r := &st.Recipients[idx]
			if recipientRank[r.Status] < 5 && recipientRank[u.Status] > recipientRank[r.Status] {
				r.Status, r.StatusAt = u.Status, ms(ev.OccurredAt)
				did = true
			}
			// An identity-verification time is learnt once, from whichever
			// event carries it first, whatever that event's status.
			if r.IDVerifiedAt == nil && u.IDVerifiedAt != nil {
				r.IDVerifiedAt = msPtr(u.IDVerifiedAt)
				did = true
			}
			if did && r.Email == "" {
				r.Email, r.Name = u.Email, u.Name
			}
		}
		if did && !changed {
			first, changed = u, true
		}
	}
	if first == nil && len(ev.Recipients) > 0 {
		first = &ev.Recipients[0]
	}
	return first, changed
}

// ms truncates t to the millisecond in UTC: the precision Avro keeps, so a
// hash computed before publishing verifies after a round trip.
func ms(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

func msPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := ms(*t)
	return &v
}
