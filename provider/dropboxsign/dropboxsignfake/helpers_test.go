package dropboxsignfake_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/provider/dropboxsign"
	"github.com/esignflow/esignflow/provider/dropboxsign/dropboxsignfake"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

const apiKey = "c4f3b0e2a1d94e5f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f"

// harness is a simulator speaking Dropbox Sign with a callback listener.
type harness struct {
	t    testing.TB
	sim  *sim.Simulator
	d    *dropboxsignfake.Dialect
	hook *listener
}

// start runs a Dropbox Sign simulator for the test; recipients never act
// unless sc.Step says otherwise.
func start(t testing.TB, dc dropboxsignfake.Config, sc sim.Config) *harness {
	t.Helper()
	if dc.APIKey == "" {
		dc.APIKey = apiKey
	}
	d, err := dropboxsignfake.New(dc)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, d: d, hook: &listener{seen: map[string]int{}}}
	srv := httptest.NewServer(h.hook)
	t.Cleanup(srv.Close)
	sc.Dialect = d
	sc.WebhookURL = srv.URL
	sc.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if sc.Step == 0 {
		sc.Step = time.Hour
	}
	if sc.RetryBase == 0 {
		sc.RetryBase, sc.RetryMax = 5*time.Millisecond, 50*time.Millisecond
	}
	h.sim = fakes.Sim(t, sc)
	return h
}

// reply is one answer.
type reply struct {
	code   int
	header http.Header
	body   []byte
}

// decode decodes the answer's JSON into v.
func (r reply) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("HTTP %d %q: %v", r.code, r.body, err)
	}
}

// apiError is an error answer's error object.
type apiError struct {
	Msg  string `json:"error_msg"`
	Name string `json:"error_name"`
	Path string `json:"error_path"`
}

// apiError decodes an error answer.
func (r reply) apiError(t testing.TB) apiError {
	t.Helper()
	var e struct {
		Error apiError `json:"error"`
	}
	r.decode(t, &e)
	return e.Error
}

// errorName is the error_name of an error answer, which must have an
// error_msg.
func (r reply) errorName(t testing.TB) string {
	t.Helper()
	e := r.apiError(t)
	if e.Msg == "" {
		t.Fatalf("error without error_msg: %s", r.body)
	}
	return e.Name
}

// do calls the API with the test's API key.
func (h *harness) do(method, path, contentType string, body []byte, header http.Header) reply {
	h.t.Helper()
	return h.doCtx(context.Background(), method, path, contentType, body, header, apiKey)
}

