// Package stdwebhook signs and verifies webhooks with the Standard Webhooks
// scheme (also Svix's): HMAC-SHA256 over "<id>.<timestamp>.<body>", sent as
// "v1,<base64>" entries in webhook-signature, within a timestamp tolerance.
package stdwebhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far a webhook's timestamp may be from now, either
// way, before it is refused as a replay (or a clock gone wrong).
const DefaultTolerance = 5 * time.Minute

// SecretPrefix leads a Standard Webhooks secret.
const SecretPrefix = "whsec_"

// Verification errors; each is a 401 at the ingress.
var (
	ErrMissingHeaders = errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	ErrBadTimestamp   = errors.New("webhook-timestamp is not a Unix time")
	ErrStale          = errors.New("webhook-timestamp too old")
	ErrFuture         = errors.New("webhook-timestamp too far in the future")
	ErrNoMatch        = errors.New("no signature matches any active secret")
	ErrBadSecret      = errors.New("secret is not whsec_ followed by base64")
)

// Secret is an HMAC key. Its String and LogValue never show it.
type Secret []byte

func (Secret) String() string { return "[secret]" }

// GoString keeps %#v from printing the key.
func (Secret) GoString() string { return "[secret]" }

// LogValue keeps the key out of structured logs.
func (Secret) LogValue() slog.Value { return slog.StringValue("[secret]") }

// ParseSecret decodes "whsec_<base64>" (the prefix is optional) into the
// key bytes.
func ParseSecret(s string) (Secret, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), SecretPrefix)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, ErrBadSecret
	}
	return b, nil
}

// FormatSecret returns key as "whsec_<base64>".
func FormatSecret(key []byte) string { return SecretPrefix + base64.StdEncoding.EncodeToString(key) }

// Sign returns the webhook-signature value for one secret: "v1,<base64>".
func Sign(key Secret, id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id, strconv.FormatInt(ts.Unix(), 10), body))
}

// SetHeaders sets the three Standard Webhooks headers on h, signing with
// every key (space-separated entries, so receivers can rotate).
func SetHeaders(h http.Header, keys []Secret, id string, ts time.Time, body []byte) {
	sigs := make([]string, len(keys))
	for i, k := range keys {
		sigs[i] = Sign(k, id, ts, body)
	}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("webhook-signature", strings.Join(sigs, " "))
}

func mac(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a webhook's headers (webhook-* or svix-*) and raw body
// against every active key, in constant time per comparison, and returns the
// webhook id (the dedup key). tolerance <= 0 means DefaultTolerance.
func Verify(keys []Secret, h http.Header, body []byte, now time.Time, tolerance time.Duration) (string, error) {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	id, ts, sig := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" && ts == "" && sig == "" {
		id, ts, sig = h.Get("svix-id"), h.Get("svix-timestamp"), h.Get("svix-signature")
	}
	if id == "" || ts == "" || sig == "" {
		return "", ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", ErrBadTimestamp
	}
	at := time.Unix(sec, 0)
	switch {
	case now.Sub(at) > tolerance:
		return "", fmt.Errorf("%w: %s", ErrStale, now.Sub(at).Round(time.Second))
	case at.Sub(now) > tolerance:
		return "", fmt.Errorf("%w: %s", ErrFuture, at.Sub(now).Round(time.Second))
	}
	var candidates [][]byte
	for _, entry := range strings.Fields(sig) {
		version, value, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue // other versions (v1a, v2) are skipped
		}
		b, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			continue
		}
		candidates = append(candidates, b)
	}
	for _, k := range keys {
		want := mac(k, id, ts, body)
		for _, c := range candidates {
			if hmac.Equal(want, c) {
				return id, nil
			}
		}
	}
	return "", ErrNoMatch
}
