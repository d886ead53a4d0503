// Package dropboxsign verifies and normalises Dropbox Sign (HelloSign)
// callbacks.
//
// Dropbox Sign posts multipart/form-data with the JSON in the form field
// "json" (a plain JSON body is accepted too) and signs inside the body:
// event.event_hash = hex(HMAC-SHA256(key = API key, msg = event_time +
// event_type)). The receiver must answer 200 with a body containing "Hello
// API Event Received", or the callback is retried for about three days with
// the same event_time — which is why no freshness window is applied: a
// replay is caught by the dedup id instead.
package dropboxsign

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"strconv"
	"strings"
	"time"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

// Reply is the body Dropbox Sign expects in the answer.
const Reply = "Hello API Event Received"

// Errors.
var (
	ErrMalformed = errors.New("dropboxsign: malformed callback")
	ErrNoMatch   = errors.New("dropboxsign: event_hash matches no API key")
	// ErrIgnored means the callback is authentic but carries no status
	// (callback_test, signature_request_downloadable, reminders…).
	ErrIgnored = errors.New("dropboxsign: event carries no status")
)

// Callback is the part of a callback esignflow reads.
type Callback struct {
	Event struct {
		Time     string `json:"event_time"`
		Type     string `json:"event_type"`
		Hash     string `json:"event_hash"`
		Metadata struct {
			RelatedSignatureID string `json:"related_signature_id"`
		} `json:"event_metadata"`
	} `json:"event"`
	SignatureRequest *struct {
		ID         string         `json:"signature_request_id"`
		IsComplete bool           `json:"is_complete"`
		IsDeclined bool           `json:"is_declined"`
		Metadata   map[string]any `json:"metadata"`
		Signatures []Signature    `json:"signatures"`
	} `json:"signature_request"`
}

// Signature is one signer.
type Signature struct {
	ID     string `json:"signature_id"`
	Email  string `json:"signer_email_address"`
	Name   string `json:"signer_name"`
	Status string `json:"status_code"`
	// ReassignedFrom is the signature this one replaces ("Previous
	// signature identifier"), set once its signer reassigned it.
	ReassignedFrom string `json:"reassigned_from"`
}

// Decode extracts the callback JSON from a multipart form (field "json") or
// a plain JSON body.
func Decode(contentType string, body []byte) (Callback, error) {
	var c Callback
	raw := body
	if mt, params, err := mime.ParseMediaType(contentType); err == nil && strings.HasPrefix(mt, "multipart/") {
		r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		raw = nil
		for {
			part, err := r.NextPart()
			if err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return c, fmt.Errorf("%w: multipart: %w", ErrMalformed, err)
			}
			if part.FormName() == "json" {
				if raw, err = io.ReadAll(io.LimitReader(part, int64(len(body)))); err != nil {
					return c, fmt.Errorf("%w: %w", ErrMalformed, err)
				}
				break
			}
		}
		if raw == nil {
			return c, fmt.Errorf("%w: no json form field", ErrMalformed)
		}
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if c.Event.Type == "" || c.Event.Time == "" || c.Event.Hash == "" {
		return c, fmt.Errorf("%w: event_type, event_time and event_hash are required", ErrMalformed)
	}
	return c, nil
}

// Verify checks event_hash against every API key, in constant time.
func Verify(keys [][]byte, c Callback) error {
	got, err := hex.DecodeString(strings.ToLower(c.Event.Hash))
	if err != nil {
		return ErrNoMatch
	}
	for _, k := range keys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(c.Event.Time + c.Event.Type))
		if hmac.Equal(m.Sum(nil), got) {
			return nil
		}
	}
	return ErrNoMatch
}

var eventStatus = map[string]schemas.Status{
	"signature_request_sent":       schemas.StatusSent,
	"signature_request_viewed":     schemas.StatusViewed,
	"signature_request_signed":     schemas.StatusPartiallySigned,
	"signature_request_all_signed": schemas.StatusCompleted,
	"signature_request_declined":   schemas.StatusDeclined,
	"signature_request_canceled":   schemas.StatusVoided,
	"signature_request_expired":    schemas.StatusExpired,
	"signature_request_invalid":    schemas.StatusFailed,
	// A bounce or a reassignment happens to a request that was sent;
	// what they say is about one signer (see Parse).
	"signature_request_email_bounce": schemas.StatusSent,
	"signature_request_reassigned":   schemas.StatusSent,
}

// Parse normalises a verified callback into events: the event's status and
// every signature of the request with its status (SignerStatus, as the
// API's answers are read: error_invalid_email, an invitation that could
// not be delivered, is BOUNCED, which the sender can correct). The signature the event
// is about (event_metadata.related_signature_id) is VIEWED for
// signature_request_viewed and BOUNCED for signature_request_email_bounce
// (not final: the sender can correct the address). A signature with
// reassigned_from replaces that one (signature_request_reassigned), which
// becomes REPLACED whether or not it is still listed. A reminder
// (signature_request_remind) is not a resend and is ErrIgnored, like the
// other events that carry no status.
func Parse(c Callback) ([]schemas.EnvelopeEvent, error) {
	st, ok := eventStatus[c.Event.Type]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrIgnored, c.Event.Type)
	}
	if c.SignatureRequest == nil || c.SignatureRequest.ID == "" {
		return nil, fmt.Errorf("%w: no signature_request", ErrMalformed)
	}
	sec, err := strconv.ParseInt(c.Event.Time, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: event_time %q", ErrMalformed, c.Event.Time)
	}
	at := time.Unix(sec, 0).UTC()
	sr := c.SignatureRequest
	ev := schemas.EnvelopeEvent{
		Provider: "dropboxsign", EnvelopeID: sr.ID, Source: schemas.SourceWebhook, Type: c.Event.Type,
		Status: &st, OccurredAt: at, Recipients: []schemas.RecipientUpdate{}, Metadata: map[string]string{},
	}
	if v, ok := sr.Metadata[provider.RequestIDKey].(string); ok && v != "" {
		ev.RequestID = &v
	}
	if v, ok := sr.Metadata[provider.TenantKey].(string); ok && v != "" {
		ev.Tenant = &v
	}
	related := c.Event.Metadata.RelatedSignatureID
	for _, s := range sr.Signatures {
		rs, ok := SignerStatus(s.Status, false, false)
		if !ok {
			continue
		}
		if s.ID == related && rs == schemas.RecipientSent {
			switch c.Event.Type {
			case "signature_request_viewed":
				rs = schemas.RecipientViewed
			case "signature_request_email_bounce":
				rs = schemas.RecipientBounced
			}
		}
		u := schemas.RecipientUpdate{RecipientID: s.ID, Email: s.Email, Name: s.Name, Status: rs}
		if s.ReassignedFrom != "" && s.ReassignedFrom != s.ID {
			from := s.ReassignedFrom
			u.Replaces = &from
		}
		ev.Recipients = append(ev.Recipients, u)
	}
	ev.EventID = envelope.EventID("dropboxsign", sr.ID, c.Event.Type, related, at)
	return []schemas.EnvelopeEvent{ev}, nil
}
