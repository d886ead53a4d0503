package dropboxsignfake_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider/dropboxsign/dropboxsignfake"
	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

// specKeys are SignatureRequestResponse's keys (PROVIDER-APIS.md 2.2).
var specKeys = strings.Fields(`test_mode signature_request_id requester_email_address title original_title subject message
	metadata created_at expires_at is_complete is_declined has_error files_url signing_url details_url cc_email_addresses
	signing_redirect_url final_copy_uri template_ids custom_fields attachments response_data signatures bulk_send_job_id
	signer_experience`)

// multipartSend builds a multipart/form-data send: bracket-named fields
// (or JSON-encoded signers and metadata with asJSON) and files[N].
func multipartSend(t *testing.T, asJSON bool) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	field := func(k, v string) {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	field("title", "Lease")
	field("subject", "Sign the lease")
	field("message", "Thanks")
	field("test_mode", "1")
	field("expires_at", fmt.Sprint(time.Now().Add(48*time.Hour).Unix()))
	if asJSON {
		field("signers", `[{"name":"Ann","email_address":"ann@example.com","order":0},{"name":"Bob","email_address":"bob@example.com","order":1}]`)
		field("metadata", `{"esignflow_request_id":"mp-1","custom_id":1234}`)
	} else {
		field("signers[1][name]", "Bob")
		field("signers[1][email_address]", "bob@example.com")
		field("signers[1][order]", "1")
		field("signers[0][name]", "Ann")
		field("signers[0][email_address]", "ann@example.com")
		field("signers[0][order]", "0")
		field("metadata[esignflow_request_id]", "mp-1")
		field("metadata[custom_id]", "1234")
	}
	for i, name := range []string{"lease.pdf", "annex.pdf"} {
		fw, err := mw.CreateFormFile(fmt.Sprintf("files[%d]", i), name)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write([]byte("%PDF-1.7 " + name))
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), buf.Bytes()
}

