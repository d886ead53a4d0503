package sim

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/stdwebhook"
)

// A Dialect is the protocol the simulator speaks over its engine: the HTTP
// API it serves and the webhooks it sends. The engine (envelopes, their
// lifecycle, faults, truth, persistence) is the same whatever the dialect.
// Config.Dialect nil is the standard dialect (the /v1 API and Standard
// Webhooks); a provider's dialect lives beside that provider, e.g.
// provider/docusign/docusignfake.
type Dialect interface {
	// Handler returns the dialect's HTTP API over the engine s. New calls
	// it once; the handler may keep s and call its engine methods
	// (CreateEnvelope, Envelope, Envelopes, EnvelopesByID,
	// EnvelopesByKey, Send, Void, Download, WithFaults). The simulator
	// serves GET /v1/_truth and GET /v1/_stats itself, in front of it.
	Handler(s *Simulator) http.Handler
	// EnvelopeID names the seq'th envelope (from 1), created with key. It
	// must be unique per seq. Called with the engine's lock held.
	EnvelopeID(seq uint64, key string) string
	// Webhooks encodes the webhooks one transition produces: none, one or
	// several (DocuSign sends recipient-completed and envelope-completed
	// for the last signature). Each is delivered, retried and faulted on
	// its own. Called with the engine's lock held: it must not call the
	// engine.
	Webhooks(t Transition) []Message
}

// Message is one webhook a dialect encoded. Encode returns its body and
// headers (signatures included) for one delivery attempt, counting from
// 0, made at now; it is called from the delivery workers, concurrently,
// without the engine's lock. The simulator sets Content-Type
// application/json and a User-Agent unless the headers say otherwise.
type Message interface {
	Encode(attempt int, now time.Time) (body []byte, header http.Header)
}

// An Acceptor judges the answer to one delivery attempt: true means
// delivered, false means the attempt failed and is retried like any other
// (backoff, DeliveryAttempts). A Message or a Dialect may implement it, the
// Message's taking precedence; without one, any 2xx is accepted. It exists
// because some providers want more than a status: Dropbox Sign retries
// every callback whose answer lacks the body "Hello API Event Received",
// 200 or not. body is at most the first 64 KiB of the answer. Called from
// the delivery workers, concurrently, without the engine's lock.
type Acceptor interface {
	Accepted(status int, body []byte) bool
}

// A Message that implements Deferred is handed to the delivery workers
// Defer() after its transition, not at once; the delay fault adds to that.
// It is for a provider's event that follows its transition by a while:
// Dropbox Sign's signature_request_downloadable comes once the signed
// files are ready, some time after the last signature. A Deferred message
// still waiting when the simulator stops is lost with the queue.
type Deferred interface {
	Defer() time.Duration
}

// MessageFunc adapts a function to Message.
type MessageFunc func(attempt int, now time.Time) ([]byte, http.Header)

// Encode calls f.
func (f MessageFunc) Encode(attempt int, now time.Time) ([]byte, http.Header) { return f(attempt, now) }

// Transition is one change of an envelope or of one of its recipients, as
// a dialect's webhook reports it.
type Transition struct {
	// ID is unique per transition: evt_<envelope id>_<sequence>.
	ID string
	// Type is the engine's name for it: envelope.sent, envelope.voided,
	// envelope.expired, recipient.sent, recipient.delivered (the
	// invitation reached the recipient), recipient.viewed,
	// recipient.signed, recipient.declined, and with the faults
	// BounceOnce and AuthFailOnce recipient.bounced and
	// recipient.auth_failed, which leave the recipient's status as it
	// was. A recipient's signature that completes the envelope, or a
	// decline that ends it, is one recipient transition: Envelope.Status
	// says the envelope's status after it.
	Type string
	At   time.Time
	// Envelope is the envelope after the transition.
	Envelope EnvelopeInfo
	// Recipient is the recipient it is about, nil for envelope.* types.
	Recipient *RecipientInfo
}

// Change is one status an envelope or a recipient took, and when.
type Change struct {
	Status string    `json:"status"`
	At     time.Time `json:"at"`
}

// FirstAt is when history h first reached one of statuses, the zero time
// if it never did: the dates a dialect reports (sent, signed, voided).
func FirstAt(h []Change, statuses ...string) time.Time {
	for _, c := range h {
		if slices.Contains(statuses, c.Status) {
			return c.At
		}
	}
	return time.Time{}
}

// LastAt is when history h last reached status, the zero time if it never
// did.
func LastAt(h []Change, status string) time.Time {
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].Status == status {
			return h[i].At
		}
	}
	return time.Time{}
}

