package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

// Webhook is the JSON body of every simulator webhook.
type Webhook struct {
	ID        string      `json:"id"`
	Type      string      `json:"type"`
	CreatedAt time.Time   `json:"created_at"`
	Data      WebhookData `json:"data"`
}

// WebhookData is the envelope a webhook is about, after the transition.
type WebhookData struct {
	EnvelopeID      string            `json:"envelope_id"`
	Status          string            `json:"status"`
	StatusChangedAt time.Time         `json:"status_changed_at"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	Recipient       *WebhookRecipient `json:"recipient,omitempty"`
}

// WebhookRecipient is the recipient a transition is about.
type WebhookRecipient struct {
	ID           string     `json:"id"`
	Email        string     `json:"email"`
	Name         string     `json:"name"`
	Status       string     `json:"status"`
	IPAddress    string     `json:"ip_address,omitempty"`
	UserAgent    string     `json:"user_agent,omitempty"`
	IDVerifiedAt *time.Time `json:"id_verified_at,omitempty"`
}

// delivery is one webhook on its way, attempt counting from 0.
type delivery struct {
	id      string
	msg     Message
	attempt int
}

// emit records a transition and queues the webhooks the dialect makes of
// it (a Deferred one after its Defer), applying the drop, duplicate and
// delay faults to each. Called with s.mu held.
func (s *Simulator) emit(e *envelope, typ string, r *recipient, now time.Time) {
	s.changed()
	e.events++
	if s.cfg.WebhookURL == "" {
		return
	}
	t := Transition{ID: "evt_" + e.id + "_" + itoa(e.events), Type: typ, At: now, Envelope: e.info()}
	if r != nil {
		ri := r.info()
		t.Recipient = &ri
	}
	f := s.faults
	for i, m := range s.dialect.Webhooks(t) {
		id := t.ID // the first webhook draws its faults as the standard one always did
		if i > 0 {
			id += "." + strconv.Itoa(i)
		}
		s.stats.webhooks.Add(1)
		if s.roll("drop", id) < f.Drop {
			s.stats.dropped.Add(1)
			continue
		}
		var later time.Duration
		if dm, ok := m.(Deferred); ok {
			later = max(0, dm.Defer())
		}
		copies := 1
		if s.roll("duplicate", id) < f.Duplicate {
			s.stats.duplicated.Add(1)
			copies = 2
		}
		for c := range copies {
			var wait time.Duration
			if s.roll("delay", id, strconv.Itoa(c)) < f.Delay {
				s.stats.delayed.Add(1)
				wait = time.Duration(s.roll("delay-for", id, strconv.Itoa(c)) * float64(f.MaxDelay))
			}
			s.enqueue(delivery{id: id, msg: m}, later+wait)
		}
	}
}

// enqueue hands d to the delivery workers after wait.
func (s *Simulator) enqueue(d delivery, wait time.Duration) {
	s.after(wait, func() {
		select {
		case s.deliveries <- d:
		case <-s.stop:
		}
	})
}

// deliver is one delivery worker: it posts webhooks until ctx ends.
func (s *Simulator) deliver(ctx context.Context, client *http.Client) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-s.deliveries:
			s.attempt(ctx, client, d)
		}
	}
}

func (s *Simulator) attempt(ctx context.Context, client *http.Client, d delivery) {
	s.stats.attempts.Add(1)
	retryAfter, err := s.post(ctx, client, d)
	if err == nil {
		s.stats.delivered.Add(1)
		return
	}
	s.stats.failed.Add(1)
	if ctx.Err() != nil {
		return
	}
	if d.attempt+1 >= s.cfg.DeliveryAttempts {
		s.stats.lost.Add(1)
		s.log.Warn("webhook lost after every attempt", "webhook_id", d.id, "attempts", d.attempt+1, "err", err)
		return
	}
	wait := s.cfg.RetryBase << d.attempt
	if wait > s.cfg.RetryMax || wait <= 0 {
		wait = s.cfg.RetryMax
	}
	if retryAfter > 0 {
		wait = min(max(wait, retryAfter), s.cfg.RetryMax)
	}
	d.attempt++
	s.enqueue(d, wait)
}

var errPartition = errors.New("partitioned")

// accepted judges a delivery's answer (its status and up to 64 KiB of its
// body): the message's own Acceptor, else the dialect's, else any 2xx.
func (s *Simulator) accepted(m Message, status int, body []byte) bool {
	if a, ok := m.(Acceptor); ok {
		return a.Accepted(status, body)
	}
	if a, ok := s.dialect.(Acceptor); ok {
		return a.Accepted(status, body)
	}
	return status/100 == 2
}

// post makes one delivery attempt; a nil error means the answer was
// accepted (see accepted).
func (s *Simulator) post(ctx context.Context, client *http.Client, d delivery) (time.Duration, error) {
	s.mu.Lock()
	f, started := s.faults, s.started
	s.mu.Unlock()
	if f.PartitionFor > 0 {
		since := time.Since(started)
		if since >= f.PartitionFrom && since < f.PartitionFrom+f.PartitionFor {
			s.stats.partitioned.Add(1)
			return f.PartitionFrom + f.PartitionFor - since, errPartition
		}
	}
	body, h := d.msg.Encode(d.attempt, time.Now())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "esignflow-sim/1")
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if s.accepted(d.msg, resp.StatusCode, answer) {
		return 0, nil
	}
	if resp.StatusCode/100 == 2 {
		return 0, fmt.Errorf("webhook %s: HTTP %d with an answer the dialect does not accept", d.id, resp.StatusCode)
	}
	var ra time.Duration
	if sec, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		ra = time.Duration(sec) * time.Second
	}
	return ra, fmt.Errorf("webhook %s: HTTP %d", d.id, resp.StatusCode)
}

// ErrMalformed means a webhook body is not a simulator webhook.
var ErrMalformed = errors.New("sim: malformed webhook")

// ParseWebhook normalises a verified simulator webhook body into events.
// The webhook id is the event id, so a redelivery deduplicates.
func ParseWebhook(body []byte) ([]schemas.EnvelopeEvent, error) {
	var w Webhook
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if w.ID == "" || w.Data.EnvelopeID == "" || w.CreatedAt.IsZero() {
		return nil, fmt.Errorf("%w: id, created_at and data.envelope_id are required", ErrMalformed)
	}
	st := normStatus(w.Data.Status)
	if st == schemas.StatusCreated && w.Data.Status != "created" {
		return nil, fmt.Errorf("%w: unknown status %q", ErrMalformed, w.Data.Status)
	}
	ev := schemas.EnvelopeEvent{
		EventID: w.ID, Provider: "sim", EnvelopeID: w.Data.EnvelopeID, Source: schemas.SourceWebhook,
		Type: w.Type, Status: &st, OccurredAt: w.CreatedAt, Recipients: []schemas.RecipientUpdate{},
		Metadata: map[string]string{},
	}
	if rid := w.Data.Metadata[provider.RequestIDKey]; rid != "" {
		ev.RequestID = &rid
	}
	if t := w.Data.Metadata[provider.TenantKey]; t != "" {
		ev.Tenant = &t
	}
	if r := w.Data.Recipient; r != nil {
		rs, ok := recipientStatus(r.Status)
		if !ok || r.ID == "" {
			return nil, fmt.Errorf("%w: recipient %q status %q", ErrMalformed, r.ID, r.Status)
		}
		u := schemas.RecipientUpdate{RecipientID: r.ID, Email: r.Email, Name: r.Name, Status: rs, IDVerifiedAt: r.IDVerifiedAt}
		if r.IPAddress != "" {
			u.SourceIP = &r.IPAddress
		}
		if r.UserAgent != "" {
			u.UserAgent = &r.UserAgent
		}
		ev.Recipients = append(ev.Recipients, u)
	}
	return []schemas.EnvelopeEvent{ev}, nil
}

func recipientStatus(s string) (schemas.RecipientStatus, bool) {
	switch s {
	case "created", "sent", "delivered", "viewed", "signed", "declined":
		return schemas.RecipientStatus(strings.ToUpper(s)), true
	}
	return "", false
}