// TestSendShapes sends in each encoding the API takes and decodes the
// answer into the spec's SignatureRequestResponse.
func TestSendShapes(t *testing.T) {
	h := start(t, dropboxsignfake.Config{}, sim.Config{})
	jsonBody, _ := json.Marshal(map[string]any{
		"title": "Lease", "subject": "Sign the lease", "message": "Thanks", "test_mode": true,
		"expires_at": time.Now().Add(48 * time.Hour).Unix(), "file_urls": []string{"https://docs.example.com/lease.pdf", "https://docs.example.com/annex.pdf"},
		"signers":  []any{map[string]any{"name": "Ann", "email_address": "ann@example.com", "order": 0}, map[string]any{"name": "Bob", "email_address": "bob@example.com", "order": 1}},
		"metadata": map[string]any{"esignflow_request_id": "mp-1", "custom_id": 1234},
	})
	form := url.Values{"title": {"Lease"}, "subject": {"Sign the lease"}, "message": {"Thanks"}, "test_mode": {"true"},
		"expires_at":   {fmt.Sprint(time.Now().Add(48 * time.Hour).Unix())},
		"file_urls[0]": {"https://docs.example.com/lease.pdf"}, "file_urls[1]": {"https://docs.example.com/annex.pdf"},
		"signers[0][name]": {"Ann"}, "signers[0][email_address]": {"ann@example.com"}, "signers[0][order]": {"0"},
		"signers[1][name]": {"Bob"}, "signers[1][email_address]": {"bob@example.com"}, "signers[1][order]": {"1"},
		"metadata[esignflow_request_id]": {"mp-1"}, "metadata[custom_id]": {"1234"}}
	mpType, mpBody := multipartSend(t, false)
	mpJSONType, mpJSONBody := multipartSend(t, true)
	cases := []struct {
		name, contentType string
		body              []byte
		docs              []string
	}{
		{"json with file_urls", "application/json", jsonBody, []string{"lease.pdf", "annex.pdf"}},
		{"urlencoded with file_urls[N]", "application/x-www-form-urlencoded", []byte(form.Encode()), []string{"lease.pdf", "annex.pdf"}},
		{"multipart with files[N] and bracket fields", mpType, mpBody, []string{"lease.pdf", "annex.pdf"}},
		{"multipart with JSON-encoded signers and metadata", mpJSONType, mpJSONBody, []string{"lease.pdf", "annex.pdf"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := time.Now().Unix()
			r := h.do("POST", "/v3/signature_request/send", c.contentType, c.body, nil)
			if r.code != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
				t.Fatalf("send: %d %s", r.code, r.body)
			}
			var raw map[string]map[string]any
			r.decode(t, &raw)
			for _, k := range specKeys {
				if _, ok := raw["signature_request"][k]; !ok {
					t.Errorf("signature_request lacks %q", k)
				}
			}
			var out struct {
				SR signatureRequest `json:"signature_request"`
			}
			r.decode(t, &out)
			sr := out.SR
			if !isHex(sr.ID, 40) || sr.Title != "Lease" || sr.Subject != "Sign the lease" || sr.Message == nil || *sr.Message != "Thanks" ||
				!sr.TestMode || sr.IsComplete || sr.IsDeclined || sr.HasError || sr.ExpiresAt == nil || *sr.ExpiresAt < before+47*3600 ||
				sr.CreatedAt < before || sr.CreatedAt > time.Now().Unix() || sr.RequesterEmailAddress != "sender@example.com" ||
				sr.FilesURL != h.sim.URL()+"/v3/signature_request/files/"+sr.ID {
				t.Fatalf("signature request %+v", sr)
			}
			if sr.Metadata["custom_id"] != "1234" || sr.Metadata["esignflow_request_id"] != "mp-1" || len(sr.Metadata) != 2 {
				t.Fatalf("metadata %v: values come back as strings", sr.Metadata)
			}
			if len(sr.Signatures) != 2 {
				t.Fatalf("signatures %+v", sr.Signatures)
			}
			for i, s := range sr.Signatures {
				if !isHex(s.ID, 32) || s.Order == nil || *s.Order != i || s.StatusCode != "awaiting_signature" || s.SignedAt != nil ||
					s.Email != []string{"ann@example.com", "bob@example.com"}[i] {
					t.Fatalf("signature %d: %+v", i, s)
				}
			}
			e, ok := h.sim.Envelope(sr.ID)
			if !ok || e.Status != "sent" || len(e.Documents) != len(c.docs) {
				t.Fatalf("engine: %+v", e)
			}
			for i, d := range e.Documents {
				if d.Name != c.docs[i] {
					t.Fatalf("documents %+v, want %v", e.Documents, c.docs)
				}
			}
			// Ordered signers: only the first has it.
			if e.Recipients[0].Status != "sent" || e.Recipients[1].Status != "created" {
				t.Fatalf("routing: %+v", e.Recipients)
			}
			got := h.get("/v3/signature_request/" + sr.ID)
			var again struct {
				SR signatureRequest `json:"signature_request"`
			}
			got.decode(t, &again)
			if got.code != 200 || again.SR.ID != sr.ID || again.SR.Metadata["custom_id"] != "1234" {
				t.Fatalf("get: %d %s", got.code, got.body)
			}
		})
	}
}

