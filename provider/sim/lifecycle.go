package sim

import (
	"strconv"
	"sync/atomic"
	"time"
)

// statCounters counts what the simulator did; read them with Stats.
type statCounters struct {
	created, sends                                          atomic.Int64
	webhooks, delivered, attempts, failed, lost             atomic.Int64
	dropped, duplicated, delayed, partitioned               atomic.Int64
	apiCalls, apiErrors, apiTimeouts, rateLimited, corrupts atomic.Int64
	saves, saveErrors                                       atomic.Int64
}

// Stats is a snapshot of the simulator's counters.
type Stats struct {
	Envelopes          int64 // created
	Sent               int64 // envelopes sent
	Webhooks           int64 // transitions that produced a webhook
	Delivered          int64 // deliveries answered 2xx (duplicates count twice)
	Attempts           int64 // delivery attempts
	FailedAttempts     int64 // attempts not answered 2xx
	Lost               int64 // webhooks given up after every attempt
	Dropped            int64 // webhooks dropped by fault injection
	Duplicated         int64 // webhooks sent twice by fault injection
	Delayed            int64 // webhooks held back by fault injection
	Partitioned        int64 // attempts refused by the partition window
	APICalls           int64
	APIErrors          int64 // injected 503s
	APITimeouts        int64 // injected timeouts after acting
	RateLimited        int64 // 429s
	CorruptedDownloads int64
	StateSaves         int64 // state file writes (Config.StateFile)
	StateSaveErrors    int64 // state file writes that failed
}

// Stats returns the counters so far.
func (s *Simulator) Stats() Stats {
	c := &s.stats
	return Stats{
		Envelopes: c.created.Load(), Sent: c.sends.Load(), Webhooks: c.webhooks.Load(), Delivered: c.delivered.Load(),
		Attempts: c.attempts.Load(), FailedAttempts: c.failed.Load(), Lost: c.lost.Load(), Dropped: c.dropped.Load(),
		Duplicated: c.duplicated.Load(), Delayed: c.delayed.Load(), Partitioned: c.partitioned.Load(),
		APICalls: c.apiCalls.Load(), APIErrors: c.apiErrors.Load(), APITimeouts: c.apiTimeouts.Load(),
		RateLimited: c.rateLimited.Load(), CorruptedDownloads: c.corrupts.Load(),
		StateSaves: c.saves.Load(), StateSaveErrors: c.saveErrors.Load(),
	}
}

// send starts an envelope's life: called with s.mu held, once.
func (s *Simulator) send(e *envelope, now time.Time) {
	s.stats.sends.Add(1)
	r := s.roll("fate", e.id)
	switch {
	case r < s.cfg.DeclineRate:
		e.fate = "declined"
	case r < s.cfg.DeclineRate+s.cfg.VoidRate:
		e.fate = "voided"
	case r < s.cfg.DeclineRate+s.cfg.VoidRate+s.cfg.ExpireRate:
		e.fate = "expired"
	default:
		e.fate = "completed"
	}
	e.setStatus("sent", now)
	s.emit(e, "envelope.sent", nil, now)
	s.startRound(e, now)
	// A void or an expiry cuts the signing short somewhere along the way.
	if e.fate == "voided" || e.fate == "expired" {
		steps := 3 * len(e.recipients)
		at := time.Duration(float64(steps) * s.roll("cut", e.id) * float64(s.cfg.Step))
		id := e.id
		s.after(at+s.cfg.Step/2, func() { s.cut(id) })
	}
}

// startRound sends to the lowest routing order whose recipients are not
// all done, and schedules their steps. Called with s.mu held.
func (s *Simulator) startRound(e *envelope, now time.Time) {
	order := -1
	for _, r := range e.recipients {
		if r.status != "signed" && (order == -1 || r.RoutingOrder < order) {
			order = r.RoutingOrder
		}
	}
	for _, r := range e.recipients {
		if r.RoutingOrder != order || r.status != "created" {
			continue
		}
		r.setStatus("sent", now)
		s.emit(e, "recipient.sent", r, now)
		// The invitation bounces; the sender corrects the address and
		// the recipient goes on as if nothing happened.
		if s.roll("bounce", e.id, r.ID) < s.faults.BounceOnce {
			s.emit(e, "recipient.bounced", r, now.Add(time.Millisecond))
		}
		s.schedule(e.id, r.ID, 1)
	}
}

var steps = []string{"created", "sent", "delivered", "viewed", "signed"}

// schedule plans a recipient's next step.
func (s *Simulator) schedule(envID, rid string, step int) {
	d := s.jitter("step", envID, rid, strconv.Itoa(step))
	s.after(d, func() { s.advance(envID, rid, step, false) })
}

// advance moves a recipient one step and the envelope with it. retry is
// the signature tried again after a failed authentication, which does
// not fail again: a recipient fails at most once.
func (s *Simulator) advance(envID, rid string, step int, retry bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.envelopes[envID]
	if e == nil || terminal(e.status) {
		return
	}
	var r *recipient
	for _, x := range e.recipients {
		if x.ID == rid {
			r = x
		}
	}
	now := time.Now()
	next := steps[step+1]
	last := r.RoutingOrder == maxOrder(e) && remaining(e) == 1
	if next == "signed" && e.fate == "declined" && last {
		r.setStatus("declined", now)
		e.setStatus("declined", now)
		e.reason = "declined by the signer"
		s.emit(e, "recipient.declined", r, now)
		return
	}
	// The signer gets the SMS code (or the ID check) wrong once, then
	// right: the status stays viewed until the signature.
	if next == "signed" && !retry && s.roll("authfail", envID, rid) < s.faults.AuthFailOnce {
		s.emit(e, "recipient.auth_failed", r, now)
		d := s.jitter("step", envID, rid, "retry")
		s.after(d, func() { s.advance(envID, rid, step, true) })
		return
	}
	r.setStatus(next, now)
	if next == "viewed" || next == "signed" {
		r.ip = "198.51.100." + strconv.Itoa(1+int(s.roll("ip", envID, rid)*250))
		r.agent = "Mozilla/5.0 (esignflow-sim)"
	}
	if next == "signed" && r.Auth != "" && r.Auth != "email" && r.Auth != "EMAIL" {
		v := now.Add(-s.cfg.Step / 4)
		r.verifiedAt = &v
	}
	switch next {
	case "delivered":
		if e.status == "sent" {
			e.setStatus("delivered", now)
		}
	case "viewed":
		if e.status == "sent" || e.status == "delivered" {
			e.setStatus("viewed", now)
		}
	case "signed":
		if remaining(e) == 0 {
			e.setStatus("completed", now)
		} else {
			e.setStatus("partially_signed", now)
		}
	}
	s.emit(e, "recipient."+next, r, now)
	switch {
	case next != "signed":
		s.schedule(envID, rid, step+1)
	case e.status == "partially_signed":
		s.startRound(e, now)
	}
}

// cut voids or expires an envelope that is still in progress.
func (s *Simulator) cut(envID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.envelopes[envID]
	if e == nil || terminal(e.status) {
		return
	}
	now := time.Now()
	e.setStatus(e.fate, now)
	e.reason = map[string]string{"voided": "voided by the sender", "expired": "the envelope expired"}[e.fate]
	s.emit(e, "envelope."+e.fate, nil, now)
}

func remaining(e *envelope) int {
	n := 0
	for _, r := range e.recipients {
		if r.status != "signed" {
			n++
		}
	}
	return n
}

func maxOrder(e *envelope) int {
	m := 0
	for _, r := range e.recipients {
		m = max(m, r.RoutingOrder)
	}
	return m
}
