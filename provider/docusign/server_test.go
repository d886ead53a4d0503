package docusign_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/esignflow/esignflow/provider/docusign"
)

// A small DocuSign, answering as PROVIDER-APIS.md section 1 says: the
// OAuth token and userinfo endpoints (verifying the JWT with the public
// key), and the envelope calls the Client makes. Faults are injected per
// operation.

const (
	accountID      = "9a1f7c4e-0000-4000-8000-000000000001"
	integrationKey = "7c2b8d7e-0000-4000-8000-0000000000ik"
	userID         = "6b1c2d3e-0000-4000-8000-000000000002"
)

// fault is what an operation does once.
type fault string

const (
	faultDrop    fault = "drop"    // act, then drop the connection
	faultTimeout fault = "timeout" // act, then answer nothing until the client gives up
	fault503     fault = "503"     // answer 503 without acting
)

type fakeEnvelope struct {
	ID, Status, TxID string
	Def              map[string]any
	Changed          time.Time
}

type server struct {
	t   *testing.T
	srv *httptest.Server
	clk *clock

	mu         sync.Mutex
	keys       []*rsa.PublicKey
	claims     []jwt.MapClaims
	forms      []url.Values
	tokenErr   string // the token endpoint's error, "" for none
	expiresIn  int
	userinfo   int
	calls      []string // REST calls: "METHOD /path?query"
	envelopes  map[string]*fakeEnvelope
	faults     map[string][]fault // by operation: create, send, lookup, get
	limitOnce  *limitAnswer       // the next REST call's answer
	envLimits  map[string]string  // envelope id → errorCode for its next call
	headers    http.Header        // added to every REST answer
	docs       map[string][]byte  // served at /docs/<name>
	lastCreate map[string]any
	seq        int
}

type limitAnswer struct {
	status int
	code   string
	reset  time.Time
}

func newServer(t *testing.T, clk *clock, keys ...*rsa.PublicKey) *server {
	t.Helper()
	s := &server{t: t, clk: clk, keys: keys, expiresIn: 3600, envelopes: map[string]*fakeEnvelope{},
		faults: map[string][]fault{}, envLimits: map[string]string{}, headers: http.Header{}, docs: map[string][]byte{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *server) URL() string { return s.srv.URL }

func (s *server) inject(op string, fs ...fault) {
	s.mu.Lock()
	s.faults[op] = append(s.faults[op], fs...)
	s.mu.Unlock()
}

func (s *server) takeFault(op string) fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.faults[op]) == 0 {
		return ""
	}
	f := s.faults[op][0]
	s.faults[op] = s.faults[op][1:]
	return f
}

func (s *server) restCalls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func (s *server) tokenCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.claims)
}

func (s *server) add(e *fakeEnvelope) {
	s.mu.Lock()
	s.envelopes[e.ID] = e
	s.mu.Unlock()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func errorBody(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"errorCode": code, "message": msg})
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/oauth/token":
		s.token(w, r)
		return
	case r.URL.Path == "/oauth/userinfo":
		s.mu.Lock()
		s.userinfo++
		s.mu.Unlock()
		writeJSON(w, 200, map[string]any{"sub": userID, "accounts": []map[string]any{
			{"account_id": "00000000-0000-0000-0000-000000000000", "is_default": true, "base_uri": "https://elsewhere.invalid"},
			{"account_id": accountID, "is_default": false, "base_uri": s.srv.URL},
		}})
		return
	case strings.HasPrefix(r.URL.Path, "/docs/"):
		s.mu.Lock()
		b, ok := s.docs[strings.TrimPrefix(r.URL.Path, "/docs/")]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
		return
	}
	prefix := "/restapi/v2.1/accounts/" + accountID
	if !strings.HasPrefix(r.URL.Path, prefix) {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer tok-"+strconv.Itoa(s.tokenCalls()) {
		errorBody(w, 401, "USER_AUTHENTICATION_FAILED", "bad token "+r.Header.Get("Authorization"))
		return
	}
	path := strings.TrimPrefix(r.URL.Path, prefix)
	s.mu.Lock()
	s.calls = append(s.calls, r.Method+" "+path+"?"+r.URL.RawQuery)
	for k, v := range s.headers {
		w.Header()[k] = v
	}
	lim := s.limitOnce
	s.limitOnce = nil
	s.mu.Unlock()
	if lim != nil {
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(lim.reset.Unix(), 10))
		w.Header().Set("X-RateLimit-Remaining", "0")
		errorBody(w, lim.status, lim.code, "The maximum number of API invocations has been exceeded.")
		return
	}
	parts := strings.Split(strings.Trim(path, "/"), "/") // envelopes {id} ...
	switch {
	case len(parts) == 1 && r.Method == http.MethodPost:
		s.create(w, r)
	case len(parts) == 1 && r.Method == http.MethodGet:
		s.list(w, r)
	case len(parts) >= 2 && s.envLimited(w, parts[1]):
	case len(parts) == 2 && r.Method == http.MethodPut:
		s.send(w, r, parts[1])
	case len(parts) == 2 && r.Method == http.MethodGet:
		s.get(w, parts[1])
	case len(parts) == 4 && parts[2] == "documents":
		w.Header().Set("Content-Type", "application/pdf")
		_, _ = fmt.Fprintf(w, "%%PDF %s of %s", parts[3], parts[1])
	case len(parts) == 3 && parts[2] == "audit_events":
		writeJSON(w, 200, map[string]any{"auditEvents": []any{
			map[string]any{"eventFields": []any{
				map[string]any{"name": "logTime", "value": "2026-11-27T09:58:01.103Z"},
				map[string]any{"name": "Source", "value": "API"},
				map[string]any{"name": "Action", "value": "Registered"},
			}},
			map[string]any{"eventFields": []any{
				map[string]any{"name": "logTime", "value": "2026-11-27T10:15:41.867Z"},
				map[string]any{"name": "Action", "value": "Signed"},
				map[string]any{"name": "ClientIPAddress", "value": "203.0.113.5"},
				map[string]any{"name": "GeoLocation", "value": nil},
			}},
		}})
	default:
		errorBody(w, 400, "INVALID_REQUEST_PARAMETER", "unexpected call "+r.Method+" "+path)
	}
}