func (h *harness) doCtx(ctx context.Context, method, path, contentType string, body []byte, header http.Header, key string) reply {
	h.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, h.sim.URL()+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if key != "" {
		req.SetBasicAuth(key, "")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return reply{code: resp.StatusCode, header: resp.Header, body: raw}
}

func (h *harness) get(path string) reply {
	h.t.Helper()
	return h.do("GET", path, "", nil, nil)
}

// sendJSON posts a JSON send request, with an Idempotency-Key unless key
// is "".
func (h *harness) sendJSON(req map[string]any, key string) reply {
	h.t.Helper()
	raw, err := json.Marshal(req)
	if err != nil {
		h.t.Fatal(err)
	}
	var hd http.Header
	if key != "" {
		hd = http.Header{"Idempotency-Key": {key}}
	}
	return h.do("POST", "/v3/signature_request/send", "application/json", raw, hd)
}

// signatureRequest is a SignatureRequestResponse as the spec types it.
type signatureRequest struct {
	TestMode              bool              `json:"test_mode"`
	ID                    string            `json:"signature_request_id"`
	RequesterEmailAddress string            `json:"requester_email_address"`
	Title                 string            `json:"title"`
	Subject               string            `json:"subject"`
	Message               *string           `json:"message"`
	Metadata              map[string]string `json:"metadata"`
	CreatedAt             int64             `json:"created_at"`
	ExpiresAt             *int64            `json:"expires_at"`
	IsComplete            bool              `json:"is_complete"`
	IsDeclined            bool              `json:"is_declined"`
	HasError              bool              `json:"has_error"`
	FilesURL              string            `json:"files_url"`
	SigningURL            string            `json:"signing_url"`
	DetailsURL            string            `json:"details_url"`
	Signatures            []struct {
		ID            string  `json:"signature_id"`
		Email         string  `json:"signer_email_address"`
		Name          string  `json:"signer_name"`
		Order         *int    `json:"order"`
		StatusCode    string  `json:"status_code"`
		SignedAt      *int64  `json:"signed_at"`
		LastViewedAt  *int64  `json:"last_viewed_at"`
		DeclineReason *string `json:"decline_reason"`
	} `json:"signatures"`
}

// send posts a JSON send request that must succeed, and returns it.
func (h *harness) send(req map[string]any, key string) signatureRequest {
	h.t.Helper()
	r := h.sendJSON(req, key)
	if r.code != http.StatusOK {
		h.t.Fatalf("send: %d %s", r.code, r.body)
	}
	var out struct {
		SignatureRequest signatureRequest `json:"signature_request"`
	}
	r.decode(h.t, &out)
	return out.SignatureRequest
}

// request is a send request as esignflow's client would make it: the
// request id and tenant in metadata, ordered signers.
func request(requestID string, signers int) map[string]any {
	var ss []any
	for i := range signers {
		ss = append(ss, map[string]any{"name": fmt.Sprintf("Signer %d", i+1), "email_address": fmt.Sprintf("s%d@example.com", i+1), "order": i})
	}
	return map[string]any{
		"title": "NDA " + requestID, "subject": "Please sign " + requestID, "message": "Hi",
		"signers": ss, "file_urls": []string{"https://docs.example.com/" + requestID + ".pdf"},
		"metadata": map[string]any{"esignflow_request_id": requestID, "esignflow_tenant": "acme"},
	}
}

// listener is a callback endpoint that decodes, verifies and parses every
// callback with provider/dropboxsign (what esignflow's ingress uses) and
// records it. It answers Reply unless noReply says otherwise.
type listener struct {
	mu        sync.Mutex
	callbacks []received
	seen      map[string]int // event_type/signature request/event_time/related → deliveries
	bad       []string
	noReply   func(c received) bool // answer 200 without Reply when true
	all       []received            // every delivery that verified, answered Reply or not
}

type received struct {
	header http.Header
	body   []byte
	json   []byte
	cb     dropboxsign.Callback
	raw    map[string]any
	events []schemas.EnvelopeEvent // nil for events that carry no status
}

// key names one callback event, the same on every delivery of it.
func (c received) key() string {
	return c.cb.Event.Type + "/" + c.cb.SignatureRequest.ID + "/" + c.cb.Event.Time + "/" + c.cb.Event.Metadata.RelatedSignatureID
}

func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c := received{header: r.Header.Clone(), body: body}
	l.mu.Lock()
	defer l.mu.Unlock()
	fail := func(msg string) {
		l.bad = append(l.bad, msg)
		w.WriteHeader(http.StatusBadRequest)
	}
	cb, err := dropboxsign.Decode(r.Header.Get("Content-Type"), body)
	if err != nil {
		fail("decode: " + err.Error())
		return
	}
	if err := dropboxsign.Verify([][]byte{[]byte("another key"), []byte(apiKey)}, cb); err != nil {
		fail("verify: " + err.Error())
		return
	}
	if err := dropboxsign.Verify([][]byte{[]byte("another key")}, cb); !errors.Is(err, dropboxsign.ErrNoMatch) {
		fail("verifies with another key")
		return
	}
	c.cb = cb
	evs, err := dropboxsign.Parse(cb)
	switch {
	case errors.Is(err, dropboxsign.ErrIgnored):
	case err != nil:
		fail("parse: " + err.Error())
		return
	}
	c.events = evs
	if c.json, err = formField(r.Header.Get("Content-Type"), body); err != nil {
		fail(err.Error())
		return
	}
	_ = json.Unmarshal(c.json, &c.raw)
	l.all = append(l.all, c)
	if l.noReply != nil && l.noReply(c) {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "OK")
		return
	}
	l.callbacks = append(l.callbacks, c)
	l.seen[c.key()]++
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, dropboxsign.Reply)
}

// formField reads the "json" field of a multipart/form-data body on its
// own, not with the code under test.
func formField(contentType string, body []byte) ([]byte, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" {
		return nil, fmt.Errorf("content type %q is not multipart/form-data", contentType)
	}
	form, err := multipart.NewReader(bytes.NewReader(body), params["boundary"]).ReadForm(1 << 20)
	if err != nil {
		return nil, err
	}
	if len(form.Value["json"]) != 1 || len(form.Value) != 1 || len(form.File) != 0 {
		return nil, fmt.Errorf("want one form field json, got %v", form.Value)
	}
	return []byte(form.Value["json"][0]), nil
}

// contentMD5 is Content-MD5 as Dropbox Sign's captured callbacks carry it.
func contentMD5(body []byte) string {
	sum := md5.Sum(body)
	return base64.StdEncoding.EncodeToString([]byte(hex.EncodeToString(sum[:])))
}

func (l *listener) deliveries() []received {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]received(nil), l.all...)
}

func (l *listener) snapshot() ([]received, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]received(nil), l.callbacks...), append([]string(nil), l.bad...)
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}