// EnvelopeInfo is a copy of what the engine knows about one envelope; the
// caller owns it.
type EnvelopeInfo struct {
	ID string
	// Key is what the envelope was created with: the Idempotency-Key in
	// the standard dialect, DocuSign's transactionId.
	Key string
	// Status is the engine's status: created (a draft), sent, delivered,
	// viewed, partially_signed, completed, declined, voided, expired.
	Status    string
	StatusAt  time.Time
	CreatedAt time.Time
	Subject   string
	// Reason says why a final envelope ended other than completed.
	Reason     string
	Metadata   map[string]string
	Attrs      map[string]string // the dialect's own fields, kept as given
	Documents  []Document
	Recipients []RecipientInfo
	History    []Change // every status it took, oldest first
}

// RecipientInfo is a copy of what the engine knows about one recipient.
type RecipientInfo struct {
	ID           string
	Name         string
	Email        string
	Role         string
	RoutingOrder int
	// Auth is how the recipient authenticates: "", "email", or anything
	// else (sms, id_verification, …), which the engine verifies when the
	// recipient signs (VerifiedAt).
	Auth string
	// Status is the engine's recipient status: created, sent, delivered,
	// viewed, signed, declined.
	Status     string
	StatusAt   time.Time
	IP         string
	UserAgent  string
	VerifiedAt *time.Time
	Attrs      map[string]string
	History    []Change
}

// EnvelopeSpec is an envelope a dialect creates with CreateEnvelope.
type EnvelopeSpec struct {
	Key        string
	Subject    string
	Metadata   map[string]string
	Attrs      map[string]string
	Documents  []Document
	Recipients []RecipientSpec
}

// RecipientSpec is one recipient of an EnvelopeSpec; RoutingOrder below 1
// is 1.
type RecipientSpec struct {
	ID           string
	Name         string
	Email        string
	Role         string
	RoutingOrder int
	Auth         string
	Attrs        map[string]string
}

// Engine errors, returned by the engine methods a dialect calls.
var (
	// ErrNotFound means there is no envelope with that id.
	ErrNotFound = errors.New("sim: no such envelope")
	// ErrInvalid means a spec was refused (a missing id, a repeated one, a
	// bad e-mail address); the error's text says which.
	ErrInvalid = errors.New("sim: invalid envelope")
	// ErrIncomplete means an envelope cannot be sent without a document
	// and a recipient.
	ErrIncomplete = errors.New("sim: an envelope needs at least one document and one recipient")
	// ErrNotDraft means the envelope was already sent.
	ErrNotDraft = errors.New("sim: envelope already sent")
	// ErrDraft means the envelope was never sent.
	ErrDraft = errors.New("sim: envelope not sent")
	// ErrFinal means the envelope already reached a final status.
	ErrFinal = errors.New("sim: envelope is final")
)

// Handler returns the simulator's HTTP API in its dialect, with GET
// /v1/_truth and GET /v1/_stats. Run serves it; tests may mount it
// elsewhere.
func (s *Simulator) Handler() http.Handler { return s.handler }

