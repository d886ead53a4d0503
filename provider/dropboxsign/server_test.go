package dropboxsign_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A small Dropbox Sign, answering as PROVIDER-APIS.md section 2 says: HTTP
// Basic with the API key as the user and no password, the send endpoint
// (JSON or multipart with bracket names), get, list with an unfielded
// query over metadata and title, files (409 while preparing), account,
// {"error": {...}} bodies and the X-RateLimit-* headers. Every send is
// recorded; faults are injected per operation (send, lookup, get, files).

// fault is what one call of an operation does.
type fault string

const (
	faultNone       fault = ""
	faultTimeout    fault = "timeout"     // act, then answer nothing until the client gives up
	fault503After   fault = "503-after"   // act, then answer 503
	faultDrop       fault = "drop"        // act, then drop the connection
	fault503        fault = "503"         // answer 503 without acting
	faultLateAct    fault = "late-act"    // hold the call (in flight) until the client gives up and a send with its key was refused 409, then act
	faultInFlight   fault = "409"         // answer 409 conflict without acting
	faultRateLimit  fault = "429"         // answer 429 exceeded_rate without acting
	faultBadRequest fault = "400"         // answer 400 bad_request
	faultUnauth     fault = "401"         // answer 401 unauthorized
	faultNotReady   fault = "files-409"   // files: 409 while preparing
	faultGone       fault = "410"         // get: 410 deleted
	faultRemaining0 fault = "remaining-0" // answer normally with X-RateLimit-Remaining: 0
)

// sendRecord is one send call as the server read it.
type sendRecord struct {
	IdemKey     string
	ContentType string
	Fields      map[string]string // multipart: every form field; JSON: none
	Files       map[string][]byte // multipart: files[N] → bytes
	JSON        map[string]any    // JSON body
	Metadata    map[string]string // from either form
	Acted       bool              // it created a signature request
}

// call is one HTTP request the server received.
type call struct {
	at      time.Time
	method  string
	path    string
	query   url.Values
	user    string
	pass    string
	idemKey string
}

type fakeSR struct {
	id      string
	created time.Time
	body    map[string]any // the signature_request object answered
	meta    map[string]string
}

type server struct {
	t   *testing.T
	srv *httptest.Server

	mu         sync.Mutex
	keys       map[string]bool // accepted API keys
	calls      []call
	sends      []*sendRecord
	srs        map[string]*fakeSR
	order      []string
	idem       map[string]string // Idempotency-Key → id, when honoured
	inFlight   map[string]bool   // Idempotency-Key → a late-act send holds it
	honourIdem bool
	searchLag  time.Duration
	faults     map[string][]fault // by operation, consumed in order
	canned     map[string]string  // id → raw signature_request JSON for get
	conflicts  int                // sends answered 409 because one with their key was in flight
	cond       *sync.Cond         // on mu: conflicts or closing changed
	closing    bool               // the test ends: held sends let go
	reset      func() int64       // X-Ratelimit-Reset to answer; default now+60
	resetName  string             // the header name written, default the spec's X-Ratelimit-Reset
	seq        int
}

func newServer(t *testing.T, keys ...string) *server {
	t.Helper()
	s := &server{t: t, keys: map[string]bool{}, srs: map[string]*fakeSR{}, idem: map[string]string{},
		inFlight: map[string]bool{}, faults: map[string][]fault{}, canned: map[string]string{}, resetName: "X-Ratelimit-Reset"}
	s.cond = sync.NewCond(&s.mu)
	for _, k := range keys {
		s.keys[k] = true
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	t.Cleanup(func() { // runs before Close, which waits for the handlers
		s.mu.Lock()
		s.closing = true
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	return s
}

func (s *server) url() string { return s.srv.URL + "/v3" }

func (s *server) setKeys(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = map[string]bool{}
	for _, k := range keys {
		s.keys[k] = true
	}
}

func (s *server) fault(op string, fs ...fault) {
	s.mu.Lock()
	s.faults[op] = append(s.faults[op], fs...)
	s.mu.Unlock()
}

func (s *server) next(op string) fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.faults[op]
	if len(q) == 0 {
		return faultNone
	}
	s.faults[op] = q[1:]
	return q[0]
}

func (s *server) allCalls() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]call(nil), s.calls...)
}

