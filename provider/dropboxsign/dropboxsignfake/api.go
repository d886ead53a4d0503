package dropboxsignfake

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/sim"
)

const (
	maxBody = 40 << 20
	// maxKey is the longest Idempotency-Key.
	maxKey = 255
	// List page sizes (PROVIDER-APIS.md 2.4).
	defaultPageSize, maxPageSize = 20, 100
)

// A route reads a call's request and body (read once, by rest) and
// returns the call's rate-limit tier and the handler that serves it once
// the call is authenticated, admitted and past the injected faults. A
// send's tier is in its body (test_mode), so its route parses the body
// and hands the parse to the send: one parse per send.
type route func(r *http.Request, body []byte) (tier, http.HandlerFunc)

// fixed is the route of a call of tier t served by h, which needs no body.
func fixed(t tier, h http.HandlerFunc) route {
	return func(*http.Request, []byte) (tier, http.HandlerFunc) { return t, h }
}

// Handler is the dialect's HTTP API over s; the simulator calls it once.
func (d *Dialect) Handler(s *sim.Simulator) http.Handler {
	d.sim = s
	mux := http.NewServeMux()
	mux.Handle("POST /v3/signature_request/send", d.rest(d.sendRoute))
	mux.Handle("GET /v3/signature_request/list", d.rest(fixed(standardTier, d.list)))
	mux.Handle("GET /v3/signature_request/files/{id}", d.rest(fixed(highTier, d.files)))
	mux.Handle("POST /v3/signature_request/cancel/{id}", d.rest(fixed(standardTier, d.cancel)))
	mux.Handle("GET /v3/signature_request/{id}", d.rest(fixed(standardTier, d.get)))
	mux.Handle("GET /v3/account", d.rest(fixed(standardTier, d.account)))
	mux.Handle("/v3/", d.rest(fixed(standardTier, func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "The simulator does not serve this resource.", "")
	})))
	return mux
}

// rest wraps a route with what every call goes through, in this order:
// the API key (401 otherwise, not counted against a limit), the call's
// tier limit (headers on every answer, 429 past it), then the simulator's
// injected faults (503 before acting, or acting and never answering).
func (d *Dialect) rest(rt route) http.Handler {
	unavailable := func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusServiceUnavailable, "maintenance", "The service is temporarily unavailable (injected failure).", "")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, "bad_request", "The request body is too large.", "")
			return
		}
		t, h := rt(r, body)
		if !d.authorized(r) {
			d.stats.unauthorized.Add(1)
			d.admit(w, t, now, false)
			writeError(w, http.StatusUnauthorized, "unauthorized", "Unauthorized api key", "")
			return
		}
		if !d.admit(w, t, now, true) {
			return
		}
		d.sim.WithFaults(h, unavailable).ServeHTTP(w, r)
	})
}

// authorized: HTTP Basic with the API key as the user name (the password
// is empty and not read).
func (d *Dialect) authorized(r *http.Request) bool {
	user, _, ok := r.BasicAuth()
	return ok && subtle.ConstantTimeCompare([]byte(user), []byte(d.cfg.APIKey)) == 1
}

// base is the API's URL as the caller reached it.
func base(r *http.Request) string { return "http://" + r.Host + "/v3" }

func (e *apiError) write(w http.ResponseWriter) { writeError(w, e.code, e.name, e.msg, e.path) }

// sendRoute parses a send's body: a send with test_mode counts in the
// test-mode tier, any other (one whose body does not parse included) in
// the high tier; send answers with what the parse made of it.
func (d *Dialect) sendRoute(r *http.Request, body []byte) (tier, http.HandlerFunc) {
	in, apiErr := parseSend(r.Header.Get("Content-Type"), body)
	t := highTier
	if apiErr == nil && in.TestMode {
		t = testModeTier
	}
	return t, func(w http.ResponseWriter, r *http.Request) { d.send(w, r, in, apiErr) }
}