// TestSendRefusals: what Dropbox Sign refuses is refused 400 bad_request
// naming the field, and creates nothing.
func TestSendRefusals(t *testing.T) {
	h := start(t, dropboxsignfake.Config{}, sim.Config{})
	tooMany := map[string]any{}
	for i := range 11 {
		tooMany[fmt.Sprint("k", i)] = "v"
	}
	cases := []struct {
		name string
		edit func(m map[string]any)
		path string
	}{
		{"no files", func(m map[string]any) { delete(m, "file_urls") }, "files"},
		{"files in JSON", func(m map[string]any) { m["files"] = []string{"x"} }, "files"},
		{"no signers", func(m map[string]any) { delete(m, "signers") }, "signers"},
		{"signer without email", func(m map[string]any) { m["signers"] = []any{map[string]any{"name": "A"}} }, "signers[0][email_address]"},
		{"bad email", func(m map[string]any) {
			m["signers"] = []any{map[string]any{"name": "A", "email_address": "not-an-address"}}
		}, "signers[0][email_address]"},
		{"signer without name", func(m map[string]any) { m["signers"] = []any{map[string]any{"email_address": "a@example.com"}} }, "signers[0][name]"},
		{"negative order", func(m map[string]any) {
			m["signers"] = []any{map[string]any{"name": "A", "email_address": "a@example.com", "order": -1}}
		}, "signers[0][order]"},
		{"title too long", func(m map[string]any) { m["title"] = strings.Repeat("t", 256) }, "title"},
		{"message too long", func(m map[string]any) { m["message"] = strings.Repeat("m", 5001) }, "message"},
		{"eleven metadata keys", func(m map[string]any) { m["metadata"] = tooMany }, "metadata"},
		{"metadata key too long", func(m map[string]any) { m["metadata"] = map[string]any{strings.Repeat("k", 41): "v"} }, "metadata"},
		{"metadata value too long", func(m map[string]any) { m["metadata"] = map[string]any{"k": strings.Repeat("v", 1001)} }, "metadata[k]"},
		{"expired already", func(m map[string]any) { m["expires_at"] = time.Now().Add(-time.Minute).Unix() }, "expires_at"},
		{"file url not http", func(m map[string]any) { m["file_urls"] = []string{"ftp://x/y.pdf"} }, "file_urls[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := request("bad", 1)
			c.edit(req)
			r := h.sendJSON(req, "")
			e := r.apiError(t)
			if r.code != http.StatusBadRequest || e.Name != "bad_request" || e.Path != c.path || e.Msg == "" {
				t.Fatalf("got %d %s, want 400 bad_request at %s", r.code, r.body, c.path)
			}
		})
	}
	if r := h.do("POST", "/v3/signature_request/send", "application/json", []byte("{"), nil); r.code != 400 || r.errorName(t) != "bad_request" {
		t.Fatalf("bad JSON: %d %s", r.code, r.body)
	}
	if tr := h.sim.Truth(); len(tr) != 0 {
		t.Fatalf("refusals created %v", tr)
	}
}

// TestAuthRefused: only HTTP Basic with the API key as the user name gets
// in; a refusal is 401 unauthorized with the rate headers, and is not
// counted against the limit.
func TestAuthRefused(t *testing.T) {
	h := start(t, dropboxsignfake.Config{StandardLimit: 5}, sim.Config{})
	cases := []struct {
		name string
		set  func(r *http.Request)
	}{
		{"no credentials", func(*http.Request) {}},
		{"another key", func(r *http.Request) { r.SetBasicAuth("not-the-key", "") }},
		{"the key as password", func(r *http.Request) { r.SetBasicAuth("", apiKey) }},
		{"a bearer token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+apiKey) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", h.sim.URL()+"/v3/account", nil)
			c.set(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body bytes.Buffer
			_, _ = body.ReadFrom(resp.Body)
			if resp.StatusCode != 401 || strings.TrimSpace(body.String()) != `{"error":{"error_msg":"Unauthorized api key","error_name":"unauthorized"}}` ||
				resp.Header.Get("X-RateLimit-Remaining") != "5" {
				t.Fatalf("got %d %s %v", resp.StatusCode, body.String(), resp.Header)
			}
		})
	}
	r := h.get("/v3/account")
	var acct struct {
		Account struct {
			ID    string `json:"account_id"`
			Email string `json:"email_address"`
		} `json:"account"`
	}
	r.decode(t, &acct)
	if r.code != 200 || acct.Account.ID != dropboxsignfake.DefaultAccountID || acct.Account.Email != "sender@example.com" || r.header.Get("X-RateLimit-Remaining") != "4" {
		t.Fatalf("account: %d %s %v", r.code, r.body, r.header)
	}
	if st := h.d.Stats(); st.Unauthorized != int64(len(cases)) {
		t.Fatalf("stats %+v", st)
	}
}