func (s *server) allSends() []sendRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]sendRecord, len(s.sends))
	for i, r := range s.sends {
		out[i] = *r
	}
	return out
}

// byRequest counts the signature requests created per esignflow request id.
func (s *server) byRequest() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	for _, id := range s.order {
		sr := s.srs[id]
		out[sr.meta["esignflow_request_id"]] = append(out[sr.meta["esignflow_request_id"]], id)
	}
	return out
}

func writeError(w http.ResponseWriter, status int, name, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"error_msg": msg, "error_name": name}})
}

func (s *server) rateHeaders(w http.ResponseWriter, remaining int) {
	s.mu.Lock()
	reset := time.Now().Unix() + 60
	if s.reset != nil {
		reset = s.reset()
	}
	name := s.resetName
	s.mu.Unlock()
	h := w.Header()
	h["X-RateLimit-Limit"] = []string{"100"}
	h["X-RateLimit-Remaining"] = []string{strconv.Itoa(remaining)}
	h[name] = []string{strconv.FormatInt(reset, 10)} // written as is, not canonicalised
}

var filesPath = regexp.MustCompile(`^/v3/signature_request/files/([^/]+)$`)
var getPath = regexp.MustCompile(`^/v3/signature_request/([0-9a-f]+)$`)

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	user, pass, _ := r.BasicAuth()
	s.mu.Lock()
	s.calls = append(s.calls, call{at: time.Now(), method: r.Method, path: r.URL.Path, query: r.URL.Query(),
		user: user, pass: pass, idemKey: r.Header.Get("Idempotency-Key")})
	ok := s.keys[user] && pass == ""
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusUnauthorized, "unauthorized", "Unauthorized api key")
		return
	}
	var op string
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v3/signature_request/send":
		op = "send"
	case r.Method == http.MethodGet && r.URL.Path == "/v3/signature_request/list":
		op = "lookup"
	case r.Method == http.MethodGet && r.URL.Path == "/v3/account":
		op = "account"
	case r.Method == http.MethodGet && filesPath.MatchString(r.URL.Path):
		op = "files"
	case r.Method == http.MethodGet && getPath.MatchString(r.URL.Path):
		op = "get"
	default:
		writeError(w, http.StatusNotFound, "not_found", "Not found")
		return
	}
	f := s.next(op)
	remaining := 99
	switch f {
	case fault503:
		s.rateHeaders(w, remaining)
		writeError(w, http.StatusServiceUnavailable, "maintenance", "Down for maintenance")
		return
	case faultInFlight:
		s.rateHeaders(w, remaining)
		writeError(w, http.StatusConflict, "conflict", "An identical request is already being processed.")
		return
	case faultRateLimit:
		s.rateHeaders(w, 0)
		writeError(w, http.StatusTooManyRequests, "exceeded_rate", "Too many requests.")
		return
	case faultBadRequest:
		s.rateHeaders(w, remaining)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":{"error_msg":"Invalid email address","error_name":"bad_request","error_path":"signers[0][email_address]"}}`)
		return
	case faultUnauth:
		writeError(w, http.StatusUnauthorized, "unauthorized", "Unauthorized api key")
		return
	case faultRemaining0:
		remaining = 0
	}
	var answer any
	switch op {
	case "send":
		var ok bool
		if answer, ok = s.send(w, r, f); !ok {
			return
		}
	case "lookup":
		answer = s.list(r)
	case "account":
		answer = map[string]any{"account": map[string]any{"account_id": "5a1f7c4e9b0d2e3f4a5b6c7d8e9f0a1b2c3d4e5f", "email_address": "sender@example.com"}}
	case "files":
		if f == faultNotReady {
			s.rateHeaders(w, remaining)
			writeError(w, http.StatusConflict, "conflict", "Files are still being processed. Please try again later.")
			return
		}
		id := filesPath.FindStringSubmatch(r.URL.Path)[1]
		s.rateHeaders(w, remaining)
		w.Header().Set("Content-Type", "application/pdf")
		_, _ = fmt.Fprintf(w, "%%PDF-1.7 %s %s", id, r.URL.Query().Get("file_type"))
		return
	case "get":
		id := getPath.FindStringSubmatch(r.URL.Path)[1]
		if f == faultGone {
			s.rateHeaders(w, remaining)
			writeError(w, http.StatusGone, "deleted", "This resource has been deleted")
			return
		}
		s.mu.Lock()
		raw, canned := s.canned[id]
		sr := s.srs[id]
		s.mu.Unlock()
		switch {
		case canned:
			answer = json.RawMessage(`{"signature_request":` + raw + `}`)
		case sr != nil:
			answer = map[string]any{"signature_request": sr.body}
		default:
			s.rateHeaders(w, remaining)
			writeError(w, http.StatusNotFound, "not_found", "Not found")
			return
		}
	}
	switch f {
	case faultTimeout:
		<-r.Context().Done()
		return
	case fault503After:
		s.rateHeaders(w, remaining)
		writeError(w, http.StatusServiceUnavailable, "unknown", "Internal error")
		return
	case faultDrop:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	s.rateHeaders(w, remaining)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

// send reads a send, acts on it (unless its Idempotency-Key replays or is
// in flight) and returns the answer; false when it answered already.
func (s *server) send(w http.ResponseWriter, r *http.Request, f fault) (any, bool) {
	rec := &sendRecord{IdemKey: r.Header.Get("Idempotency-Key"), ContentType: r.Header.Get("Content-Type"), Metadata: map[string]string{}}
	var title string
	var signers []map[string]any
	mt, params, _ := mime.ParseMediaType(rec.ContentType)
	switch mt {
	case "application/json":
		if err := json.NewDecoder(r.Body).Decode(&rec.JSON); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "malformed JSON")
			return nil, false
		}
		title, _ = rec.JSON["title"].(string)
		if m, ok := rec.JSON["metadata"].(map[string]any); ok {
			for k, v := range m {
				rec.Metadata[k] = fmt.Sprint(v)
			}
		}
		if ss, ok := rec.JSON["signers"].([]any); ok {
			for _, x := range ss {
				m, _ := x.(map[string]any)
				signers = append(signers, m)
			}
		}
	case "multipart/form-data":
		rec.Fields, rec.Files = map[string]string{}, map[string][]byte{}
		mr := multipart.NewReader(r.Body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			b, _ := io.ReadAll(p)
			if p.FileName() != "" {
				rec.Files[p.FormName()] = b
				continue
			}
			rec.Fields[p.FormName()] = string(b)
		}
		title = rec.Fields["title"]
		for k, v := range rec.Fields {
			if strings.HasPrefix(k, "metadata[") {
				rec.Metadata[strings.TrimSuffix(strings.TrimPrefix(k, "metadata["), "]")] = v
			}
		}
		for i := 0; ; i++ {
			p := fmt.Sprintf("signers[%d]", i)
			if rec.Fields[p+"[email_address]"] == "" {
				break
			}
			m := map[string]any{"name": rec.Fields[p+"[name]"], "email_address": rec.Fields[p+"[email_address]"]}
			if o, err := strconv.Atoi(rec.Fields[p+"[order]"]); err == nil {
				m["order"] = float64(o)
			}
			signers = append(signers, m)
		}
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "unsupported content type "+mt)
		return nil, false
	}
	s.mu.Lock()
	s.sends = append(s.sends, rec)
	if s.honourIdem && rec.IdemKey != "" {
		if s.inFlight[rec.IdemKey] {
			s.conflicts++
			s.cond.Broadcast()
			s.mu.Unlock()
			writeError(w, http.StatusConflict, "conflict", "An identical request is already being processed.")
			return nil, false
		}
		if id, ok := s.idem[rec.IdemKey]; ok {
			body := s.srs[id].body
			s.mu.Unlock()
			return map[string]any{"signature_request": body}, true
		}
	}
	if f == faultLateAct {
		s.inFlight[rec.IdemKey] = true
		s.mu.Unlock()
		<-r.Context().Done()
		s.mu.Lock()
		for s.conflicts == 0 && !s.closing {
			s.cond.Wait()
		}
		delete(s.inFlight, rec.IdemKey)
		s.create(rec, title, signers)
		s.mu.Unlock()
		return nil, false
	}
	body := s.create(rec, title, signers)
	s.mu.Unlock()
	return map[string]any{"signature_request": body}, true
}

