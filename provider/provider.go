// Package provider is the seam between esignflow and an eSignature service:
// creating envelopes with an idempotency key, reading their status, listing
// what changed, downloading the signed artefacts. Implementations live in
// sub-packages (sim for the built-in simulator); webhook verification lives
// beside each scheme (stdwebhook, docusign, dropboxsign).
//
// Consumers declare the narrow interface they use; Provider is the whole
// contract an implementation offers.
package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/esignflow/esignflow/schemas"
)

// Provider is everything esignflow asks of an eSignature service. All
// methods are safe for concurrent use.
type Provider interface {
	// Create creates, configures (documents, then recipients) and sends an
	// envelope for req, with key as the idempotency key on every call, so
	// a retry after a timeout can never create a second envelope.
	Create(ctx context.Context, key string, req schemas.SigningRequest) (Envelope, error)
	// Get returns an envelope's current status. ErrNotFound when the
	// provider does not know it.
	Get(ctx context.Context, id string) (Envelope, error)
	// ChangedSince lists envelopes whose status changed at or after since,
	// oldest first, one page at a time; pass the returned cursor to get the
	// next page, "" when there is none.
	ChangedSince(ctx context.Context, since time.Time, cursor string) ([]Envelope, string, error)
	// Download returns one artefact of a finished envelope.
	Download(ctx context.Context, id string, kind Artifact) (Download, error)
}

// Envelope is the provider's view of an envelope.
type Envelope struct {
	ID         string                    `json:"id"`
	Status     schemas.Status            `json:"status"`
	StatusAt   time.Time                 `json:"status_changed_at"`
	Recipients []schemas.RecipientUpdate `json:"recipients"`
	Metadata   map[string]string         `json:"metadata,omitempty"`
}

// RequestIDKey is the metadata key under which esignflow stores the
// request id in every envelope, so every webhook ties back to it.
const RequestIDKey = "esignflow_request_id"

// TenantKey is the metadata key for the tenant.
const TenantKey = "esignflow_tenant"

// Artifact names a downloadable artefact of a finished envelope.
type Artifact string

// Artefacts.
const (
	ArtifactSigned      Artifact = "signed"
	ArtifactCertificate Artifact = "certificate"
	ArtifactAudit       Artifact = "audit"
)

// Download is a downloaded artefact and the SHA-256 the provider declared
// for it ("" when it declared none). The caller checks one against the
// other.
type Download struct {
	Body         []byte
	DeclaredHash string // lowercase hex
	ContentType  string
}

// Sentinel errors.
var (
	// ErrNotFound means the provider does not know the envelope.
	ErrNotFound = errors.New("provider: envelope not found")
	// ErrNotReady means the provider has not prepared the artefact yet
	// (Dropbox Sign answers 409 while it renders a completed request's
	// files): not a failure, try later. A client wraps it with what it
	// knows (fmt.Errorf("...: %w", provider.ErrNotReady)); the sink waits
	// with backoff and never dead-letters for it.
	ErrNotReady = errors.New("provider: the provider has not prepared the artefact yet; try later")
)

// TransientError is a failure worth retrying with the same idempotency key:
// a 5xx, a timeout, a connection reset.
type TransientError struct{ Err error }

func (e *TransientError) Error() string { return "provider: transient: " + e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// PermanentError means the provider refused the request as invalid;
// retrying cannot help and the envelope becomes FAILED.
type PermanentError struct {
	Status int // HTTP status, 0 when not from HTTP
	Reason string
}

func (e *PermanentError) Error() string {
	return fmt.Sprintf("provider: refused (%d): %s", e.Status, e.Reason)
}

// RateLimitedError means the provider asked to wait before calling again.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("provider: rate limited, retry after %s", e.RetryAfter)
}

// IsTransient reports whether err is worth retrying: transient or rate
// limited.
func IsTransient(err error) bool {
	var t *TransientError
	var r *RateLimitedError
	return errors.As(err, &t) || errors.As(err, &r)
}

// IsPermanent reports whether err is a refusal that retrying cannot fix.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}
