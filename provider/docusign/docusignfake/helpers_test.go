package docusignfake_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/provider/docusign"
	"github.com/esignflow/esignflow/provider/docusign/docusignfake"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

// testKey is the integration key's RSA key pair, generated once: 2048-bit
// generation takes a while under -race.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

var hmacKeys = [][]byte{[]byte("old-connect-key-0123456789"), []byte("Zk9mQ3Jlc3RTZWNyZXRLZXkxMjM0NTY3ODkw")}

// harness is a simulator speaking DocuSign, with a Connect listener and a
// token.
type harness struct {
	t     testing.TB
	sim   *sim.Simulator
	d     *docusignfake.Dialect
	hook  *listener
	token string
}

// start runs a DocuSign-dialect simulator for the test, with the test key
// pair and the Connect HMAC keys, and gets an access token.
func start(t testing.TB, dc docusignfake.Config, sc sim.Config) *harness {
	t.Helper()
	dc.PublicKey = &testKey().PublicKey
	if dc.HMACKeys == nil {
		dc.HMACKeys = hmacKeys
	}
	d, err := docusignfake.New(dc)
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
		sc.Step = time.Hour // recipients never act unless the test asks
	}
	if sc.RetryBase == 0 {
		sc.RetryBase, sc.RetryMax = 5*time.Millisecond, 50*time.Millisecond
	}
	h.sim = fakes.Sim(t, sc)
	if !dc.NoConsent {
		h.token = h.getToken(h.claims())
	}
	return h
}

// host is the simulator's host:port, the JWT's aud.
func (h *harness) host() string { return strings.TrimPrefix(h.sim.URL(), "http://") }

func (h *harness) claims() docusignfake.Claims {
	now := time.Now()
	return docusignfake.Claims{Issuer: docusignfake.DefaultIntegrationKey, Subject: docusignfake.DefaultUserID, Audience: h.host(),
		IssuedAt: now, Expires: now.Add(time.Hour), Scope: "signature impersonation"}
}

// tokenCall posts a JWT grant signed with key.
func (h *harness) tokenCall(key *rsa.PrivateKey, c docusignfake.Claims) (int, map[string]any) {
	h.t.Helper()
	a, err := docusignfake.SignAssertion(key, c)
	if err != nil {
		h.t.Fatal(err)
	}
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {a}}
	resp, err := http.PostForm(h.sim.URL()+"/oauth/token", form)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, out
}

func (h *harness) getToken(c docusignfake.Claims) string {
	h.t.Helper()
	code, out := h.tokenCall(testKey(), c)
	if code != http.StatusOK {
		h.t.Fatalf("token: %d %v", code, out)
	}
	return out["access_token"].(string)
}

// rest calls the account's REST API at path (after /accounts/{id}).
func (h *harness) rest(method, path string, body any) (int, http.Header, []byte) {
	h.t.Helper()
	return h.call(method, "/restapi/v2.1/accounts/"+docusignfake.DefaultAccountID+path, h.token, body)
}

func (h *harness) call(method, path, token string, body any) (int, http.Header, []byte) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, h.sim.URL()+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, raw
}

// restJSON is rest with the answer decoded.
func (h *harness) restJSON(method, path string, body any) (int, map[string]any) {
	h.t.Helper()
	code, _, raw := h.rest(method, path, body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		h.t.Fatalf("%s %s: %d %q: %v", method, path, code, raw, err)
	}
	return code, out
}

// definition is an envelope definition as a DocuSign client sends it.
func definition(requestID, status string, signers int) map[string]any {
	var ss []any
	for i := range signers {
		s := map[string]any{"recipientId": fmt.Sprint(i + 1), "routingOrder": fmt.Sprint(1 + i/2), "name": fmt.Sprintf("Signer %d", i+1),
			"email": fmt.Sprintf("s%d@example.com", i+1)}
		switch i {
		case 0:
			s["identityVerification"] = map[string]any{"workflowId": "wf-idv-1"}
		case 1:
			s["idCheckConfigurationName"] = "SMS Auth $"
			s["smsAuthentication"] = map[string]any{"senderProvidedNumbers": []string{"+15551234567"}}
		}
		ss = append(ss, s)
	}
	return map[string]any{
		"emailSubject": "Please sign " + requestID, "emailBlurb": "Hi", "status": status, "transactionId": "txn-" + requestID,
		"documents":  []any{map[string]any{"documentBase64": base64.StdEncoding.EncodeToString([]byte("%PDF-1.7 " + requestID)), "documentId": "1", "name": "NDA", "fileExtension": "pdf"}},
		"recipients": map[string]any{"signers": ss},
		"customFields": map[string]any{"textCustomFields": []any{
			map[string]any{"name": "esignflow_request_id", "value": requestID, "show": "false", "required": "false"},
			map[string]any{"name": "esignflow_tenant", "value": "acme", "show": "false", "required": "false"},
		}},
	}
}

// create posts def and returns the envelope id.
func (h *harness) create(def map[string]any) string {
	h.t.Helper()
	code, out := h.restJSON("POST", "/envelopes", def)
	if code != http.StatusCreated {
		h.t.Fatalf("create: %d %v", code, out)
	}
	return out["envelopeId"].(string)
}

// listener is a Connect endpoint that checks every message with
// provider/docusign (the parser esignflow's ingress uses) and records it.
type listener struct {
	mu       sync.Mutex
	messages []message
	seen     map[string]int // event id → deliveries
	bad      []string
	fail     func(m message) bool // answer 500 when true
}

type message struct {
	header http.Header
	body   []byte
	raw    map[string]any
	events []schemas.EnvelopeEvent
}

func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m := message{header: r.Header.Clone(), body: body}
	l.mu.Lock()
	defer l.mu.Unlock()
	// The newest key alone must verify: every key signs, one header each.
	if err := docusign.Verify([][]byte{hmacKeys[1]}, r.Header, body); err != nil {
		l.bad = append(l.bad, "verify: "+err.Error())
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	evs, err := docusign.Parse(body)
	if err != nil {
		l.bad = append(l.bad, "parse: "+err.Error()+": "+string(body))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	m.events = evs
	_ = json.Unmarshal(body, &m.raw)
	if l.fail != nil && l.fail(m) {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	l.messages = append(l.messages, m)
	for _, ev := range evs {
		l.seen[ev.EventID]++
	}
	w.WriteHeader(http.StatusOK)
}

func (l *listener) snapshot() ([]message, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]message(nil), l.messages...), append([]string(nil), l.bad...)
}
