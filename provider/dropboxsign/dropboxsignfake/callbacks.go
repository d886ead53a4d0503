package dropboxsignfake

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"strconv"
	"time"

	"github.com/esignflow/esignflow/provider/sim"
)

// Reply is what a callback's answer must contain for Dropbox Sign to
// count it delivered (the same as provider/dropboxsign.Reply).
const Reply = "Hello API Event Received"

// Accepted says whether a callback was received: a 2xx whose body holds
// Reply. Anything else is retried (sim.Acceptor).
func (d *Dialect) Accepted(status int, body []byte) bool {
	return status/100 == 2 && bytes.Contains(body, []byte(Reply))
}

// callback is the JSON in a callback's "json" form field
// (EventCallbackRequest, PROVIDER-APIS.md 2.7).
type callback struct {
	Event            event               `json:"event"`
	AccountGUID      string              `json:"account_guid"`
	ClientID         *string             `json:"client_id"`
	SignatureRequest signatureRequestOut `json:"signature_request"`
}

type event struct {
	Time     string        `json:"event_time"`
	Type     string        `json:"event_type"`
	Hash     string        `json:"event_hash"`
	Metadata eventMetadata `json:"event_metadata"`
}

type eventMetadata struct {
	RelatedSignatureID   *string `json:"related_signature_id"`
	ReportedForAccountID string  `json:"reported_for_account_id"`
	ReportedForAppID     *string `json:"reported_for_app_id"`
	EventMessage         *string `json:"event_message"`
}

// Webhooks makes the callbacks of one engine transition:
//
//	envelope.sent        signature_request_sent
//	recipient.viewed     signature_request_viewed
//	recipient.signed     signature_request_signed; for the last signature
//	                     also signature_request_all_signed, and
//	                     signature_request_downloadable FilesDelay later
//	recipient.declined   signature_request_declined
//	recipient.bounced    signature_request_email_bounce (the signer goes on:
//	                     the sender corrected the address)
//	envelope.voided      signature_request_canceled
//	envelope.expired     signature_request_expired
//	recipient.sent, recipient.delivered: none (Dropbox Sign e-mails the
//	signer and says nothing); recipient.auth_failed: none (Dropbox Sign
//	has no event for a failed access code or SMS check)
//
// Each carries the signature request after the transition, with the
// metadata it was sent with; signer events name their signature in
// related_signature_id. event_time is the transition's, so every retry
// of a callback carries the same event_time and event_hash.
func (d *Dialect) Webhooks(t sim.Transition) []sim.Message {
	var related *string
	if t.Recipient != nil {
		id := t.Recipient.ID
		related = &id
	}
	type ev struct {
		typ     string
		related *string
		later   time.Duration // sent this long after the transition
	}
	var evs []ev
	switch t.Type {
	case "envelope.sent":
		evs = []ev{{typ: "signature_request_sent"}}
	case "recipient.viewed":
		evs = []ev{{typ: "signature_request_viewed", related: related}}
	case "recipient.signed":
		evs = []ev{{typ: "signature_request_signed", related: related}}
		if t.Envelope.Status == "completed" {
			evs = append(evs, ev{typ: "signature_request_all_signed"},
				ev{typ: "signature_request_downloadable", later: d.cfg.FilesDelay})
		}
	case "recipient.declined":
		evs = []ev{{typ: "signature_request_declined", related: related}}
	case "recipient.bounced":
		evs = []ev{{typ: "signature_request_email_bounce", related: related}}
	case "envelope.voided":
		evs = []ev{{typ: "signature_request_canceled"}}
	case "envelope.expired":
		evs = []ev{{typ: "signature_request_expired"}}
	}
	if len(evs) == 0 {
		return nil
	}
	sr := d.view(t.Envelope, d.sim.URL()+"/v3")
	at := strconv.FormatInt(t.At.Unix(), 10)
	msgs := make([]sim.Message, 0, len(evs))
	for _, e := range evs {
		cb := callback{AccountGUID: d.cfg.AccountID, SignatureRequest: sr, Event: event{Time: at, Type: e.typ,
			Hash:     EventHash(d.cfg.APIKey, at, e.typ),
			Metadata: eventMetadata{RelatedSignatureID: e.related, ReportedForAccountID: d.cfg.AccountID}}}
		m := callbackMessage{cb: cb}
		if e.later > 0 {
			msgs = append(msgs, deferredCallback{m, e.later})
		} else {
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// EventHash is a callback's event_hash: hex(HMAC-SHA256(key = API key,
// message = event_time + event_type)).
func EventHash(apiKey, eventTime, eventType string) string {
	m := hmac.New(sha256.New, []byte(apiKey))
	m.Write([]byte(eventTime + eventType))
	return hex.EncodeToString(m.Sum(nil))
}

// callbackMessage is one callback; every attempt sends the same bytes.
type callbackMessage struct{ cb callback }

// Encode posts the callback as Dropbox Sign does: multipart/form-data,
// the JSON in the field "json", User-Agent HelloSign API, and Content-MD5
// as the captured callbacks carry it (base64 of the hex MD5 of the body).
func (m callbackMessage) Encode(int, time.Time) ([]byte, http.Header) {
	raw, _ := json.Marshal(m.cb)
	sum := sha256.Sum256(raw)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.SetBoundary("------------------------" + hex.EncodeToString(sum[:12]))
	part, _ := mw.CreateFormField("json")
	_, _ = part.Write(raw)
	_ = mw.Close()
	body := buf.Bytes()
	md := md5.Sum(body)
	h := http.Header{}
	h.Set("Content-Type", mw.FormDataContentType())
	h.Set("User-Agent", "HelloSign API")
	h.Set("Content-MD5", base64.StdEncoding.EncodeToString([]byte(hex.EncodeToString(md[:]))))
	return body, h
}

// deferredCallback is a callback sent a while after its transition
// (sim.Deferred).
type deferredCallback struct {
	callbackMessage
	later time.Duration
}

func (m deferredCallback) Defer() time.Duration { return m.later }
