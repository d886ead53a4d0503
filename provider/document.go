package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/esignflow/esignflow/schemas"
)

// Documents reads the documents of signing requests for a provider's API
// client, which sends them inline: a request's own bytes, or bytes fetched
// from an http(s) or file URI — never more than Limit — checked against the
// SHA-256 the request gives. A refusal (a bad URI, a missing file, a 4xx,
// too large, a digest mismatch) is a PermanentError: the envelope becomes
// FAILED with the reason; a 5xx, 429, 408 or a transport failure is a
// TransientError.
type Documents struct {
	// Provider prefixes every refusal's reason ("docusign: …").
	Provider string
	// HTTP fetches http(s) URIs, each within Timeout.
	HTTP    *http.Client
	Timeout time.Duration
	// Limit is the most bytes a document may have.
	Limit int64
	// HashRequired refuses a document by URI without a SHA-256: its
	// bytes could not be checked.
	HashRequired bool
}

// Bytes returns d's bytes.
func (s Documents) Bytes(ctx context.Context, d schemas.Document) ([]byte, error) {
	var b []byte
	switch {
	case len(d.Content) > 0:
		if int64(len(d.Content)) > s.Limit {
			return nil, s.refuse(0, "the document is larger than %d bytes", s.Limit)
		}
		b = d.Content
	case d.URI != nil && *d.URI != "":
		if s.HashRequired && (d.SHA256 == nil || *d.SHA256 == "") {
			return nil, s.refuse(0, "a document by URI needs its sha256")
		}
		var err error
		if b, err = s.fetch(ctx, *d.URI); err != nil {
			return nil, err
		}
	default:
		return nil, s.refuse(0, "the document has neither content nor a URI")
	}
	if d.SHA256 != nil && *d.SHA256 != "" {
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, *d.SHA256) {
			return nil, s.refuse(0, "SHA-256 mismatch: the request says %s, the content is %s", strings.ToLower(*d.SHA256), got)
		}
	}
	return b, nil
}

func (s Documents) refuse(status int, format string, args ...any) error {
	return &PermanentError{Status: status, Reason: s.Provider + ": " + fmt.Sprintf(format, args...)}
}

// fetch reads a document's URI: file, http or https.
func (s Documents) fetch(ctx context.Context, raw string) ([]byte, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, s.refuse(0, "document URI %q: %v", raw, err)
	}
	var rd io.Reader
	switch strings.ToLower(u.Scheme) {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, s.refuse(0, "document URI %q: a file URI names a local path (file:///path)", raw)
		}
		f, err := os.Open(u.Path)
		if err != nil {
			return nil, s.refuse(0, "document %s: %v", raw, err)
		}
		defer f.Close()
		rd = f
	case "http", "https":
		if s.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.Timeout)
			defer cancel()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, s.refuse(0, "document URI %q: %v", raw, err)
		}
		hc := s.HTTP
		if hc == nil {
			hc = http.DefaultClient
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, TransportError(ctx, fmt.Errorf("fetch document %s: %w", raw, err))
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
			return nil, &TransientError{Err: fmt.Errorf("fetch document %s: HTTP %d", raw, resp.StatusCode)}
		case resp.StatusCode/100 != 2:
			return nil, s.refuse(resp.StatusCode, "fetch document %s: HTTP %d", raw, resp.StatusCode)
		}
		rd = resp.Body
	default:
		return nil, s.refuse(0, "document URI %q: scheme %q is not supported (http, https, file)", raw, u.Scheme)
	}
	b, err := io.ReadAll(io.LimitReader(rd, s.Limit+1))
	if err != nil {
		return nil, TransportError(ctx, fmt.Errorf("read document %s: %w", raw, err))
	}
	if int64(len(b)) > s.Limit {
		return nil, s.refuse(0, "document %s is larger than %d bytes", raw, s.Limit)
	}
	return b, nil
}

// TransportError is a call that failed in transport (a reset, a timeout):
// transient, unless the caller's own context was canceled, which is
// returned as it is so that the caller stops instead of retrying.
func TransportError(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		return err
	}
	return &TransientError{Err: err}
}