func (s *server) envLimited(w http.ResponseWriter, id string) bool {
	s.mu.Lock()
	code, ok := s.envLimits[id]
	delete(s.envLimits, id)
	s.mu.Unlock()
	if ok {
		errorBody(w, 400, code, "The envelope has been polled too often.")
	}
	return ok
}

// act runs fault f around an operation that already acted.
func (s *server) answer(w http.ResponseWriter, r *http.Request, f fault, status int, v any) {
	switch f {
	case faultDrop:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			s.t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	case faultTimeout:
		<-r.Context().Done() // the client gave up
	default:
		writeJSON(w, status, v)
	}
}

func (s *server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	s.mu.Lock()
	keys, tokenErr, expiresIn := s.keys, s.tokenErr, s.expiresIn
	s.mu.Unlock()
	if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	var claims jwt.MapClaims
	var verr error
	for _, k := range keys {
		claims = jwt.MapClaims{}
		_, verr = jwt.ParseWithClaims(r.PostForm.Get("assertion"), claims, func(tok *jwt.Token) (any, error) { return k, nil },
			jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(s.clk.Now))
		if verr == nil {
			break
		}
	}
	if verr != nil {
		writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": verr.Error()})
		return
	}
	s.mu.Lock()
	s.claims = append(s.claims, claims)
	s.forms = append(s.forms, r.PostForm)
	n := len(s.claims)
	s.mu.Unlock()
	if tokenErr != "" {
		writeJSON(w, 400, map[string]string{"error": tokenErr})
		return
	}
	writeJSON(w, 200, map[string]any{"access_token": "tok-" + strconv.Itoa(n), "token_type": "Bearer", "expires_in": expiresIn})
}

func (s *server) create(w http.ResponseWriter, r *http.Request) {
	f := s.takeFault("create")
	if f == fault503 {
		errorBody(w, 503, "", "unavailable")
		return
	}
	var def map[string]any
	if err := json.NewDecoder(r.Body).Decode(&def); err != nil {
		errorBody(w, 400, "INVALID_REQUEST_BODY", err.Error())
		return
	}
	s.mu.Lock()
	s.seq++
	e := &fakeEnvelope{ID: fmt.Sprintf("env-%04d", s.seq), Status: def["status"].(string), Def: def, Changed: s.clk.Now()}
	e.TxID, _ = def["transactionId"].(string)
	s.envelopes[e.ID] = e
	s.lastCreate = def
	s.mu.Unlock()
	s.answer(w, r, f, 201, map[string]string{"envelopeId": e.ID, "status": e.Status, "uri": "/envelopes/" + e.ID,
		"statusDateTime": "2026-11-27T09:58:01.1030000Z"})
}

func (s *server) send(w http.ResponseWriter, r *http.Request, id string) {
	f := s.takeFault("send")
	if f == fault503 {
		errorBody(w, 503, "", "unavailable")
		return
	}
	var body map[string]string
	_ = json.NewDecoder(r.Body).Decode(&body)
	s.mu.Lock()
	e, ok := s.envelopes[id]
	if ok {
		if e.Status != "created" {
			s.mu.Unlock()
			errorBody(w, 400, "ENVELOPE_INVALID_STATUS", "Invalid envelope status.")
			return
		}
		e.Status, e.Changed = body["status"], s.clk.Now()
	}
	s.mu.Unlock()
	if !ok {
		errorBody(w, 404, "ENVELOPE_DOES_NOT_EXIST", "no envelope "+id)
		return
	}
	s.answer(w, r, f, 200, map[string]string{"envelopeId": id})
}

