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
//
// Recipients follow what real providers do to them, which is not always
// forward. Their statuses rank CREATED < {SENT, BOUNCED} < DELIVERED <
// {VIEWED, AUTH_FAILED} < {SIGNED, DECLINED} < REPLACED, the last two
// ranks final (between SIGNED and DECLINED the first stays, as between
// terminal envelope statuses; nobody is reassigned after either, so
// REPLACED wins over a summary that said otherwise). A bounced invitation
// or a failed authentication (an SMS code, an ID check) is not final: the
// sender can correct the address and resend, the signer can try again.
// Within the ranks that hold two
// statuses the one the provider reported last (occurred_at) wins, and at
// the same millisecond the failure (it is caused by the send or the view
// it ties with); a recipient's status_at in those ranks is the last time
// the provider reported its status. So any order of the same events gives
// the same recipients. A reassigned or delegated recipient is REPLACED,
// with replaced_by naming the new one, whose replaces names it back; the
// audit entry of the event keeps both. FAILED is no longer written: older
// versions wrote it for bounces, and it is read as one (ranked with SENT),
// so an envelope in flight across an upgrade is not stuck with it.
//
// An envelope correction or resend (EnvelopeEvent.Kind) is a change of its
// own kind (ChangeKind CORRECTED or RESENT) while the envelope is not
// terminal, even when it moves nothing; it never moves the status back.
package envelope

import (
	"slices"
	"strings"
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
	schemas.RecipientCreated:    1,
	schemas.RecipientSent:       2,
	schemas.RecipientBounced:    2,
	schemas.RecipientDelivered:  3,
	schemas.RecipientViewed:     4,
	schemas.RecipientAuthFailed: 4,
	schemas.RecipientSigned:     finalRank,
	schemas.RecipientDeclined:   finalRank,
	// A recipient cannot be reassigned once they signed or declined: a
	// summary that says so of a replaced one is wrong, and REPLACED wins.
	schemas.RecipientReplaced: finalRank + 1,
	// Older versions wrote FAILED for a bounced or auto-answered
	// invitation, and for nothing else: it is read as the bounce it was.
	schemas.RecipientFailed: 2,
}

// finalRank is the rank of SIGNED and DECLINED; every rank from it up is
// final.
const finalRank = 5

// tiebreak orders the statuses of one rank reported at the same
// millisecond: the failure wins, as the send or the view caused it (and
// BOUNCED wins over the FAILED older versions wrote for it).
var tiebreak = map[schemas.RecipientStatus]int{
	schemas.RecipientFailed: 1, schemas.RecipientBounced: 2, schemas.RecipientAuthFailed: 1,
}

// contested reports whether rank holds two statuses, between which time
// decides.
func contested(rank int) bool { return rank == 2 || rank == 4 }