// send answers POST signature_request/send.
//
// Idempotency-Key, as the dialect implements it (Dropbox Sign documents
// the header and its limits, not its replays): a send with a key the
// account used within IdempotencyWindow answers 200 with the signature
// request that key created, as it is now, whatever this send's body says
// (the body is not compared: a retry's multipart boundary differs anyway);
// while a send with the key is still acting (SendDelay) another is refused
// 409 conflict; a send that was refused (4xx) used no key. An empty key
// or one over 255 characters is refused 400 bad_request. No header: not
// idempotent, every send creates.
func (d *Dialect) send(w http.ResponseWriter, r *http.Request, in sendRequest, apiErr *apiError) {
	now := time.Now()
	keys, hasKey := r.Header["Idempotency-Key"]
	key := ""
	if hasKey {
		key = keys[0]
		if key == "" || len(key) > maxKey {
			badRequest("Idempotency-Key", "The Idempotency-Key header must be 1 to 255 characters long.").write(w)
			return
		}
		d.idem.Lock()
		if prev, ok := d.replay(key, now); ok {
			d.idem.Unlock()
			d.stats.replays.Add(1)
			writeJSON(w, http.StatusOK, map[string]any{"signature_request": d.view(prev, base(r))})
			return
		}
		if d.inFlight[key] {
			d.idem.Unlock()
			d.stats.conflicts.Add(1)
			conflict("An identical request is already being processed.").write(w)
			return
		}
		d.inFlight[key] = true
		d.stats.sending.Add(1)
		d.idem.Unlock()
		defer func() {
			d.idem.Lock()
			delete(d.inFlight, key)
			d.stats.sending.Add(-1)
			d.idem.Unlock()
		}()
	}
	if apiErr == nil {
		apiErr = in.validate(now)
	}
	if apiErr != nil {
		apiErr.write(w)
		return
	}
	if d.cfg.SendDelay > 0 {
		t := time.NewTimer(d.cfg.SendDelay)
		select { // a send the client gave up on still acts, sooner
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	e, err := d.sim.CreateEnvelope(d.spec(key, in), true)
	switch {
	case errors.Is(err, sim.ErrInvalid):
		badRequest("signers", err.Error()).write(w)
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "unknown", err.Error(), "")
		return
	}
	d.index.add(e)
	writeJSON(w, http.StatusOK, map[string]any{"signature_request": d.view(e, base(r))})
}

// replay finds the first signature request key created within the
// window. Called with d.idem held.
func (d *Dialect) replay(key string, now time.Time) (sim.EnvelopeInfo, bool) {
	hits := d.sim.EnvelopesByKey([]string{key}, func(e *sim.EnvelopeInfo) bool {
		return now.Sub(e.CreatedAt) < d.cfg.IdempotencyWindow
	})
	if len(hits) == 0 {
		return sim.EnvelopeInfo{}, false
	}
	first := hits[0]
	for _, e := range hits[1:] {
		if e.CreatedAt.Before(first.CreatedAt) {
			first = e
		}
	}
	return first, true
}

// spec is the engine's envelope for a validated send. A signer's order is
// 0-based; the engine's routing order counts from 1, and signers without
// an order sign together, first.
func (d *Dialect) spec(key string, in sendRequest) sim.EnvelopeSpec {
	spec := sim.EnvelopeSpec{Key: key, Subject: in.Subject, Metadata: in.Metadata, Attrs: map[string]string{attrTitle: in.Title}}
	if in.Message != nil {
		spec.Attrs[attrMessage] = *in.Message
	}
	if in.TestMode {
		spec.Attrs[attrTestMode] = "true"
	}
	if in.ExpiresAt != nil {
		spec.Attrs[attrExpiresAt] = strconv.FormatInt(*in.ExpiresAt, 10)
	}
	for _, f := range in.Files {
		sum := sha256.Sum256(f.Content)
		spec.Documents = append(spec.Documents, sim.Document{Name: f.Name, ContentType: "application/pdf", SHA256: hex.EncodeToString(sum[:]), Content: f.Content})
	}
	for _, u := range in.FileURLs {
		spec.Documents = append(spec.Documents, sim.Document{Name: fileName(u), ContentType: "application/pdf", URI: u})
	}
	for i, s := range in.Signers {
		rs := sim.RecipientSpec{ID: d.signatureID(key, i, s.Email), Name: s.Name, Email: s.Email, Role: "signer", RoutingOrder: 1,
			Auth: "email", Attrs: map[string]string{}}
		if s.Order != nil {
			rs.RoutingOrder = *s.Order + 1
			rs.Attrs[attrOrder] = strconv.Itoa(*s.Order)
		}
		spec.Recipients = append(spec.Recipients, rs)
	}
	return spec
}

// get answers GET signature_request/{id}.
func (d *Dialect) get(w http.ResponseWriter, r *http.Request) {
	e, apiErr := d.lookup(r.PathValue("id"))
	if apiErr != nil {
		apiErr.write(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"signature_request": d.view(e, base(r))})
}

// lookup finds a signature request the requester can still read: 404 for
// an unknown id, 410 deleted for a canceled one.
func (d *Dialect) lookup(id string) (sim.EnvelopeInfo, *apiError) {
	e, ok := d.sim.Envelope(id)
	switch {
	case !ok:
		return e, notFound()
	case e.Status == "voided":
		return e, deleted()
	}
	return e, nil
}

type listInfo struct {
	NumPages   int `json:"num_pages"`
	NumResults int `json:"num_results"`
	Page       int `json:"page"`
	PageSize   int `json:"page_size"`
}

// list answers GET signature_request/list: page (from 1), page_size (1 to
// 100, default 20), query (see parseQuery), newest first. It answers from
// the search index, which holds a signature request only SearchLag after
// it was created, and not once it is canceled.
func (d *Dialect) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page, size := 1, defaultPageSize
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			badRequest("page", "page must be a positive integer.").write(w)
			return
		}
		page = n
	}
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			badRequest("page_size", "page_size must be between 1 and 100.").write(w)
			return
		}
		size = n
	}
	query, apiErr := parseQuery(q.Get("query"))
	if apiErr != nil {
		apiErr.write(w)
		return
	}
	indexedBefore := time.Now().Add(-d.cfg.SearchLag)
	match := func(e *sim.EnvelopeInfo) bool {
		return !e.CreatedAt.After(indexedBefore) && e.Status != "voided" && query.matches(e, d.cfg.EmailAddress)
	}
	var hits []sim.EnvelopeInfo
	if field, token, ok := query.indexed(); ok {
		hits = d.sim.EnvelopesByID(d.index.lookup(d.sim, field, token), match)
	} else {
		hits = d.sim.Envelopes(match)
	}
	sort.Slice(hits, func(i, j int) bool {
		if !hits[i].CreatedAt.Equal(hits[j].CreatedAt) {
			return hits[i].CreatedAt.After(hits[j].CreatedAt)
		}
		return hits[i].ID < hits[j].ID
	})
	out := struct {
		SignatureRequests []signatureRequestOut `json:"signature_requests"`
		ListInfo          listInfo              `json:"list_info"`
	}{SignatureRequests: []signatureRequestOut{},
		ListInfo: listInfo{NumPages: (len(hits) + size - 1) / size, NumResults: len(hits), Page: page, PageSize: size}}
	from := min((page-1)*size, len(hits))
	for _, e := range hits[from:min(from+size, len(hits))] {
		out.SignatureRequests = append(out.SignatureRequests, d.view(e, base(r)))
	}
	writeJSON(w, http.StatusOK, out)
}