func (s *server) envelopeJSON(e *fakeEnvelope) map[string]any {
	out := map[string]any{"envelopeId": e.ID, "status": e.Status, "transactionId": e.TxID,
		"statusChangedDateTime": e.Changed.UTC().Format("2006-01-02T15:04:05.0000000Z")}
	if cf, ok := e.Def["customFields"]; ok {
		out["customFields"] = cf
	}
	if rc, ok := e.Def["recipients"].(map[string]any); ok {
		signers, _ := rc["signers"].([]any)
		var out2 []any
		for _, sg := range signers {
			m := sg.(map[string]any)
			out2 = append(out2, map[string]any{"recipientId": m["recipientId"], "name": m["name"], "email": m["email"], "status": "sent", "routingOrder": m["routingOrder"]})
		}
		out["recipients"] = map[string]any{"signers": out2}
	}
	return out
}

func (s *server) get(w http.ResponseWriter, id string) {
	s.mu.Lock()
	e, ok := s.envelopes[id]
	var body map[string]any
	if ok {
		body = s.envelopeJSON(e)
	}
	s.mu.Unlock()
	if !ok {
		errorBody(w, 404, "ENVELOPE_DOES_NOT_EXIST", "no envelope "+id)
		return
	}
	writeJSON(w, 200, body)
}

func (s *server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if tx := q.Get("transaction_ids"); tx != "" {
		if s.takeFault("lookup") == fault503 {
			errorBody(w, 503, "", "unavailable")
			return
		}
		s.mu.Lock()
		var st []map[string]string
		for _, e := range s.envelopes {
			if slices.Contains(strings.Split(tx, ","), e.TxID) {
				st = append(st, map[string]string{"envelopeId": e.ID, "status": e.Status, "transactionId": e.TxID})
			}
		}
		s.mu.Unlock()
		writeJSON(w, 200, map[string]any{"resultSetSize": strconv.Itoa(len(st)), "envelopeTransactionStatuses": st})
		return
	}
	var match []*fakeEnvelope
	s.mu.Lock()
	switch {
	case q.Get("envelope_ids") != "":
		for _, id := range strings.Split(q.Get("envelope_ids"), ",") {
			if e, ok := s.envelopes[id]; ok {
				match = append(match, e)
			}
		}
	case q.Get("from_date") != "":
		from, err := time.Parse(time.RFC3339Nano, q.Get("from_date"))
		if err != nil {
			s.mu.Unlock()
			errorBody(w, 400, "INVALID_REQUEST_PARAMETER", "from_date: "+err.Error())
			return
		}
		for _, e := range s.envelopes {
			if !e.Changed.Before(from) {
				match = append(match, e)
			}
		}
	default:
		s.mu.Unlock()
		errorBody(w, 400, "INVALID_REQUEST_PARAMETER", "Query parameter 'from_date' must be set to a valid DateTime, or 'envelope_ids' or 'transaction_ids' must be specified.")
		return
	}
	slices.SortFunc(match, func(a, b *fakeEnvelope) int {
		if c := a.Changed.Compare(b.Changed); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	start, _ := strconv.Atoi(q.Get("start_position"))
	count, err := strconv.Atoi(q.Get("count"))
	if err != nil || count <= 0 {
		count = 100
	}
	end := min(len(match), start+count)
	var page []any
	for _, e := range match[min(start, end):end] {
		page = append(page, s.envelopeJSON(e))
	}
	s.mu.Unlock()
	next := ""
	if end < len(match) {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("start_position", strconv.Itoa(end))
		next = "/v2.1/accounts/" + accountID + "/envelopes?" + nq.Encode()
	}
	writeJSON(w, 200, map[string]any{"resultSetSize": strconv.Itoa(len(page)), "totalSetSize": strconv.Itoa(len(match)),
		"startPosition": strconv.Itoa(start), "endPosition": strconv.Itoa(max(end-1, 0)), "nextUri": next, "envelopes": page})
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	keyOnce sync.Once
	keyA    *rsa.PrivateKey
	keyB    *rsa.PrivateKey
)

// testKeys returns two RSA keys, generated once per test binary.
func testKeys(t *testing.T) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if keyA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keyB, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return keyA, keyB
}

// writeKey writes k as PEM (pkcs1 or pkcs8) to path.
func writeKey(t *testing.T, path string, k *rsa.PrivateKey, pkcs8 bool) {
	t.Helper()
	block := &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	if pkcs8 {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

// setup returns a server and a Client for it, on a settable clock, with
// BaseURL unset (found by userinfo) unless base is true.
type setup struct {
	srv     *server
	clk     *clock
	c       *docusign.Client
	cfg     docusign.Config
	keyPath string
}

func newSetup(t *testing.T, tweak func(*docusign.Config)) *setup {
	t.Helper()
	a, _ := testKeys(t)
	clk := newClock()
	srv := newServer(t, clk, &a.PublicKey)
	path := filepath.Join(t.TempDir(), "docusign.pem")
	writeKey(t, path, a, false)
	cfg := docusign.Config{
		AccountID: accountID, IntegrationKey: integrationKey, UserID: userID, PrivateKeyFile: path,
		AuthURL: srv.URL(), Now: clk.Now, CallTimeout: 2 * time.Second,
		BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		Logger: discard(),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := docusign.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &setup{srv: srv, clk: clk, c: c, cfg: cfg, keyPath: path}
}

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
