// Package docusign is esignflow's DocuSign provider: a client for the
// eSignature REST API v2.1 authenticated with the JWT grant (Client, a
// provider.Provider), and the verification and normalisation of DocuSign
// Connect webhooks (JSON SIM, Connect 2.0, REST v2.1: Verify, Parse).
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
	"slices"
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
	VoidedReason          string `json:"voidedReason"`
	Recipients            struct {
		Signers      []Signer `json:"signers"`
		CarbonCopies []Signer `json:"carbonCopies"`
	} `json:"recipients"`
	CustomFields struct {
		TextCustomFields []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"textCustomFields"`
	} `json:"customFields"`
}

// Signer is one signer (or carbon copy) of envelopeSummary.recipients.
type Signer struct {
	RecipientID         string `json:"recipientId"`
	Email               string `json:"email"`
	Name                string `json:"name"`
	Status              string `json:"status"`
	RoutingOrder        string `json:"routingOrder"`
	SignedDate          string `json:"signedDateTime"`
	DeliveredDate       string `json:"deliveredDateTime"`
	DeclinedReason      string `json:"declinedReason"`
	AutoRespondedReason string `json:"autoRespondedReason"`
}

// recipientEvent is the recipient status a recipient-* event reports for
// the recipient it names. A failed authentication and a bounce are not
// final (the state machine lets a later step move the recipient on); a
// resend sends again; replaced means a reassignment or delegation, which
// replaces the named recipient by a new one (see replacement).
var recipientEvent = map[string]schemas.RecipientStatus{
	"sent": schemas.RecipientSent, "resent": schemas.RecipientSent,
	"delivered": schemas.RecipientViewed, "finish-later": schemas.RecipientViewed,
	"completed": schemas.RecipientSigned, "signed": schemas.RecipientSigned,
	"declined": schemas.RecipientDeclined, "autoresponded": schemas.RecipientBounced,
	"authenticationfailed": schemas.RecipientAuthFailed,
	"reassign":             schemas.RecipientReplaced, "delegate": schemas.RecipientReplaced,
}

// envelopeEvent says of each envelope-* event esignflow reads whether the
// status comes from the event (true) or from the summary (false: a
// correction or a resend, which never moves the status back); absent for
// events that say nothing about it.
var envelopeEvent = map[string]bool{
	"created": true, "sent": true, "delivered": true, "signed": true, "completed": true,
	"declined": true, "voided": true,
	"corrected": false, "resent": false,
}

// envelopeKind is the kind of the envelope-* events that are changes of
// their own.
var envelopeKind = map[string]schemas.EventKind{"corrected": schemas.EventKindCorrected, "resent": schemas.EventKindResent}

// Parse normalises a verified Connect message into events.
//
// Envelope events set the envelope's status from the event (an expired
// envelope, voided by DocuSign with a reason saying so, is EXPIRED) and
// carry every recipient of the summary; envelope-corrected and
// envelope-resent are events of kind CORRECTED and RESENT with the
// summary's status, so they are changes of their own that move nothing
// back; envelope-purge, -deleted and -discard are ErrIgnored. Recipient
// events carry the named recipient (data.recipientId) with the event's
// status, and the summary's envelope status: recipient-authenticationfailed
// is AUTH_FAILED and recipient-autoresponded BOUNCED, neither final.
// recipient-reassign and -delegate carry every recipient of the summary:
// the named one REPLACED, and the one that replaces it (see replacement)
// with replaces naming it.
// The request id and tenant come from the envelope's text custom fields
// (provider.RequestIDKey, provider.TenantKey), which are also the event's
// metadata. The event's Type is DocuSign's event name.
func Parse(body []byte) ([]schemas.EnvelopeEvent, error) {
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if p.Event == "" || p.Data.EnvelopeID == "" || p.GeneratedDateTime.IsZero() {
		return nil, fmt.Errorf("%w: event, generatedDateTime and data.envelopeId are required", ErrMalformed)
	}
	sum := p.Data.EnvelopeSummary
	kind, action, _ := strings.Cut(strings.ToLower(p.Event), "-")
	ev := schemas.EnvelopeEvent{
		Provider: "docusign", EnvelopeID: p.Data.EnvelopeID, Source: schemas.SourceWebhook, Type: p.Event,
		OccurredAt: p.GeneratedDateTime, Recipients: []schemas.RecipientUpdate{}, Metadata: map[string]string{},
	}
	for _, f := range sum.CustomFields.TextCustomFields {
		ev.Metadata[f.Name] = f.Value
		switch f.Name {
		case provider.RequestIDKey:
			v := f.Value
			ev.RequestID = &v
		case provider.TenantKey:
			v := f.Value
			ev.Tenant = &v
		}
	}
	if st, ok := normaliseStatus(sum.Status, sum.VoidedReason); ok {
		ev.Status = &st
	}
	everyone := slices.Concat(sum.Recipients.Signers, sum.Recipients.CarbonCopies)
	reason := func(r string) {
		if r != "" {
			ev.Reason = &r
		}
	}
	switch kind {
	case "envelope":
		fromEvent, ok := envelopeEvent[action]
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrIgnored, p.Event)
		}
		if fromEvent {
			st, _ := normaliseStatus(action, sum.VoidedReason)
			ev.Status = &st // trigger on the event, not the summary
		}
		for _, s := range everyone {
			if u, ok := s.update(); ok {
				ev.Recipients = append(ev.Recipients, u)
			}
		}
		if action == "voided" {
			reason(sum.VoidedReason)
		}
		ev.Kind = envelopeKind[action]
	case "recipient":
		rs, ok := recipientEvent[action]
		if !ok || p.Data.RecipientID == "" {
			return nil, fmt.Errorf("%w: %s", ErrIgnored, p.Event)
		}
		named := Signer{RecipientID: p.Data.RecipientID}
		for _, s := range everyone {
			if s.RecipientID == p.Data.RecipientID {
				named = s
			}
		}
		switch action {
		case "reassign", "delegate":
			ev.Recipients = replacement(p.Data.RecipientID, named, everyone)
			reason("recipient " + p.Data.RecipientID + map[string]string{"reassign": " reassigned", "delegate": " delegated"}[action])
		default:
			ev.Recipients = append(ev.Recipients, schemas.RecipientUpdate{
				RecipientID: p.Data.RecipientID, Email: named.Email, Name: named.Name, Status: rs})
			switch action {
			case "authenticationfailed":
				reason("recipient " + p.Data.RecipientID + " failed authentication")
			case "declined":
				reason(named.DeclinedReason)
			case "autoresponded":
				reason(named.AutoRespondedReason)
			}
		}
	default:
		return nil, fmt.Errorf("%w: %s", ErrIgnored, p.Event)
	}
	if ev.Status == nil && len(ev.Recipients) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrIgnored, p.Event)
	}
	ev.EventID = envelope.EventID("docusign", p.Data.EnvelopeID, p.Event, p.Data.RecipientID, p.GeneratedDateTime)
	return []schemas.EnvelopeEvent{ev}, nil
}

// replacement returns the recipient updates of a reassignment or a
// delegation by recipient old (named: its summary entry, if any): old
// REPLACED, every other recipient of the summary with its status, and the
// one that replaces old with Replaces = old.
//
// UNCONFIRMED: DocuSign documents neither which recipient data.recipientId
// names in recipient-reassign and recipient-delegate nor how the summary
// tells the new recipient from the others. Assumed, as for every other
// recipient-* event, that it names the recipient who acted (the one
// replaced), and that the new recipient is the one DocuSign added last
// (the highest recipientId, compared as a number when both are) among the
// others not yet finished (status created, sent, delivered or
// autoresponded) and, when old is in the summary, at its routing order.
// When none qualifies, old is REPLACED without a link.
func replacement(old string, named Signer, everyone []Signer) []schemas.RecipientUpdate {
	oldListed := slices.ContainsFunc(everyone, func(s Signer) bool { return s.RecipientID == old })
	var newest *Signer
	for i := range everyone {
		s := &everyone[i]
		if s.RecipientID == old || s.RecipientID == "" {
			continue
		}
		switch strings.ToLower(s.Status) {
		case "created", "sent", "delivered", "autoresponded":
		default:
			continue
		}
		if oldListed && s.RoutingOrder != named.RoutingOrder {
			continue
		}
		if newest == nil || laterID(s.RecipientID, newest.RecipientID) {
			newest = s
		}
	}
	out := []schemas.RecipientUpdate{{RecipientID: old, Email: named.Email, Name: named.Name, Status: schemas.RecipientReplaced}}
	for _, s := range everyone {
		if s.RecipientID == old {
			continue
		}
		u, ok := s.update()
		if !ok {
			continue
		}
		if newest != nil && s.RecipientID == newest.RecipientID {
			o := old
			u.Replaces = &o
		}
		out = append(out, u)
	}
	return out
}

// laterID reports whether recipient id a was assigned after b: as numbers
// when both are (DocuSign's are, by default), else as text.
func laterID(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	if errA == nil && errB == nil {
		return x > y
	}
	return a > b
}

// update converts a summary recipient; false when its status is unknown.
func (s Signer) update() (schemas.RecipientUpdate, bool) {
	return recipient{RecipientID: s.RecipientID, Email: s.Email, Name: s.Name, Status: s.Status}.update()
}
