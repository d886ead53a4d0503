package docusignfake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/esignflow/esignflow/provider/sim"
)

// connectMessage is a Connect JSON SIM message (PROVIDER-APIS.md 1.12).
type connectMessage struct {
	Event             string      `json:"event"`
	APIVersion        string      `json:"apiVersion"`
	URI               string      `json:"uri"`
	RetryCount        int         `json:"retryCount"`
	ConfigurationID   int64       `json:"configurationId"`
	GeneratedDateTime string      `json:"generatedDateTime"`
	Data              connectData `json:"data"`
}

type connectData struct {
	AccountID       string      `json:"accountId"`
	UserID          string      `json:"userId"`
	EnvelopeID      string      `json:"envelopeId"`
	RecipientID     string      `json:"recipientId,omitempty"`
	EnvelopeSummary envelopeOut `json:"envelopeSummary"`
}

// Webhooks makes the Connect messages of one engine transition:
//
//	recipient.sent                 recipient-sent
//	recipient.delivered            none (DocuSign's delivered means opened)
//	recipient.viewed               recipient-delivered, and envelope-delivered
//	                               when it moved the envelope to delivered
//	recipient.signed               recipient-completed, and envelope-completed
//	                               for the last signature
//	recipient.declined             recipient-declined, envelope-declined
//	recipient.auth_failed          recipient-authenticationfailed
//	recipient.bounced              recipient-autoresponded
//	envelope.sent                  envelope-sent
//	envelope.voided, .expired      envelope-voided
//
// Each message carries the envelope summary with its recipients and custom
// fields; retryCount counts the delivery attempts before this one.
func (d *Dialect) Webhooks(t sim.Transition) []sim.Message {
	e := t.Envelope
	var events []string
	recipientID := ""
	if t.Recipient != nil {
		recipientID = t.Recipient.ID
	}
	switch t.Type {
	case "envelope.sent":
		events = []string{"envelope-sent"}
	case "envelope.voided", "envelope.expired":
		events = []string{"envelope-voided"}
	case "recipient.sent":
		events = []string{"recipient-sent"}
	case "recipient.viewed":
		events = []string{"recipient-delivered"}
		if e.Status == "viewed" && e.StatusAt.Equal(t.At) {
			events = append(events, "envelope-delivered")
		}
	case "recipient.signed":
		events = []string{"recipient-completed"}
		if e.Status == "completed" {
			events = append(events, "envelope-completed")
		}
	case "recipient.declined":
		events = []string{"recipient-declined", "envelope-declined"}
	case "recipient.auth_failed":
		events = []string{"recipient-authenticationfailed"}
	case "recipient.bounced":
		events = []string{"recipient-autoresponded"}
	}
	summary := envelopeView(e, true, true)
	msgs := make([]sim.Message, 0, len(events))
	for _, ev := range events {
		m := connectMessage{Event: ev, APIVersion: "v2.1", URI: "/restapi/v2.1/accounts/" + d.cfg.AccountID + "/envelopes/" + e.ID,
			ConfigurationID: d.cfg.ConfigurationID, GeneratedDateTime: dsTime(t.At),
			Data: connectData{AccountID: d.cfg.AccountID, UserID: d.cfg.UserID, EnvelopeID: e.ID, EnvelopeSummary: summary}}
		if strings.HasPrefix(ev, "recipient-") {
			m.Data.RecipientID = recipientID
		}
		msgs = append(msgs, sim.MessageFunc(func(attempt int, _ time.Time) ([]byte, http.Header) {
			m := m
			m.RetryCount = attempt
			body, _ := json.Marshal(m)
			return body, d.sign(body)
		}))
	}
	return msgs
}

// sign returns the X-DocuSign-Signature-N headers of body, one per key.
func (d *Dialect) sign(body []byte) http.Header {
	h := http.Header{}
	for i, k := range d.cfg.HMACKeys {
		mac := hmac.New(sha256.New, k)
		mac.Write(body)
		h.Set("X-DocuSign-Signature-"+strconv.Itoa(i+1), base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return h
}