// controlHandler serves the truth and the stats in front of a dialect's
// API.
func (s *Simulator) controlHandler(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/_truth", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Truth()) })
	mux.HandleFunc("GET /v1/_stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Stats()) })
	mux.Handle("/", api)
	return mux
}

// info copies e. Called with s.mu held.
func (e *envelope) info() EnvelopeInfo {
	v := EnvelopeInfo{ID: e.id, Key: e.key, Status: e.status, StatusAt: e.statusAt, CreatedAt: e.createdAt,
		Subject: e.subject, Reason: e.reason, Metadata: copyMap(e.metadata), Attrs: copyMap(e.attrs),
		Documents: append([]Document(nil), e.documents...), History: append([]Change(nil), e.history...),
		Recipients: make([]RecipientInfo, len(e.recipients))}
	for i, r := range e.recipients {
		v.Recipients[i] = r.info()
	}
	return v
}

// info copies r. Called with s.mu held.
func (r *recipient) info() RecipientInfo {
	return RecipientInfo{ID: r.ID, Name: r.Name, Email: r.Email, Role: r.Role, RoutingOrder: r.RoutingOrder, Auth: r.Auth,
		Status: r.status, StatusAt: r.statusAt, IP: r.ip, UserAgent: r.agent, VerifiedAt: r.verifiedAt,
		Attrs: copyMap(r.attrs), History: append([]Change(nil), r.history...)}
}

func sortInfos(v []EnvelopeInfo) {
	sort.Slice(v, func(i, j int) bool {
		if v[i].StatusAt.Equal(v[j].StatusAt) {
			return v[i].ID < v[j].ID
		}
		return v[i].StatusAt.Before(v[j].StatusAt)
	})
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// CreateEnvelope creates an envelope from spec, as a draft or, with send,
// sent at once (which needs a document and a recipient: ErrIncomplete).
// Keys need not be unique: the engine does not deduplicate here (the
// standard dialect's idempotency lives in its API). ErrInvalid for a bad
// recipient. Safe for concurrent use.
func (s *Simulator) CreateEnvelope(spec EnvelopeSpec, send bool) (EnvelopeInfo, error) {
	rs := make([]*recipient, len(spec.Recipients))
	for i, r := range spec.Recipients {
		rs[i] = &recipient{ID: r.ID, Name: r.Name, Email: r.Email, Role: r.Role, RoutingOrder: r.RoutingOrder, Auth: r.Auth, attrs: copyMap(r.Attrs)}
	}
	if err := validateRecipients(rs); err != nil {
		return EnvelopeInfo{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if send && (len(rs) == 0 || len(spec.Documents) == 0) {
		return EnvelopeInfo{}, ErrIncomplete
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	e := &envelope{id: s.dialect.EnvelopeID(s.seq, spec.Key), key: spec.Key, createdAt: now, subject: spec.Subject,
		metadata: copyMap(spec.Metadata), attrs: copyMap(spec.Attrs), documents: append([]Document(nil), spec.Documents...),
		recipients: initRecipients(rs, now)}
	if e.metadata == nil {
		e.metadata = map[string]string{}
	}
	e.setStatus("created", now)
	s.add(e)
	s.stats.created.Add(1)
	s.changed()
	if send {
		s.send(e, now)
	}
	return e.info(), nil
}

// Envelope returns a copy of the envelope id, false when there is none.
func (s *Simulator) Envelope(id string) (EnvelopeInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.envelopes[id]
	if e == nil {
		return EnvelopeInfo{}, false
	}
	return e.info(), true
}

// Envelopes returns copies of the envelopes match accepts (all when match
// is nil), oldest status change first, ties by id. match sees each
// envelope's copy and runs with the engine's lock held: it must not call
// the engine.
func (s *Simulator) Envelopes(match func(*EnvelopeInfo) bool) []EnvelopeInfo {
	s.mu.Lock()
	var out []EnvelopeInfo
	for _, e := range s.envelopes {
		v := e.info()
		if match == nil || match(&v) {
			out = append(out, v)
		}
	}
	s.mu.Unlock()
	sortInfos(out)
	return out
}

// EnvelopesByID is Envelopes over the envelopes named by ids only: an id
// the engine does not know is left out, a repeated one counted once. It
// reads just those envelopes, however many the engine holds.
func (s *Simulator) EnvelopesByID(ids []string, match func(*EnvelopeInfo) bool) []EnvelopeInfo {
	s.mu.Lock()
	var out []EnvelopeInfo
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		e := s.envelopes[id]
		if e == nil || seen[id] {
			continue
		}
		seen[id] = true
		v := e.info()
		if match == nil || match(&v) {
			out = append(out, v)
		}
	}
	s.mu.Unlock()
	sortInfos(out)
	return out
}

// EnvelopesByKey is Envelopes over the envelopes created with one of keys
// only (EnvelopeSpec.Key, the standard dialect's Idempotency-Key; "" is
// no key and finds nothing), a repeated key counted once. It reads just
// those envelopes, however many the engine holds.
func (s *Simulator) EnvelopesByKey(keys []string, match func(*EnvelopeInfo) bool) []EnvelopeInfo {
	s.mu.Lock()
	var out []EnvelopeInfo
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if k == "" || seen[k] {
			continue
		}
		seen[k] = true
		for _, e := range s.byKey[k] {
			v := e.info()
			if match == nil || match(&v) {
				out = append(out, v)
			}
		}
	}
	s.mu.Unlock()
	sortInfos(out)
	return out
}

// add puts a new envelope into the engine and its key index. Called with
// s.mu held; envelopes are never removed.
func (s *Simulator) add(e *envelope) {
	s.envelopes[e.id] = e
	if e.key != "" {
		s.byKey[e.key] = append(s.byKey[e.key], e)
	}
}

// Send sends a draft: the recipients of the first routing order get it and
// the lifecycle starts. ErrNotFound, ErrIncomplete, or ErrNotDraft (with
// the envelope as it is) when it was sent before.
func (s *Simulator) Send(id string) (EnvelopeInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.envelopes[id]
	switch {
	case e == nil:
		return EnvelopeInfo{}, ErrNotFound
	case e.status != "created":
		return e.info(), ErrNotDraft
	case len(e.recipients) == 0 || len(e.documents) == 0:
		return e.info(), ErrIncomplete
	}
	s.send(e, time.Now())
	s.changed()
	return e.info(), nil
}

// Void voids an envelope in progress for reason, as its sender: no
// recipient can act on it any more. ErrNotFound, ErrDraft for a draft,
// ErrFinal (with the envelope as it is) for a final one.
func (s *Simulator) Void(id, reason string) (EnvelopeInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.envelopes[id]
	switch {
	case e == nil:
		return EnvelopeInfo{}, ErrNotFound
	case e.status == "created":
		return e.info(), ErrDraft
	case terminal(e.status):
		return e.info(), ErrFinal
	}
	now := time.Now()
	e.fate = "voided"
	e.setStatus("voided", now)
	e.reason = reason
	s.emit(e, "envelope.voided", nil, now)
	return e.info(), nil
}

// Download returns the bytes of one artefact of envelope id in its current
// state, whatever that state (the dialect decides what it serves when),
// and the SHA-256 of the true bytes: with the corrupt-download fault the
// body has a flipped byte and the sum does not match it.
func (s *Simulator) Download(id string, kind provider.Artifact) (body []byte, sum [32]byte, err error) {
	s.mu.Lock()
	e := s.envelopes[id]
	if e == nil {
		s.mu.Unlock()
		return nil, sum, ErrNotFound
	}
	body = artefact(e, kind)
	corrupt := s.roll("corrupt", e.id, string(kind), itoa(s.apiRoll)) < s.faults.CorruptDownload
	s.mu.Unlock()
	sum = sha256.Sum256(body)
	if corrupt {
		s.stats.corrupts.Add(1)
		body[len(body)/2] ^= 0xff
	}
	return body, sum, nil
}

// WithFaults wraps a dialect's API handler with the injected API faults
// and counts each call in Stats: an APIError draw answers with
// unavailable (the dialect's 503) before h runs; an APITimeout draw lets
// h act, then never answers (the connection is closed once the client
// gives up). Headers h or the caller set reach the client; h's status and
// body are held until h returns. A call other than GET answered below 400
// marks the state for saving.
func (s *Simulator) WithFaults(h http.Handler, unavailable http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.stats.apiCalls.Add(1)
		s.mu.Lock()
		s.apiRoll++
		n := itoa(s.apiRoll)
		f := s.faults
		s.mu.Unlock()
		if s.roll("api-error", n) < f.APIError {
			s.stats.apiErrors.Add(1)
			unavailable(w, r)
			return
		}
		rec := &held{header: w.Header(), code: http.StatusOK}
		h.ServeHTTP(rec, r)
		if r.Method != http.MethodGet && rec.code < 400 {
			s.changed()
		}
		if s.roll("api-timeout", n) < f.APITimeout {
			s.stats.apiTimeouts.Add(1)
			s.hang(w, r)
			return
		}
		w.WriteHeader(rec.code)
		_, _ = w.Write(rec.body)
	})
}

// hang holds a call that acted until the client gives up (or 30s, or the
// simulator stops), then closes its connection unanswered.
func (s *Simulator) hang(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(30 * time.Second):
	case <-s.stop:
	}
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
		}
	}
}

