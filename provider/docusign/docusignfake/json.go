package docusignfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// str is a field DocuSign types as a string. It reads a JSON string, and
// also a number or a boolean (as DocuSign's own parser does), keeping its
// text.
type str string

func (s *str) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		return nil
	case b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = str(v)
	case string(b) == "true" || string(b) == "false":
		*s = str(b)
	default:
		if _, err := strconv.ParseFloat(string(b), 64); err != nil {
			return fmt.Errorf("want a string, got %s", b)
		}
		*s = str(b)
	}
	return nil
}

// envelopeDefinition is the part of the create body the dialect reads.
type envelopeDefinition struct {
	EmailSubject  str          `json:"emailSubject"`
	EmailBlurb    str          `json:"emailBlurb"`
	Status        str          `json:"status"`
	TransactionID str          `json:"transactionId"`
	Documents     []documentIn `json:"documents"`
	Recipients    *struct {
		Signers []signerIn `json:"signers"`
	} `json:"recipients"`
	CustomFields *struct {
		TextCustomFields []textCustomField `json:"textCustomFields"`
	} `json:"customFields"`
	// EventNotification is accepted and not used: webhooks go to the
	// simulator's configured URL (an account-level Connect
	// configuration).
	EventNotification json.RawMessage `json:"eventNotification"`
}

type documentIn struct {
	DocumentBase64 string `json:"documentBase64"`
	DocumentID     str    `json:"documentId"`
	Name           str    `json:"name"`
	FileExtension  str    `json:"fileExtension"`
	Order          str    `json:"order"`
}

type signerIn struct {
	RecipientID              str `json:"recipientId"`
	RoutingOrder             str `json:"routingOrder"`
	Email                    str `json:"email"`
	Name                     str `json:"name"`
	ClientUserID             str `json:"clientUserId"`
	AccessCode               str `json:"accessCode"`
	IDCheckConfigurationName str `json:"idCheckConfigurationName"`
	SMSAuthentication        *struct {
		SenderProvidedNumbers []str `json:"senderProvidedNumbers"`
	} `json:"smsAuthentication"`
	PhoneAuthentication  json.RawMessage `json:"phoneAuthentication"`
	IdentityVerification *struct {
		WorkflowID str `json:"workflowId"`
	} `json:"identityVerification"`
}

// textCustomField is customFields.textCustomFields[], in and out.
type textCustomField struct {
	FieldID  str `json:"fieldId,omitempty"`
	Name     str `json:"name"`
	Show     str `json:"show"`
	Required str `json:"required"`
	Value    str `json:"value"`
}

// envelopeOut is an envelope as GET envelopes/{id}, listStatusChanges and
// Connect's envelopeSummary answer it: every value a string.
type envelopeOut struct {
	EnvelopeID            string           `json:"envelopeId"`
	Status                string           `json:"status"`
	EmailSubject          string           `json:"emailSubject"`
	EmailBlurb            string           `json:"emailBlurb,omitempty"`
	TransactionID         string           `json:"transactionId,omitempty"`
	EnvelopeURI           string           `json:"envelopeUri"`
	DocumentsURI          string           `json:"documentsUri"`
	RecipientsURI         string           `json:"recipientsUri"`
	CustomFieldsURI       string           `json:"customFieldsUri"`
	CreatedDateTime       string           `json:"createdDateTime"`
	LastModifiedDateTime  string           `json:"lastModifiedDateTime"`
	StatusChangedDateTime string           `json:"statusChangedDateTime"`
	SentDateTime          string           `json:"sentDateTime,omitempty"`
	DeliveredDateTime     string           `json:"deliveredDateTime,omitempty"`
	CompletedDateTime     string           `json:"completedDateTime,omitempty"`
	DeclinedDateTime      string           `json:"declinedDateTime,omitempty"`
	VoidedDateTime        string           `json:"voidedDateTime,omitempty"`
	VoidedReason          string           `json:"voidedReason,omitempty"`
	Recipients            *recipientsOut   `json:"recipients,omitempty"`
	CustomFields          *customFieldsOut `json:"customFields,omitempty"`
}

type recipientsOut struct {
	Signers             []signerOut `json:"signers"`
	CarbonCopies        []struct{}  `json:"carbonCopies"`
	RecipientCount      string      `json:"recipientCount"`
	CurrentRoutingOrder string      `json:"currentRoutingOrder"`
}

type customFieldsOut struct {
	TextCustomFields []textCustomField `json:"textCustomFields"`
	ListCustomFields []struct{}        `json:"listCustomFields"`
}

type signerOut struct {
	RecipientID              string   `json:"recipientId"`
	RecipientIDGuid          string   `json:"recipientIdGuid"`
	RecipientType            string   `json:"recipientType"`
	RoutingOrder             string   `json:"routingOrder"`
	Name                     string   `json:"name"`
	Email                    string   `json:"email"`
	Status                   string   `json:"status"`
	ClientUserID             string   `json:"clientUserId,omitempty"`
	IDCheckConfigurationName string   `json:"idCheckConfigurationName,omitempty"`
	SMSAuthentication        *smsOut  `json:"smsAuthentication,omitempty"`
	IdentityVerification     *idvOut  `json:"identityVerification,omitempty"`
	SentDateTime             string   `json:"sentDateTime,omitempty"`
	DeliveredDateTime        string   `json:"deliveredDateTime,omitempty"`
	SignedDateTime           string   `json:"signedDateTime,omitempty"`
	DeclinedDateTime         string   `json:"declinedDateTime,omitempty"`
	DeclinedReason           string   `json:"declinedReason,omitempty"`
	TotalTabCount            string   `json:"totalTabCount"`
	RecipientAuthStatus      *authOut `json:"recipientAuthenticationStatus,omitempty"`
}

type smsOut struct {
	SenderProvidedNumbers []string `json:"senderProvidedNumbers"`
}

type idvOut struct {
	WorkflowID string `json:"workflowId"`
}

// authOut is recipientAuthenticationStatus: the result of the check the
// signer passed, once signed.
type authOut struct {
	IdentityVerificationResult *authResult `json:"identityVerificationResult,omitempty"`
	SMSAuthResult              *authResult `json:"smsAuthResult,omitempty"`
}

type authResult struct {
	Status         string `json:"status"`
	EventTimestamp string `json:"eventTimestamp"`
}

// errorDetails is DocuSign's error body.
type errorDetails struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

// dsTime formats t as DocuSign does: UTC, seven fractional digits.
func dsTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.0000000Z")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