// create makes a signature request; s.mu held.
func (s *server) create(rec *sendRecord, title string, signers []map[string]any) map[string]any {
	s.seq++
	id := hex.EncodeToString([]byte(fmt.Sprintf("sr%018d", s.seq)))
	var sigs []any
	for i, sg := range signers {
		sigs = append(sigs, map[string]any{
			"signature_id": fmt.Sprintf("%s%02d", id[:30], i), "signer_email_address": sg["email_address"], "signer_name": sg["name"],
			"signer_role": nil, "order": sg["order"], "status_code": "awaiting_signature", "signed_at": nil, "last_viewed_at": nil,
			"last_reminded_at": nil, "has_pin": false, "has_sms_auth": false,
		})
	}
	meta := map[string]any{}
	for k, v := range rec.Metadata {
		meta[k] = v
	}
	now := time.Now()
	body := map[string]any{
		"signature_request_id": id, "title": title, "metadata": meta, "created_at": now.Unix(), "expires_at": nil,
		"is_complete": false, "is_declined": false, "has_error": false, "signatures": sigs, "test_mode": true,
		"files_url": s.srv.URL + "/v3/signature_request/files/" + id,
	}
	s.srs[id] = &fakeSR{id: id, created: now, body: body, meta: rec.Metadata}
	s.order = append(s.order, id)
	if rec.IdemKey != "" {
		s.idem[rec.IdemKey] = id
	}
	rec.Acted = true
	return body
}