// TestIdempotencyKey: a key replays its first signature request within
// the window, refuses 409 while that one is acting, and must be 1 to 255
// characters; no key, no idempotency.
func TestIdempotencyKey(t *testing.T) {
	h := start(t, dropboxsignfake.Config{SendDelay: time.Hour}, sim.Config{})
	// In flight: the first send is held by SendDelay until its client
	// gives up; a second with the key meanwhile is refused.
	ctx, cancel := context.WithCancel(context.Background())
	raw, _ := json.Marshal(request("k1", 1))
	first := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", h.sim.URL()+"/v3/signature_request/send", bytes.NewReader(raw))
		req.SetBasicAuth(apiKey, "")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "key-1")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		first <- err
	}()
	providertest.WaitFor(t, 10*time.Second, "the first send acting", func() bool { return h.d.Stats().Sending == 1 })
	// Without the in-flight check this one would wait out SendDelay too:
	// give up well before.
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	r := h.doCtx(rctx, "POST", "/v3/signature_request/send", "application/json", raw, http.Header{"Idempotency-Key": {"key-1"}}, apiKey)
	if r.code != http.StatusConflict || strings.TrimSpace(string(r.body)) != `{"error":{"error_msg":"An identical request is already being processed.","error_name":"conflict"}}` {
		t.Fatalf("while in flight: %d %s", r.code, r.body)
	}
	cancel() // the first send's client gives up; the send still acts
	<-first
	providertest.WaitFor(t, 10*time.Second, "the first send done", func() bool { return h.d.Stats().Sending == 0 })
	tr := h.sim.Truth()
	if len(tr) != 1 || tr[0].RequestID != "k1" {
		t.Fatalf("truth after the abandoned send: %+v", tr)
	}
	// Replays: the same key, even with another body, is the first request.
	for _, body := range []map[string]any{request("k1", 1), request("other", 2)} {
		sr := h.send(body, "key-1")
		if sr.ID != tr[0].ID || sr.Metadata["esignflow_request_id"] != "k1" {
			t.Fatalf("replay answered %+v, want %s", sr, tr[0].ID)
		}
	}
	if st := h.d.Stats(); st.Replays != 2 || st.InFlight != 1 {
		t.Fatalf("stats %+v", st)
	}

	h2 := start(t, dropboxsignfake.Config{}, sim.Config{})
	cases := []struct {
		name   string
		key    []string // nil: no header
		code   int
		newOne bool
	}{
		{"no header creates", nil, 200, true},
		{"no header creates again", nil, 200, true},
		{"a new key creates", []string{"k-a"}, 200, true},
		{"the same key replays", []string{"k-a"}, 200, false},
		{"255 characters", []string{strings.Repeat("x", 255)}, 200, true},
		{"256 characters", []string{strings.Repeat("x", 256)}, 400, false},
		{"empty", []string{""}, 400, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(h2.sim.Truth())
			raw, _ := json.Marshal(request("r", 1))
			var hd http.Header
			if c.key != nil {
				hd = http.Header{"Idempotency-Key": c.key}
			}
			r := h2.do("POST", "/v3/signature_request/send", "application/json", raw, hd)
			if r.code != c.code || (c.code == 400 && r.errorName(t) != "bad_request") {
				t.Fatalf("got %d %s, want %d", r.code, r.body, c.code)
			}
			if after := len(h2.sim.Truth()); (after == before+1) != c.newOne || after > before+1 {
				t.Fatalf("%d signature requests before, %d after", before, after)
			}
		})
	}

	// Past the window, the key is free again.
	h3 := start(t, dropboxsignfake.Config{IdempotencyWindow: time.Millisecond}, sim.Config{})
	a := h3.send(request("w", 1), "k-w")
	providertest.WaitFor(t, time.Second, "the window to pass", func() bool { e, _ := h3.sim.Envelope(a.ID); return time.Since(e.CreatedAt) > 2*time.Millisecond })
	if b := h3.send(request("w", 1), "k-w"); b.ID == a.ID {
		t.Fatalf("a key past its window replayed %s", a.ID)
	}
}

