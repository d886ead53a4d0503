package sim

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

// CreateBody is the JSON body of POST /v1/envelopes. Documents and
// recipients may come here or in the serial configuration steps.
type CreateBody struct {
	Subject    string            `json:"subject,omitempty"`
	Message    string            `json:"message,omitempty"`
	ExpiresAt  *time.Time        `json:"expires_at,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	Documents  []Document        `json:"documents,omitempty"`
	Recipients []*recipient      `json:"recipients,omitempty"`
}

// envelopeJSON is the API's view of an envelope (provider.Envelope's wire
// form plus the simulator's extras).
type envelopeJSON struct {
	provider.Envelope
	CreatedAt time.Time `json:"created_at"`
	Subject   string    `json:"subject,omitempty"`
}

const maxBody = 8 << 20

// standardHandler is the standard dialect's HTTP API.
func (s *Simulator) standardHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/envelopes", s.api(s.create))
	mux.HandleFunc("PUT /v1/envelopes/{id}/documents", s.api(s.putDocuments))
	mux.HandleFunc("PUT /v1/envelopes/{id}/recipients", s.api(s.putRecipients))
	mux.HandleFunc("POST /v1/envelopes/{id}/send", s.api(s.sendEnvelope))
	mux.HandleFunc("GET /v1/envelopes/{id}", s.api(s.get))
	mux.HandleFunc("GET /v1/envelopes", s.api(s.list))
	mux.HandleFunc("GET /v1/envelopes/{id}/documents/{kind}", s.api(s.download))
	mux.HandleFunc("GET /v1/_truth", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Truth()) })
	mux.HandleFunc("GET /v1/_stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Stats()) })
	return mux
}

// apiFunc handles one API call; it returns the status and body to send.
type apiFunc func(r *http.Request, body []byte) (int, any)

// api wraps an apiFunc with the rate limit and the injected faults: a 503
// before acting, or acting and then never answering.
func (s *Simulator) api(fn apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.stats.apiCalls.Add(1)
		if s.limiter != nil && !s.limiter.Allow() {
			s.stats.rateLimited.Add(1)
			w.Header().Set("Retry-After", "1")
			problem(w, http.StatusTooManyRequests, "rate limited")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			problem(w, http.StatusRequestEntityTooLarge, "body too large")
			return
		}
		s.mu.Lock()
		s.apiRoll++
		n := strconv.FormatUint(s.apiRoll, 10)
		f := s.faults
		s.mu.Unlock()
		if s.roll("api-error", n) < f.APIError {
			s.stats.apiErrors.Add(1)
			problem(w, http.StatusServiceUnavailable, "injected failure")
			return
		}
		code, out := fn(r, body)
		if r.Method != http.MethodGet && code < 400 {
			s.changed() // a refused call changed nothing worth a save
		}
		if s.roll("api-timeout", n) < f.APITimeout {
			s.stats.apiTimeouts.Add(1)
			s.hang(w, r) // acted, now never answer
			return
		}
		switch v := out.(type) {
		case rawResponse:
			for k, vs := range v.header {
				w.Header()[k] = vs
			}
			w.WriteHeader(code)
			_, _ = w.Write(v.body)
		case problemBody:
			writeProblem(w, code, v)
		default:
			writeJSON(w, code, v)
		}
	}
}

type rawResponse struct {
	header http.Header
	body   []byte
}

// problemBody is an RFC 9457 problem.
type problemBody struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// Problem types the client tells apart.
const (
	problemInFlight = "urn:esignflow:sim:in-flight"
	problemSent     = "urn:esignflow:sim:already-sent"
)

func fail(code int, detail string) (int, any) { return failType(code, "about:blank", detail) }

func failType(code int, typ, detail string) (int, any) {
	return code, problemBody{Type: typ, Title: http.StatusText(code), Status: code, Detail: detail}
}

func problem(w http.ResponseWriter, code int, detail string) {
	_, p := fail(code, detail)
	writeProblem(w, code, p.(problemBody))
}

func writeProblem(w http.ResponseWriter, code int, p problemBody) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Simulator) create(r *http.Request, body []byte) (int, any) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return fail(http.StatusBadRequest, "Idempotency-Key header is required")
	}
	sum := sha256.Sum256(body)
	s.mu.Lock()
	if prev, ok := s.keys[key]; ok {
		defer s.mu.Unlock()
		switch {
		case prev.bodyHash != sum:
			return fail(http.StatusUnprocessableEntity, "Idempotency-Key was used with a different body")
		case !prev.done:
			return failType(http.StatusConflict, problemInFlight, "a request with this Idempotency-Key is in flight")
		}
		return prev.code, rawResponse{header: http.Header{"Content-Type": {prev.contentType}}, body: prev.body}
	}
	entry := &idemEntry{bodyHash: sum}
	s.keys[key] = entry
	s.mu.Unlock()

	if s.cfg.CreateDelay > 0 {
		select {
		case <-time.After(s.cfg.CreateDelay):
		case <-r.Context().Done():
		}
	}
	code, out := s.createEnvelope(key, body)
	raw, _ := json.Marshal(out)
	s.mu.Lock()
	defer s.mu.Unlock()
	if code >= 500 {
		delete(s.keys, key) // not acted on: the key may be retried
		return code, out
	}
	entry.done, entry.code, entry.body, entry.contentType = true, code, raw, "application/json"
	if _, ok := out.(problemBody); ok {
		entry.contentType = "application/problem+json"
	}
	return code, rawResponse{header: http.Header{"Content-Type": {entry.contentType}}, body: raw}
}

func (s *Simulator) createEnvelope(key string, body []byte) (int, any) {
	var in CreateBody
	if err := json.Unmarshal(body, &in); err != nil {
		return fail(http.StatusBadRequest, "body is not JSON: "+err.Error())
	}
	if err := validateRecipients(in.Recipients); err != nil {
		return fail(http.StatusUnprocessableEntity, err.Error())
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	e := &envelope{
		id: s.dialect.EnvelopeID(s.seq, key), key: key,
		createdAt: now, subject: in.Subject,
		metadata: in.Metadata, documents: in.Documents, recipients: initRecipients(in.Recipients, now),
	}
	e.setStatus("created", now)
	if e.metadata == nil {
		e.metadata = map[string]string{}
	}
	s.add(e)
	s.stats.created.Add(1)
	return http.StatusCreated, s.view(e)
}

func validateRecipients(rs []*recipient) error {
	seen := map[string]bool{}
	for i, r := range rs {
		if r == nil || r.ID == "" {
			return fmt.Errorf("recipients[%d].id is required", i)
		}
		if seen[r.ID] {
			return fmt.Errorf("recipients[%d].id %q is repeated", i, r.ID)
		}
		seen[r.ID] = true
		if _, err := mail.ParseAddress(r.Email); err != nil {
			return fmt.Errorf("recipients[%d].email %q is not an address", i, r.Email)
		}
	}
	return nil
}

func initRecipients(rs []*recipient, now time.Time) []*recipient {
	out := make([]*recipient, len(rs))
	for i, r := range rs {
		c := *r
		c.status = "created" // statusAt stays zero until it is sent
		c.history = []Change{{Status: "created", At: now}}
		if c.RoutingOrder <= 0 {
			c.RoutingOrder = 1
		}
		out[i] = &c
	}
	return out
}

// configure applies one configuration step to an envelope not yet sent.
func (s *Simulator) configure(r *http.Request, apply func(e *envelope) error) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.envelopes[r.PathValue("id")]
	if e == nil {
		return fail(http.StatusNotFound, "no such envelope")
	}
	if e.status != "created" {
		return failType(http.StatusConflict, problemSent, "envelope already sent; configuration is closed")
	}
	if err := apply(e); err != nil {
		return fail(http.StatusUnprocessableEntity, err.Error())
	}
	return http.StatusOK, s.view(e)
}

func (s *Simulator) putDocuments(r *http.Request, body []byte) (int, any) {
	var docs []Document
	if err := json.Unmarshal(body, &docs); err != nil {
		return fail(http.StatusBadRequest, "body is not a JSON array of documents: "+err.Error())
	}
	return s.configure(r, func(e *envelope) error {
		for i, d := range docs {
			if d.Name == "" || (d.URI == "" && len(d.Content) == 0) {
				return fmt.Errorf("documents[%d] needs a name and a uri or content", i)
			}
		}
		e.documents = docs
		return nil
	})
}

func (s *Simulator) putRecipients(r *http.Request, body []byte) (int, any) {
	var rs []*recipient
	if err := json.Unmarshal(body, &rs); err != nil {
		return fail(http.StatusBadRequest, "body is not a JSON array of recipients: "+err.Error())
	}
	if err := validateRecipients(rs); err != nil {
		return fail(http.StatusUnprocessableEntity, err.Error())
	}
	return s.configure(r, func(e *envelope) error {
		e.recipients = initRecipients(rs, time.Now())
		return nil
	})
}

func (s *Simulator) sendEnvelope(r *http.Request, _ []byte) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.envelopes[r.PathValue("id")]
	switch {
	case e == nil:
		return fail(http.StatusNotFound, "no such envelope")
	case e.status != "created":
		return http.StatusOK, s.view(e) // sending twice is sending once
	case len(e.recipients) == 0:
		return fail(http.StatusUnprocessableEntity, "an envelope needs at least one recipient")
	case len(e.documents) == 0:
		return fail(http.StatusUnprocessableEntity, "an envelope needs at least one document")
	}
	s.send(e, time.Now())
	return http.StatusOK, s.view(e)
}

func (s *Simulator) get(r *http.Request, _ []byte) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.envelopes[r.PathValue("id")]
	if e == nil {
		return fail(http.StatusNotFound, "no such envelope")
	}
	return http.StatusOK, s.view(e)
}

// listPage is the body of GET /v1/envelopes.
type listPage struct {
	Envelopes  []envelopeJSON `json:"envelopes"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// list answers changed_since queries, oldest change first; the cursor is
// the last (status time, id) returned.
func (s *Simulator) list(r *http.Request, _ []byte) (int, any) {
	q := r.URL.Query()
	since, err := time.Parse(time.RFC3339Nano, q.Get("changed_since"))
	if err != nil {
		return fail(http.StatusBadRequest, "changed_since must be an RFC 3339 time")
	}
	var afterAt time.Time
	var afterID string
	if c := q.Get("cursor"); c != "" {
		ns, id, ok := strings.Cut(c, "_")
		n, err := strconv.ParseInt(ns, 10, 64)
		if !ok || err != nil {
			return fail(http.StatusBadRequest, "bad cursor")
		}
		afterAt, afterID = time.Unix(0, n), id
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var hits []*envelope
	for _, e := range s.envelopes {
		if e.statusAt.Before(since) {
			continue
		}
		if afterID != "" && (e.statusAt.Before(afterAt) || (e.statusAt.Equal(afterAt) && e.id <= afterID)) {
			continue
		}
		hits = append(hits, e)
	}
	sort.Slice(hits, func(i, j int) bool {
		if hits[i].statusAt.Equal(hits[j].statusAt) {
			return hits[i].id < hits[j].id
		}
		return hits[i].statusAt.Before(hits[j].statusAt)
	})
	page := listPage{Envelopes: []envelopeJSON{}}
	for i, e := range hits {
		if i == s.cfg.PageSize {
			last := hits[i-1]
			page.NextCursor = strconv.FormatInt(last.statusAt.UnixNano(), 10) + "_" + last.id
			break
		}
		page.Envelopes = append(page.Envelopes, s.view(e))
	}
	return http.StatusOK, page
}

// view is the API form of e. Called with s.mu held.
func (s *Simulator) view(e *envelope) envelopeJSON {
	v := envelopeJSON{CreatedAt: e.createdAt, Subject: e.subject, Envelope: provider.Envelope{
		ID: e.id, Status: normStatus(e.status), StatusAt: e.statusAt, Metadata: e.metadata,
		Recipients: make([]schemas.RecipientUpdate, 0, len(e.recipients)),
	}}
	for _, r := range e.recipients {
		u := schemas.RecipientUpdate{RecipientID: r.ID, Email: r.Email, Name: r.Name, Status: schemas.RecipientStatus(upper(r.status)), IDVerifiedAt: r.verifiedAt}
		if r.ip != "" {
			ip, agent := r.ip, r.agent
			u.SourceIP, u.UserAgent = &ip, &agent
		}
		v.Recipients = append(v.Recipients, u)
	}
	return v
}

// download serves an artefact of a finished envelope: deterministic bytes,
// with their SHA-256 declared in Digest (RFC 9530 style) and
// X-Content-SHA256 (hex).
func (s *Simulator) download(r *http.Request, _ []byte) (int, any) {
	kind := provider.Artifact(r.PathValue("kind"))
	if kind != provider.ArtifactSigned && kind != provider.ArtifactCertificate && kind != provider.ArtifactAudit {
		return fail(http.StatusNotFound, "no such artefact")
	}
	s.mu.Lock()
	e := s.envelopes[r.PathValue("id")]
	if e == nil {
		s.mu.Unlock()
		return fail(http.StatusNotFound, "no such envelope")
	}
	if status := e.status; !terminal(status) || (kind == provider.ArtifactSigned && status != "completed") {
		s.mu.Unlock()
		return fail(http.StatusConflict, "artefact not available in status "+status)
	}
	body := artefact(e, kind)
	corrupt := s.roll("corrupt", e.id, string(kind), strconv.FormatUint(s.apiRoll, 10)) < s.faults.CorruptDownload
	s.mu.Unlock()
	sum := sha256.Sum256(body)
	h := http.Header{}
	h.Set("Content-Type", map[provider.Artifact]string{provider.ArtifactSigned: "application/pdf", provider.ArtifactCertificate: "application/pdf", provider.ArtifactAudit: "application/json"}[kind])
	h.Set("Digest", "sha-256="+base64.StdEncoding.EncodeToString(sum[:]))
	h.Set("X-Content-SHA256", fmt.Sprintf("%x", sum))
	if corrupt {
		s.stats.corrupts.Add(1)
		body = append([]byte(nil), body...)
		body[len(body)/2] ^= 0xff
	}
	return http.StatusOK, rawResponse{header: h, body: body}
}

// artefact returns the deterministic bytes of an envelope's artefact.
// Called with s.mu held.
func artefact(e *envelope, kind provider.Artifact) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%%PDF-1.7\n%% esignflow-sim %s\nenvelope: %s\nstatus: %s\ncompleted: %s\n", kind, e.id, e.status, e.statusAt.UTC().Format(time.RFC3339Nano))
	for _, d := range e.documents {
		fmt.Fprintf(&b, "document: %s sha256=%s\n", d.Name, d.SHA256)
	}
	for _, r := range e.recipients {
		fmt.Fprintf(&b, "recipient: %s <%s> %s at %s from %s\n", r.ID, r.Email, r.status, r.statusAt.UTC().Format(time.RFC3339Nano), r.ip)
	}
	b.WriteString("%%EOF\n")
	return []byte(b.String())
}