// list answers the unfielded query: signature requests whose title or a
// metadata value holds the term, created at least searchLag ago, newest
// first, paged.
func (s *server) list(r *http.Request) any {
	q := r.URL.Query()
	term := q.Get("query")
	page, _ := strconv.Atoi(q.Get("page"))
	size, _ := strconv.Atoi(q.Get("page_size"))
	if page < 1 {
		page = 1
	}
	if size < 1 || size > 100 {
		size = 20
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var hits []*fakeSR
	for _, id := range s.order {
		sr := s.srs[id]
		if time.Since(sr.created) < s.searchLag {
			continue
		}
		match := term == ""
		for _, v := range sr.meta {
			match = match || strings.Contains(v, term)
		}
		if title, _ := sr.body["title"].(string); term != "" && strings.Contains(title, term) {
			match = true
		}
		if match {
			hits = append(hits, sr)
		}
	}
	for i, j := 0, len(hits)-1; i < j; i, j = i+1, j-1 { // newest first
		hits[i], hits[j] = hits[j], hits[i]
	}
	pages := (len(hits) + size - 1) / size
	from := min((page-1)*size, len(hits))
	to := min(from+size, len(hits))
	out := []any{}
	for _, sr := range hits[from:to] {
		out = append(out, sr.body)
	}
	return map[string]any{"signature_requests": out,
		"list_info": map[string]any{"num_pages": pages, "num_results": len(hits), "page": page, "page_size": size}}
}