// RecipientFinal reports whether a recipient's status is final: SIGNED,
// DECLINED or REPLACED.
func RecipientFinal(s schemas.RecipientStatus) bool { return recipientRank[s] >= finalRank }

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
	// The request's content hash comes with the create's event and stays:
	// the changelog carries it for the request index a restore rebuilds,
	// and a later event never names another request.
	if st.RequestHash == nil && ev.RequestHash != nil {
		st.RequestHash = ev.RequestHash
	}
	// An envelope esignflow created carries its request id in every event
	// (its provider metadata); one that never showed one was created
	// outside esignflow and adopted (the processor ignores such events
	// unless it adopts them).
	st.Foreign = st.RequestID == nil
	prev, prevConflict := st.Status, st.Conflict
	outcome := schemas.OutcomeIgnored
	if ev.Status != nil {
		outcome = applyStatus(&st, ev)
	}
	rcp, recipientsChanged := applyRecipients(&st, ev)
	if recipientsChanged && outcome == schemas.OutcomeIgnored {
		outcome = schemas.OutcomeApplied
	}
	// A correction or a resend is news of its own while the envelope is
	// in progress; once it is terminal, a late one is only history.
	kind := schemas.ChangeKindStatus
	if k := eventKind(ev.Kind); k != schemas.EventKindStatus && !(prev != nil && Terminal(*prev)) {
		kind = map[schemas.EventKind]schemas.ChangeKind{schemas.EventKindCorrected: schemas.ChangeKindCorrected, schemas.EventKindResent: schemas.ChangeKindResent}[k]
		if outcome == schemas.OutcomeIgnored {
			outcome = schemas.OutcomeApplied
		}
	} else if prev != nil && st.Status != nil && *prev == *st.Status && (prevConflict == nil) == (st.Conflict == nil) {
		kind = schemas.ChangeKindRecipient
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
	if k := eventKind(ev.Kind); k != schemas.EventKindStatus {
		entry.Kind = &k
	}
	if rcp != nil {
		entry.RecipientID = &rcp.RecipientID
		entry.RecipientStatus = &rcp.Status
		if rcp.Replaces != nil && *rcp.Replaces != "" && *rcp.Replaces != rcp.RecipientID {
			entry.Replaces = rcp.Replaces
		}
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
		Kind:           kind,
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

// eventKind is k, or STATUS for a kind this version does not know.
func eventKind(k schemas.EventKind) schemas.EventKind {
	if k > schemas.EventKindResent {
		return schemas.EventKindStatus
	}
	return k
}

// applyRecipients applies ev's recipient updates to st, keeping recipients
// sorted by id so that the state does not depend on arrival order. It
// returns the update for the audit entry — the first that replaced a
// recipient, else the first that changed something, else the first — and
// whether any changed something.
func applyRecipients(st *schemas.EnvelopeState, ev schemas.EnvelopeEvent) (*schemas.RecipientUpdate, bool) {
	var first, link *schemas.RecipientUpdate
	changed := false
	at := ms(ev.OccurredAt)
	for i := range ev.Recipients {
		u := &ev.Recipients[i]
		if !ValidRecipient(u.Status) || u.RecipientID == "" {
			continue
		}
		r, did := recipient(st, u.RecipientID) // a new recipient is a change
		if did {
			*r = schemas.RecipientState{
				RecipientID: u.RecipientID, Email: u.Email, Name: u.Name,
				Status: u.Status, StatusAt: at, IDVerifiedAt: msPtr(u.IDVerifiedAt),
			}
		} else {
			did = move(r, u.Status, at)
			// An identity-verification time is learnt once, from whichever
			// event carries it first, whatever that event's status; so are
			// the address and the name, which a replacement's stub lacks.
			if r.IDVerifiedAt == nil && u.IDVerifiedAt != nil {
				r.IDVerifiedAt = msPtr(u.IDVerifiedAt)
				did = true
			}
			if r.Email == "" && u.Email != "" {
				r.Email, did = u.Email, true
			}
			if r.Name == "" && u.Name != "" {
				r.Name, did = u.Name, true
			}
		}
		if u.Replaces != nil && *u.Replaces != "" && *u.Replaces != u.RecipientID {
			if r.Replaces == nil {
				r.Replaces, did = u.Replaces, true
			}
			// The replaced one: a stub when it was not seen yet, so that
			// its own earlier events, arriving later, find it final.
			newID := u.RecipientID
			o, added := recipient(st, *u.Replaces)
			switch {
			case added:
				*o = schemas.RecipientState{RecipientID: *u.Replaces, Status: schemas.RecipientReplaced, StatusAt: at, ReplacedBy: &newID}
				did = true
			case o.Status != schemas.RecipientReplaced:
				o.Status, o.StatusAt, o.ReplacedBy = schemas.RecipientReplaced, at, &newID
				did = true
			case o.ReplacedBy == nil:
				o.ReplacedBy, did = &newID, true
			}
			if did && link == nil {
				link = u
			}
		}
		if did && !changed {
			first, changed = u, true
		}
	}
	if link != nil {
		return link, true
	}
	if first == nil && len(ev.Recipients) > 0 {
		first = &ev.Recipients[0]
	}
	return first, changed
}

// recipient returns st's recipient id, inserting a zero one (RecipientID
// "") in its sorted place when there is none; true when it inserted. The
// pointer is valid until the next insertion.
func recipient(st *schemas.EnvelopeState, id string) (*schemas.RecipientState, bool) {
	idx, found := slices.BinarySearchFunc(st.Recipients, id, func(r schemas.RecipientState, id string) int {
		return strings.Compare(r.RecipientID, id)
	})
	if !found {
		st.Recipients = slices.Insert(st.Recipients, idx, schemas.RecipientState{})
	}
	return &st.Recipients[idx], !found
}

// move moves r to status in, reported at at, when the ranks allow it, and
// reports whether its status changed. A higher rank wins (REPLACED ranks
// above SIGNED and DECLINED); a final status stays against its own rank;
// within a rank of two statuses the later report wins (see tiebreak for a
// tie), and a later report of the same status only moves status_at,
// which is no change to publish but keeps the order of arrival out of the
// outcome.
func move(r *schemas.RecipientState, in schemas.RecipientStatus, at time.Time) bool {
	cur := r.Status
	rc, ri := recipientRank[cur], recipientRank[in]
	switch {
	case ri < rc || (ri == rc && RecipientFinal(cur)):
		return false
	case ri > rc:
		r.Status, r.StatusAt = in, at
		return true
	case !contested(ri):
		return false
	case at.After(r.StatusAt) || (at.Equal(r.StatusAt) && tiebreak[in] > tiebreak[cur]):
		r.StatusAt = at
		if in == cur {
			return false
		}
		r.Status = in
		return true
	}
	return false
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
