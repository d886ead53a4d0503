package registry

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/dropboxsign"
	"github.com/esignflow/esignflow/schemas"
)

// dropboxsignProvider is Dropbox Sign's callbacks; its API is not in
// esignflow yet.
func dropboxsignProvider() Provider {
	return Provider{Name: "dropboxsign", Webhook: callbackScheme{}}
}

// callbackScheme is Dropbox Sign's: event_hash inside the body, no
// timestamp window (a replay is caught by the dedup id).
type callbackScheme struct{}

func (callbackScheme) Verify(keys [][]byte, h http.Header, body []byte, _ time.Time, _ time.Duration) error {
	cb, err := dropboxsign.Decode(h.Get("Content-Type"), body)
	if err != nil {
		return fmt.Errorf("%w: %w", provider.ErrWebhookMalformed, err)
	}
	if err := dropboxsign.Verify(keys, cb); err != nil {
		return &provider.VerifyError{Reason: provider.VerifyMismatch, Err: err}
	}
	return nil
}

func (callbackScheme) Parse(h http.Header, body []byte) ([]schemas.EnvelopeEvent, error) {
	cb, err := dropboxsign.Decode(h.Get("Content-Type"), body)
	if err != nil {
		return nil, err
	}
	evs, err := dropboxsign.Parse(cb)
	if errors.Is(err, dropboxsign.ErrIgnored) {
		return nil, fmt.Errorf("%w: %w", provider.ErrWebhookIgnored, err)
	}
	return evs, err
}

func (callbackScheme) Reply() string { return dropboxsign.Reply }
