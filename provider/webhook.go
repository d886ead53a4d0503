package provider

import (
	"errors"
	"net/http"
	"time"

	"github.com/esignflow/esignflow/schemas"
)

// Webhook is a provider's webhook scheme, as the ingress uses it: verify a
// request's signature, then normalise its body into events. The ingress
// looks one up by the {provider} of POST /webhooks/{provider}; the
// registry (provider/registry) lists them. Implementations are safe for
// concurrent use.
type Webhook interface {
	// Verify checks the signature of a webhook (its headers and raw body)
	// against every active key, in constant time, and its timestamp
	// against now within tolerance where the scheme signs one. A forged,
	// unsigned or stale webhook is a *VerifyError; a body whose signature
	// cannot even be read is ErrWebhookMalformed (answered 400).
	Verify(keys [][]byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error
	// Parse normalises a verified webhook into events. ErrWebhookIgnored
	// means it is authentic and says nothing about a status
	// (a test callback, a purge); any other error means it could not be
	// understood (the ingress dead-letters its raw body).
	Parse(h http.Header, body []byte) ([]schemas.EnvelopeEvent, error)
	// Reply is the body the provider expects in the answer; "" when any
	// will do.
	Reply() string
}

// Webhook errors.
var (
	// ErrWebhookIgnored means an authentic webhook carries no status.
	ErrWebhookIgnored = errors.New("provider: webhook carries no status")
	// ErrWebhookMalformed means a webhook's body cannot be read far
	// enough to verify it.
	ErrWebhookMalformed = errors.New("provider: malformed webhook")
)

// Reasons of a VerifyError, for the ingress's metrics and logs.
const (
	VerifyMissing      = "missing"       // no signature, or a header of the scheme missing
	VerifyMismatch     = "mismatch"      // no signature matches any active key
	VerifyStale        = "stale"         // the signed timestamp is too old
	VerifyFuture       = "future"        // the signed timestamp is too far ahead
	VerifyBadTimestamp = "bad_timestamp" // the signed timestamp does not parse
)

// VerifyError is a webhook that failed verification: Reason is one of the
// Verify* constants, Err the scheme's own error.
type VerifyError struct {
	Reason string
	Err    error
}

func (e *VerifyError) Error() string {
	return "provider: webhook not verified (" + e.Reason + "): " + e.Err.Error()
}

// Unwrap returns the scheme's error.
func (e *VerifyError) Unwrap() error { return e.Err }