// TestTimeoutAfterActingReplays: a send that acted and never answered
// (the timeout fault) is found by its Idempotency-Key on the retry: one
// signature request.
func TestTimeoutAfterActingReplays(t *testing.T) {
	h := start(t, dropboxsignfake.Config{}, sim.Config{Faults: sim.Faults{APITimeout: 1}})
	raw, _ := json.Marshal(request("t1", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", h.sim.URL()+"/v3/signature_request/send", bytes.NewReader(raw))
	req.SetBasicAuth(apiKey, "")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "t1")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the send answered, want a timeout")
	}
	if err := h.sim.SetFaults(sim.Faults{}); err != nil {
		t.Fatal(err)
	}
	sr := h.send(request("t1", 1), "t1")
	tr := h.sim.Truth()
	if len(tr) != 1 || tr[0].ID != sr.ID || h.sim.Stats().APITimeouts != 1 {
		t.Fatalf("truth %+v, retry %s, stats %+v", tr, sr.ID, h.sim.Stats())
	}
}

// TestInjectedUnavailableActsNot: the API-error fault answers 503 (with
// the rate headers and an error body) before acting.
func TestInjectedUnavailableActsNot(t *testing.T) {
	h := start(t, dropboxsignfake.Config{}, sim.Config{Faults: sim.Faults{APIError: 1}})
	r := h.sendJSON(request("u1", 1), "u1")
	if r.code != http.StatusServiceUnavailable || r.errorName(t) != "maintenance" || r.header.Get("X-RateLimit-Limit") != "25" {
		t.Fatalf("got %d %s %v", r.code, r.body, r.header)
	}
	if tr := h.sim.Truth(); len(tr) != 0 {
		t.Fatalf("a 503 created %v", tr)
	}
}

// listIDs lists with query (and more parameters) and returns the request
// ids found, in order, and the list_info.
func (h *harness) listIDs(t *testing.T, params url.Values) ([]string, map[string]int, reply) {
	t.Helper()
	r := h.get("/v3/signature_request/list?" + params.Encode())
	if r.code != 200 {
		return nil, nil, r
	}
	var out struct {
		SignatureRequests []signatureRequest `json:"signature_requests"`
		ListInfo          map[string]int     `json:"list_info"`
	}
	r.decode(t, &out)
	ids := []string{}
	for _, sr := range out.SignatureRequests {
		ids = append(ids, sr.Metadata["esignflow_request_id"])
	}
	return ids, out.ListInfo, r
}

// TestListSearch: the list endpoint's query finds requests by metadata
// (fielded or not), title and flags, pages, and refuses what it cannot
// search.
func TestListSearch(t *testing.T) {
	h := start(t, dropboxsignfake.Config{}, sim.Config{})
	for _, id := range []string{"po-1", "po-10", "po-2"} {
		h.send(request(id, 1), "")
	}
	canceled := h.send(request("po-3", 1), "")
	if r := h.do("POST", "/v3/signature_request/cancel/"+canceled.ID, "", nil, nil); r.code != 200 {
		t.Fatalf("cancel: %d %s", r.code, r.body)
	}
	cases := []struct {
		query string
		want  []string // newest first
	}{
		{"metadata:po-1", []string{"po-1"}},
		{"po-1", []string{"po-1"}},
		{"metadata:PO-1", []string{"po-1"}},
		{"metadata:po-1*", []string{"po-10", "po-1"}},
		{"metadata:po-1 OR metadata:po-2", []string{"po-2", "po-1"}},
		{"metadata:po-1 AND complete:false", []string{"po-1"}},
		{"metadata:po-1 complete:true", []string{}},
		{"metadata:acme", []string{"po-2", "po-10", "po-1"}},
		{"title:NDA AND metadata:po-10", []string{"po-10"}},
		{`subject:"sign po-2"`, []string{"po-2"}},
		{"to:s1@example.com AND from:me AND test_mode:false AND declined:false", []string{"po-2", "po-10", "po-1"}},
		{"metadata:po-3", []string{}}, // canceled
		{"metadata:po-4", []string{}},
		{"", []string{"po-2", "po-10", "po-1"}},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			ids, info, r := h.listIDs(t, url.Values{"query": {c.query}})
			if r.code != 200 || fmt.Sprint(ids) != fmt.Sprint(c.want) || info["num_results"] != len(c.want) || info["page"] != 1 || info["page_size"] != 20 {
				t.Fatalf("got %v %v (%d %s), want %v", ids, info, r.code, r.body, c.want)
			}
		})
	}
	ids, info, _ := h.listIDs(t, url.Values{"query": {"metadata:acme"}, "page": {"2"}, "page_size": {"2"}})
	if fmt.Sprint(ids) != "[po-1]" || info["num_pages"] != 2 || info["num_results"] != 3 || info["page"] != 2 {
		t.Fatalf("page 2: %v %v", ids, info)
	}
	for _, bad := range []url.Values{{"page_size": {"0"}}, {"page_size": {"101"}}, {"page": {"0"}}, {"query": {"metadata:*po"}}, {"query": {"created:[2014-01-01+TO+2014-12-31]"}}} {
		if _, _, r := h.listIDs(t, bad); r.code != 400 || r.errorName(t) != "bad_request" {
			t.Fatalf("%v: %d %s", bad, r.code, r.body)
		}
	}
}

