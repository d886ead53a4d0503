// Package docusign verifies and normalises DocuSign Connect webhooks (JSON
// SIM, Connect 2.0, REST v2.1).
//
// Connect signs the raw body with every active HMAC key, one header each:
// X-DocuSign-Signature-1, -2, … = base64(HMAC-SHA256(key, body)), where the
// key is the secret string's UTF-8 bytes (it looks like base64 but is not
// decoded). Connect payloads carry no event id, so the dedup id is derived
// from the envelope, the event, the recipient and generatedDateTime.
package docusign

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

// Errors.
var (
	ErrNoSignature = errors.New("docusign: no X-DocuSign-Signature header")
	ErrNoMatch     = errors.New("docusign: no signature matches any active key")
	ErrMalformed   = errors.New("docusign: malformed Connect payload")
	// ErrIgnored means the event is authentic but says nothing about an
	// envelope's status (e.g. envelope-purge).
	ErrIgnored = errors.New("docusign: event carries no status")
)

// maxSignatureHeaders bounds how many X-DocuSign-Signature-N headers are
// read (DocuSign allows up to 100 keys).
const maxSignatureHeaders = 100

// Verify checks the body against every X-DocuSign-Signature-N header with
// every key, in constant time per comparison.
func Verify(keys [][]byte, h http.Header, body []byte) error {
	var sigs [][]byte
	for i := 1; i <= maxSignatureHeaders; i++ {
		v := h.Get("X-DocuSign-Signature-" + strconv.Itoa(i))
		if v == "" {
			break
		}
		if b, err := base64.StdEncoding.DecodeString(v); err == nil {
			sigs = append(sigs, b)
		}
	}
	if len(sigs) == 0 {
		return ErrNoSignature
	}
	for _, k := range keys {
		m := hmac.New(sha256.New, k)
		m.Write(body)
		want := m.Sum(nil)
		for _, s := range sigs {
			if hmac.Equal(want, s) {
				return nil
			}
		}
	}
	return ErrNoMatch
}

// Payload is the part of a Connect JSON SIM message esignflow reads.
type Payload struct {
	Event             string    `json:"event"`
	GeneratedDateTime time.Time `json:"generatedDateTime"`
	RetryCount        int       `json:"retryCount"`
	Data              struct {
		AccountID       string  `json:"accountId"`
		RecipientID     string  `json:"recipientId"`
		EnvelopeID      string  `json:"envelopeId"`
		EnvelopeSummary Summary `json:"envelopeSummary"`
	} `json:"data"`
}

// Summary is envelopeSummary.
type Summary struct {
	Status                string `json:"status"`
	StatusChangedDateTime string `json:"statusChangedDateTime"`
	Recipients            struct {
		Signers []Signer `json:"signers"`
	} `json:"recipients"`
	CustomFields struct {
		TextCustomFields []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"textCustomFields"`
	} `json:"customFields"`
}

// Signer is one signer of envelopeSummary.recipients.
type Signer struct {
	RecipientID   string `json:"recipientId"`
	Email         string `json:"email"`
	Name          string `json:"name"`
	Status        string `json:"status"`
	RoutingOrder  string `json:"routingOrder"`
	SignedDate    string `json:"signedDateTime"`
	DeliveredDate string `json:"deliveredDateTime"`
}

var envelopeStatus = map[string]schemas.Status{
	"created": schemas.StatusCreated, "sent": schemas.StatusSent, "delivered": schemas.StatusDelivered,
	"signed": schemas.StatusPartiallySigned, "completed": schemas.StatusCompleted,
	"declined": schemas.StatusDeclined, "voided": schemas.StatusVoided,
}

var recipientStatus = map[string]schemas.RecipientStatus{
	"created": schemas.RecipientCreated, "sent": schemas.RecipientSent,
	"delivered": schemas.RecipientViewed, // DocuSign's delivered means opened
	"signed":    schemas.RecipientSigned, "completed": schemas.RecipientSigned,
	"declined": schemas.RecipientDeclined, "autoresponded": schemas.RecipientFailed,
	"authenticationfailed": schemas.RecipientFailed,
}

// Parse normalises a verified Connect message into events.
func Parse(body []byte) ([]schemas.EnvelopeEvent, error) {
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if p.Event == "" || p.Data.EnvelopeID == "" || p.GeneratedDateTime.IsZero() {
		return nil, fmt.Errorf("%w: event, generatedDateTime and data.envelopeId are required", ErrMalformed)
	}
	kind, action, _ := strings.Cut(p.Event, "-")
	ev := schemas.EnvelopeEvent{
		Provider: "docusign", EnvelopeID: p.Data.EnvelopeID, Source: schemas.SourceWebhook, Type: p.Event,
		OccurredAt: p.GeneratedDateTime, Recipients: []schemas.RecipientUpdate{}, Metadata: map[string]string{},
	}
	for _, f := range p.Data.EnvelopeSummary.CustomFields.TextCustomFields {
		switch f.Name {
		case provider.RequestIDKey:
			v := f.Value
			ev.RequestID = &v
		case provider.TenantKey:
			v := f.Value
			ev.Tenant = &v
		}
	}
	if st, ok := envelopeStatus[strings.ToLower(p.Data.EnvelopeSummary.Status)]; ok {
		ev.Status = &st
	}
	switch kind {
	case "envelope":
		if st, ok := envelopeStatus[action]; ok {
			ev.Status = &st // trigger on the event, not the summary
		}
	case "recipient":
		rs, ok := recipientStatus[action]
		if !ok || p.Data.RecipientID == "" {
			return nil, fmt.Errorf("%w: %s", ErrIgnored, p.Event)
		}
		u := schemas.RecipientUpdate{RecipientID: p.Data.RecipientID, Status: rs}
		for _, s := range p.Data.EnvelopeSummary.Recipients.Signers {
			if s.RecipientID == p.Data.RecipientID {
				u.Email, u.Name = s.Email, s.Name
			}
		}
		ev.Recipients = append(ev.Recipients, u)
	}
	if ev.Status == nil && len(ev.Recipients) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrIgnored, p.Event)
	}
	ev.EventID = envelope.EventID("docusign", p.Data.EnvelopeID, p.Event, p.Data.RecipientID, p.GeneratedDateTime)
	return []schemas.EnvelopeEvent{ev}, nil
}
