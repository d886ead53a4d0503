package docusign

import (
	"fmt"
	"strings"
	"time"

	"github.com/esignflow/esignflow/provider"
)

// AuthError is a refusal of the JWT grant by DocuSign's OAuth server
// (consent_required, invalid_grant, …). Retrying cannot fix it: it unwraps
// to a *provider.PermanentError, so provider.IsPermanent holds. When Code
// is consent_required, ConsentURL is the page the impersonated user (or an
// administrator) opens once to grant consent.
type AuthError struct {
	Code        string // the OAuth error, e.g. consent_required
	Description string // error_description, when DocuSign gave one
	Status      int    // HTTP status of the token answer
	ConsentURL  string // only for consent_required
}

func (e *AuthError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "docusign: JWT grant refused: %s", e.Code)
	if e.Description != "" {
		fmt.Fprintf(&b, " (%s)", e.Description)
	}
	switch e.Code {
	case "consent_required":
		fmt.Fprintf(&b, "; the impersonated user has not granted consent to the integration key: open %s once, signed in as that user or an administrator", e.ConsentURL)
	case "invalid_grant":
		b.WriteString("; check the integration key, the user id, the RSA key pair registered for the key and the auth URL (demo or production)")
	}
	return b.String()
}

// Unwrap makes the refusal permanent for provider.IsPermanent.
func (e *AuthError) Unwrap() error {
	return &provider.PermanentError{Status: e.Status, Reason: e.Error()}
}

// EnvelopeLimitError means DocuSign refused a call because one envelope
// was asked about or changed too often (Hourly_Envelope_Polling_Limit_Exceeded,
// Burst_Envelope_Polling_Limit_Exceeded and the *_APIInvocation_Envelope_*
// codes). Other envelopes are unaffected: the caller backs off these
// envelopes until Until, and the Client refuses calls about them until
// then without asking DocuSign. It unwraps to a *provider.TransientError
// (worth retrying later), not to a *provider.RateLimitedError (which would
// pause every call).
type EnvelopeLimitError struct {
	// EnvelopeIDs are the envelopes concerned (several for a batch call).
	EnvelopeIDs []string
	// Code is DocuSign's errorCode.
	Code string
	// Until is when the envelopes may be asked about again.
	Until time.Time
}

func (e *EnvelopeLimitError) Error() string {
	return fmt.Sprintf("docusign: per-envelope limit %s for %s; backing off until %s",
		e.Code, strings.Join(e.EnvelopeIDs, ","), e.Until.UTC().Format(time.RFC3339))
}

// Unwrap makes the error transient for provider.IsTransient.
func (e *EnvelopeLimitError) Unwrap() error {
	return &provider.TransientError{Err: fmt.Errorf("per-envelope limit %s", e.Code)}
}

// APIError is an error answer of the eSignature REST API: its HTTP status
// and errorDetails body.
type APIError struct {
	Status  int
	Code    string // errorCode
	Message string // message
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("HTTP %d: %s: %s", e.Status, e.Code, e.Message)
}