// TestListSearchIndexAgreesWithScan: a query answered from the search
// index (one exact term, bare or of a text field) finds what scanning
// every request finds (the same query ORed with a term that matches
// nothing, which the index does not answer), for requests sent before the
// index was filled from the engine and after.
func TestListSearchIndexAgreesWithScan(t *testing.T) {
	h := start(t, dropboxsignfake.Config{}, sim.Config{})
	h.send(request("ix-1", 1), "")
	h.send(request("ix-2", 2), "")
	h.listIDs(t, url.Values{"query": {"metadata:ix-1"}}) // fills the index from the engine
	h.send(request("ix-3", 3), "")
	for _, q := range []string{
		"ix-2", "IX-2", "acme", "nda", "NDA ix-3", "hi", "s2@example.com", "signer", "3", "ix-3.pdf", "nothing",
		"metadata:ix-3", "metadata:acme", "title:nda", "title:ix-1", "subject:please", "message:hi",
		"to:s3@example.com", "to:signer", "filename:ix-2.pdf", "title:acme",
		"nda AND to:s2@example.com", "ix-1 complete:false",
	} {
		t.Run(q, func(t *testing.T) {
			indexed, _, r := h.listIDs(t, url.Values{"query": {q}})
			if r.code != 200 {
				t.Fatalf("%d %s", r.code, r.body)
			}
			scanned, _, r := h.listIDs(t, url.Values{"query": {q + " OR metadata:no-such-value"}})
			if r.code != 200 {
				t.Fatalf("%d %s", r.code, r.body)
			}
			if fmt.Sprint(indexed) != fmt.Sprint(scanned) {
				t.Fatalf("from the index %v, scanning %v", indexed, scanned)
			}
		})
	}
	if ids, _, _ := h.listIDs(t, url.Values{"query": {"s3@example.com"}}); fmt.Sprint(ids) != "[ix-3]" {
		t.Fatalf("a signer's address found %v, want [ix-3]", ids)
	}
}

// TestListLagsCreation: a new request is out of the search index for
// SearchLag, then in it.
func TestListLagsCreation(t *testing.T) {
	for _, lag := range []time.Duration{time.Hour, 100 * time.Millisecond} {
		t.Run(lag.String(), func(t *testing.T) {
			h := start(t, dropboxsignfake.Config{SearchLag: lag}, sim.Config{})
			sent := time.Now()
			h.send(request("lag-1", 1), "")
			q := url.Values{"query": {"metadata:lag-1"}}
			if ids, _, _ := h.listIDs(t, q); len(ids) != 0 && time.Since(sent) < lag {
				t.Fatalf("found %v at once, with a lag of %s", ids, lag)
			}
			if lag == time.Hour {
				return
			}
			providertest.WaitFor(t, 10*time.Second, "the request indexed", func() bool { ids, _, _ := h.listIDs(t, q); return len(ids) == 1 })
			if since := time.Since(sent); since < lag {
				t.Fatalf("indexed %s after creation, before its lag %s", since, lag)
			}
		})
	}
}

