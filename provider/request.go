package provider

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/esignflow/esignflow/schemas"
)

// RequestLimits are what a provider's envelope takes of a signing request
// that every client checks the same way, before any call: Check refuses a
// request that cannot fit instead of letting the provider refuse it, or
// cutting it short.
type RequestLimits struct {
	// Provider prefixes every refusal's reason ("docusign: …").
	Provider string
	// Name is the provider as a refusal names it ("DocuSign").
	Name string
	// Subject and Message are the most characters (runes) of the
	// request's subject and message.
	Subject, Message int
}

// Check refuses req, with a *PermanentError, when it has no documents or
// no recipients, or a subject or message longer than l allows.
func (l RequestLimits) Check(req schemas.SigningRequest) error {
	refuse := func(format string, a ...any) error {
		return &PermanentError{Reason: l.Provider + ": " + fmt.Sprintf(format, a...)}
	}
	switch {
	case len(req.Documents) == 0:
		return refuse("the request has no documents")
	case len(req.Recipients) == 0:
		return refuse("the request has no recipients")
	case utf8.RuneCountInString(req.Subject) > l.Subject:
		return refuse("the subject has %d characters; %s takes at most %d", utf8.RuneCountInString(req.Subject), l.Name, l.Subject)
	case utf8.RuneCountInString(req.Message) > l.Message:
		return refuse("the message has %d characters; %s takes at most %d", utf8.RuneCountInString(req.Message), l.Name, l.Message)
	}
	return nil
}

// DefaultSubject is the subject of an envelope whose request gives none:
// "Please sign: " and the name of its first document, cut to n characters
// (runes). req has a document (RequestLimits.Check).
func DefaultSubject(req schemas.SigningRequest, n int) string {
	s := "Please sign: " + req.Documents[0].Name
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// Metadata is the metadata esignflow gives the envelope of req: its own
// keys (RequestIDKey, TenantKey), which tie every webhook back to the
// request, then the request's, which cannot override them. The map is
// new: the caller may add to it.
func Metadata(req schemas.SigningRequest) map[string]string {
	meta := map[string]string{RequestIDKey: req.RequestID, TenantKey: req.Tenant}
	for k, v := range req.Metadata {
		if _, ours := meta[k]; !ours {
			meta[k] = v
		}
	}
	return meta
}

// KeyDigest is 32 hex digits of the SHA-256 of (tenant, key), the tenant
// preceded by its length so that no two pairs give the same input: the
// part of an envelope's idempotency id that a client derives (DocuSign's
// transactionId, Dropbox Sign's create key), the same for every attempt
// and every replica and distinct across tenants. It must never change:
// a retry looks up envelopes created with it.
func KeyDigest(tenant, key string) string {
	h := sha256.New()
	h.Write([]byte(strconv.Itoa(len(tenant))))
	h.Write([]byte{':'})
	h.Write([]byte(tenant))
	h.Write([]byte(key))
	return hex.EncodeToString(h.Sum(nil))[:32]
}