// held is a ResponseWriter that keeps the status and body until the fault
// draw says whether they are sent; headers go straight to the real one.
type held struct {
	header http.Header
	code   int
	wrote  bool
	body   []byte
}

func (h *held) Header() http.Header { return h.header }
func (h *held) WriteHeader(code int) {
	if !h.wrote {
		h.code, h.wrote = code, true
	}
}
func (h *held) Write(b []byte) (int, error) {
	h.wrote = true
	h.body = append(h.body, b...)
	return len(b), nil
}

// standard is the simulator's own dialect: the /v1 API (api.go) and
// Standard Webhooks signed with the configured secrets.
type standard struct{ secrets []stdwebhook.Secret }

func (standard) Handler(s *Simulator) http.Handler { return s.standardHandler() }

func (standard) EnvelopeID(seq uint64, key string) string {
	return fmt.Sprintf("env-%06d-%s", seq, hashHex([]byte(key))[:8])
}

func (d standard) Webhooks(t Transition) []Message {
	w := Webhook{ID: t.ID, Type: t.Type, CreatedAt: t.At,
		Data: WebhookData{EnvelopeID: t.Envelope.ID, Status: t.Envelope.Status, StatusChangedAt: t.Envelope.StatusAt, Metadata: t.Envelope.Metadata}}
	if r := t.Recipient; r != nil {
		w.Data.Recipient = &WebhookRecipient{ID: r.ID, Email: r.Email, Name: r.Name, Status: r.Status,
			IPAddress: r.IP, UserAgent: r.UserAgent, IDVerifiedAt: r.VerifiedAt}
	}
	body, err := json.Marshal(w)
	if err != nil {
		return nil
	}
	return []Message{MessageFunc(func(_ int, now time.Time) ([]byte, http.Header) {
		h := http.Header{}
		stdwebhook.SetHeaders(h, d.secrets, t.ID, now, body)
		return body, h
	})}
}