// TestFiles: a completed request's files answer 409 conflict while they
// are being prepared, then the signed PDF or a ZIP once the
// signature_request_downloadable callback says they are ready; unknown
// ids are 404, a canceled request 410.
func TestFiles(t *testing.T) {
	h := start(t, dropboxsignfake.Config{FilesDelay: 3 * time.Second}, sim.Config{Step: time.Millisecond})
	sr := h.send(request("f1", 2), "")
	providertest.WaitFor(t, 20*time.Second, "completion", func() bool { e, _ := h.sim.Envelope(sr.ID); return e.Status == "completed" })
	r := h.get("/v3/signature_request/files/" + sr.ID)
	if r.code != http.StatusConflict || r.errorName(t) != "conflict" || r.header.Get("X-RateLimit-Limit") != "25" {
		t.Fatalf("files while preparing: %d %s %v", r.code, r.body, r.header)
	}
	providertest.WaitFor(t, 20*time.Second, "signature_request_downloadable", func() bool {
		cbs, _ := h.hook.snapshot()
		for _, c := range cbs {
			if c.cb.Event.Type == "signature_request_downloadable" && c.cb.SignatureRequest.ID == sr.ID {
				return true
			}
		}
		return false
	})
	r = h.get("/v3/signature_request/files/" + sr.ID)
	if r.code != 200 || r.header.Get("Content-Type") != "application/pdf" || !bytes.HasPrefix(r.body, []byte("%PDF")) ||
		r.header.Get("Digest") != "" || !strings.Contains(r.header.Get("Content-Disposition"), `filename="NDA f1.pdf"`) {
		t.Fatalf("files once ready: %d %v %.60q", r.code, r.header, r.body)
	}
	z := h.get("/v3/signature_request/files/" + sr.ID + "?file_type=zip")
	zr, err := zip.NewReader(bytes.NewReader(z.body), int64(len(z.body)))
	if z.code != 200 || z.header.Get("Content-Type") != "application/zip" || err != nil {
		t.Fatalf("zip: %d %v %v", z.code, z.header, err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	sort.Strings(names)
	if fmt.Sprint(names) != "[NDA f1.pdf audit-trail.pdf]" {
		t.Fatalf("zip holds %v", names)
	}
	if st := h.d.Stats(); st.FilesNotReady != 1 {
		t.Fatalf("stats %+v", st)
	}

	// In progress: the files as they are; canceled: gone; unknown: 404.
	h2 := start(t, dropboxsignfake.Config{FilesDelay: time.Hour}, sim.Config{})
	open := h2.send(request("f2", 1), "")
	if r := h2.get("/v3/signature_request/files/" + open.ID); r.code != 200 || !bytes.HasPrefix(r.body, []byte("%PDF")) {
		t.Fatalf("files in progress: %d %.60q", r.code, r.body)
	}
	if r := h2.get("/v3/signature_request/files/" + open.ID + "?file_type=docx"); r.code != 400 || r.errorName(t) != "bad_request" {
		t.Fatalf("bad file_type: %d %s", r.code, r.body)
	}
	if r := h2.do("POST", "/v3/signature_request/cancel/"+open.ID, "", nil, nil); r.code != 200 || len(r.body) != 0 {
		t.Fatalf("cancel: %d %q", r.code, r.body)
	}
	for _, p := range []string{"/v3/signature_request/files/", "/v3/signature_request/"} {
		if r := h2.get(p + open.ID); r.code != http.StatusGone || r.errorName(t) != "deleted" {
			t.Fatalf("%s of a canceled request: %d %s", p, r.code, r.body)
		}
		if r := h2.get(p + strings.Repeat("0", 40)); r.code != 404 || r.errorName(t) != "not_found" {
			t.Fatalf("%s of an unknown id: %d %s", p, r.code, r.body)
		}
	}
}

// TestCancel: cancel answers an empty 200 and the cancelation comes as a
// signature_request_canceled callback; a canceled request cannot be
// canceled again (410), a completed one not at all (400).
func TestCancel(t *testing.T) {
	h := start(t, dropboxsignfake.Config{}, sim.Config{Step: time.Millisecond})
	done := h.send(request("c-done", 1), "")
	providertest.WaitFor(t, 20*time.Second, "completion", func() bool { e, _ := h.sim.Envelope(done.ID); return e.Status == "completed" })
	if r := h.do("POST", "/v3/signature_request/cancel/"+done.ID, "", nil, nil); r.code != 400 || r.errorName(t) != "signature_request_cancel_failed" {
		t.Fatalf("cancel completed: %d %s", r.code, r.body)
	}
	if r := h.do("POST", "/v3/signature_request/cancel/"+strings.Repeat("a", 40), "", nil, nil); r.code != 404 {
		t.Fatalf("cancel unknown: %d %s", r.code, r.body)
	}

	h2 := start(t, dropboxsignfake.Config{}, sim.Config{})
	sr := h2.send(request("c-1", 1), "")
	if r := h2.do("POST", "/v3/signature_request/cancel/"+sr.ID, "", nil, nil); r.code != 200 || len(r.body) != 0 || r.header.Get("X-RateLimit-Remaining") == "" {
		t.Fatalf("cancel: %d %q %v", r.code, r.body, r.header)
	}
	if r := h2.do("POST", "/v3/signature_request/cancel/"+sr.ID, "", nil, nil); r.code != http.StatusGone {
		t.Fatalf("cancel twice: %d %s", r.code, r.body)
	}
	providertest.WaitFor(t, 10*time.Second, "signature_request_canceled", func() bool {
		cbs, _ := h2.hook.snapshot()
		for _, c := range cbs {
			if c.cb.Event.Type == "signature_request_canceled" && c.cb.SignatureRequest.ID == sr.ID {
				return len(c.events) == 1 && *c.events[0].Status == schemas.StatusVoided && *c.events[0].RequestID == "c-1"
			}
		}
		return false
	})
	if tr := h2.sim.Truth(); len(tr) != 1 || tr[0].Status != schemas.StatusVoided {
		t.Fatalf("truth %+v", tr)
	}
}

// TestTruthEndpoint: the engine's truth is served beside the dialect's
// API, without the API key, and names each request's request id.
func TestTruthEndpoint(t *testing.T) {
	h := start(t, dropboxsignfake.Config{}, sim.Config{})
	sr := h.send(request("truth-1", 1), "")
	r := h.doCtx(context.Background(), "GET", "/v1/_truth", "", nil, nil, "")
	var tr []sim.Truth
	r.decode(t, &tr)
	if r.code != 200 || len(tr) != 1 || tr[0].ID != sr.ID || tr[0].RequestID != "truth-1" || tr[0].Status != schemas.StatusSent {
		t.Fatalf("truth: %d %s", r.code, r.body)
	}
	if r := h.doCtx(context.Background(), "GET", "/v1/_stats", "", nil, nil, ""); r.code != 200 {
		t.Fatalf("stats: %d", r.code)
	}
}

// TestCorruptDownload: the engine's corrupt-download fault flips a byte of
// the files.
func TestCorruptDownload(t *testing.T) {
	h := start(t, dropboxsignfake.Config{}, sim.Config{})
	sr := h.send(request("c1", 1), "")
	clean := h.get("/v3/signature_request/files/" + sr.ID)
	if err := h.sim.SetFaults(sim.Faults{CorruptDownload: 1}); err != nil {
		t.Fatal(err)
	}
	bad := h.get("/v3/signature_request/files/" + sr.ID)
	if clean.code != 200 || bad.code != 200 || len(bad.body) != len(clean.body) || bytes.Equal(bad.body, clean.body) || h.sim.Stats().CorruptedDownloads != 1 {
		t.Fatalf("the corrupt-download fault did not flip a byte: %d %d", clean.code, bad.code)
	}
}