// cancel answers POST signature_request/cancel/{id}: an empty 200, the
// cancelation confirmed by the signature_request_canceled callback. A
// fully executed request cannot be canceled (400
// signature_request_cancel_failed), a canceled one is gone (410).
func (d *Dialect) cancel(w http.ResponseWriter, r *http.Request) {
	e, err := d.sim.Void(r.PathValue("id"), "canceled by the requester")
	switch {
	case errors.Is(err, sim.ErrNotFound):
		notFound().write(w)
		return
	case errors.Is(err, sim.ErrFinal) && e.Status == "voided":
		deleted().write(w)
		return
	case errors.Is(err, sim.ErrFinal), errors.Is(err, sim.ErrDraft):
		writeError(w, http.StatusBadRequest, "signature_request_cancel_failed",
			"Either you are not the requester or the Signature Request is fully executed.", "")
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "unknown", err.Error(), "")
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// filesReadyAt is when a signature request's files are ready: FilesDelay
// after its last signature, at once for one not complete (its files are
// served as they are).
func (d *Dialect) filesReadyAt(e sim.EnvelopeInfo) time.Time {
	if e.Status != "completed" {
		return time.Time{}
	}
	return e.StatusAt.Add(d.cfg.FilesDelay)
}

// files answers GET signature_request/files/{id}: file_type pdf (the
// default, one merged PDF) or zip (the document and the audit trail), in
// the request's current state; 409 conflict while the files of a
// completed request are being prepared (FilesDelay). As Dropbox Sign, it
// declares no digest; the corrupt-download fault applies.
func (d *Dialect) files(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ft := r.URL.Query().Get("file_type")
	if ft == "" {
		ft = "pdf"
	}
	if ft != "pdf" && ft != "zip" {
		badRequest("file_type", "file_type must be pdf or zip.").write(w)
		return
	}
	e, apiErr := d.lookup(id)
	if apiErr != nil {
		apiErr.write(w)
		return
	}
	if time.Now().Before(d.filesReadyAt(e)) {
		d.stats.notReady.Add(1)
		conflict("Files are still being processed. Please try again later.").write(w)
		return
	}
	name := e.Attrs[attrTitle]
	if name == "" {
		name = e.ID
	}
	signed, _, err := d.sim.Download(id, provider.ArtifactSigned)
	if err != nil {
		notFound().write(w)
		return
	}
	body, ctype := signed, "application/pdf"
	if ft == "zip" {
		audit, _, err := d.sim.Download(id, provider.ArtifactAudit)
		if err != nil {
			notFound().write(w)
			return
		}
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for _, f := range []struct {
			name string
			body []byte
		}{{safeName(name) + ".pdf", signed}, {"audit-trail.pdf", audit}} {
			fw, err := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: e.StatusAt})
			if err == nil {
				_, err = fw.Write(f.body)
			}
			if err != nil {
				writeError(w, http.StatusInternalServerError, "unknown", err.Error(), "")
				return
			}
		}
		if err := zw.Close(); err != nil {
			writeError(w, http.StatusInternalServerError, "unknown", err.Error(), "")
			return
		}
		body, ctype = buf.Bytes(), "application/zip"
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", safeName(name)+"."+ft))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '/' || r == '\\' || r < ' ' {
			return '_'
		}
		return r
	}, s)
}

// account answers GET account: what a client's start-up check reads.
func (d *Dialect) account(w http.ResponseWriter, _ *http.Request) {
	var callback *string
	if d.cfg.CallbackURL != "" {
		callback = &d.cfg.CallbackURL
	}
	writeJSON(w, http.StatusOK, map[string]any{"account": map[string]any{
		"account_id": d.cfg.AccountID, "email_address": d.cfg.EmailAddress, "is_locked": false, "is_paid_hs": true, "is_paid_hf": false,
		"callback_url": callback, "role_code": nil, "team_id": nil, "locale": "en-US",
		"quotas": map[string]any{"api_signature_requests_left": nil, "documents_left": nil, "templates_total": nil,
			"templates_left": nil, "sms_verifications_left": nil, "num_fax_pages_left": nil},
	}})
}
