package dropboxsign

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/apicall"
	"github.com/esignflow/esignflow/schemas"
)

// maxDownload bounds one downloaded file.
const maxDownload = 256 << 20

// Download returns one artefact of a signature request from
// GET /signature_request/files/{id}?file_type=pdf: the single merged PDF
// of every document, to which Dropbox Sign adds its audit trail page (the
// signers, their e-mail addresses or phones, IP addresses, timestamps and
// the document's hash). Dropbox Sign has no separate certificate of
// completion and no audit-trail endpoint, so ArtifactSigned,
// ArtifactCertificate and ArtifactAudit are all that same PDF: the Client
// keeps the last few downloads for a minute, so the three cost one
// high-tier call. (file_type=zip, the documents one by one and, on teams
// set to keep it apart, the audit trail as a PDF of its own, is not used:
// what it holds depends on an account setting.) Dropbox Sign declares no
// digest: DeclaredHash is "".
//
// While Dropbox Sign prepares the files it answers 409: Download returns
// ErrFilesNotReady wrapped in a *provider.TransientError at once, without
// retrying, so the caller backs that envelope off (Dropbox Sign announces
// readiness with its signature_request_downloadable event). Other
// transient failures are retried as every call is.
func (c *Client) Download(ctx context.Context, id string, kind provider.Artifact) (provider.Download, error) {
	switch kind {
	case provider.ArtifactSigned, provider.ArtifactCertificate, provider.ArtifactAudit:
	default:
		return provider.Download{}, &provider.PermanentError{Reason: fmt.Sprintf("dropboxsign: unknown artefact %q", kind)}
	}
	if d, ok := c.files.get(id, c.cfg.Now()); ok {
		return d, nil
	}
	a, err := c.api.Fetch(ctx, func(ctx context.Context) (apicall.Answer, error) {
		return c.call(ctx, request{method: http.MethodGet, path: "/signature_request/files/" + url.PathEscape(id),
			query: url.Values{"file_type": {"pdf"}}, tier: tierHigh, op: "download_" + string(kind)}, maxDownload)
	})
	if err != nil {
		return provider.Download{}, fmt.Errorf("dropboxsign: download %s of %s: %w", kind, id, err)
	}
	d := a.Download("application/pdf")
	c.files.put(id, d, c.cfg.Now())
	return d, nil
}

// Keeps reports whether Dropbox Sign keeps kind for a signature request
// that ended in status: the merged PDF of every request but a canceled
// one (VOIDED), which Dropbox Sign deletes: every read of it, its files
// included, answers 410 deleted, which no retry changes. The sink asks
// only for what is kept (sink.Keeper), so a canceled request is
// finalised with esignflow's own audit chain and no files instead of
// being dead-lettered. A completed request removed from the account
// answers 410 too: that one is a refusal (Download's PermanentError),
// since its signed document should have been there.
func (c *Client) Keeps(status schemas.Status, _ provider.Artifact) bool {
	return status != schemas.StatusVoided
}

// fileCache keeps the last few downloaded files for a minute. Safe for
// concurrent use.
type fileCache struct {
	mu      sync.Mutex
	entries []cachedFile // oldest first
}

type cachedFile struct {
	id string
	d  provider.Download
	at time.Time
}

const (
	fileCacheSize = 8
	fileCacheTTL  = time.Minute
)

func (fc *fileCache) get(id string, now time.Time) (provider.Download, bool) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, e := range fc.entries {
		if e.id == id && now.Sub(e.at) < fileCacheTTL {
			return e.d, true
		}
	}
	return provider.Download{}, false
}

func (fc *fileCache) put(id string, d provider.Download, now time.Time) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	kept := fc.entries[:0]
	for _, e := range fc.entries {
		if e.id != id && now.Sub(e.at) < fileCacheTTL {
			kept = append(kept, e)
		}
	}
	fc.entries = append(kept, cachedFile{id: id, d: d, at: now})
	if n := len(fc.entries) - fileCacheSize; n > 0 {
		fc.entries = append([]cachedFile(nil), fc.entries[n:]...)
	}
}
