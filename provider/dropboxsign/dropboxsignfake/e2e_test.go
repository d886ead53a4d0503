package dropboxsignfake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider/dropboxsign/dropboxsignfake"
	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

// run starts s until the test ends (or stop is called) and waits until
// it listens.
func run(t *testing.T, s *sim.Simulator) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	<-s.Ready()
	return stop
}

// TestEndToEnd is a smoke run of sim.New with the dialect, through its
// HTTP API only: a multipart send with a file, the callbacks to the end,
// the request read back complete, its files, and the truth.
func TestEndToEnd(t *testing.T) {
	d, err := dropboxsignfake.New(dropboxsignfake.Config{APIKey: apiKey, FilesDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hook := &listener{seen: map[string]int{}}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	s, err := sim.New(sim.Config{Addr: "127.0.0.1:0", Dialect: d, WebhookURL: srv.URL, Step: 2 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	call := func(method, path, ctype string, body []byte, key string) (int, []byte) {
		req, _ := http.NewRequest(method, s.URL()+path, bytes.NewReader(body))
		req.SetBasicAuth(apiKey, "")
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range map[string]string{"title": "Order 1042", "subject": "Please sign", "signers[0][name]": "Ann",
		"signers[0][email_address]": "ann@example.com", "signers[0][order]": "0", "signers[1][name]": "Bob",
		"signers[1][email_address]": "bob@example.com", "signers[1][order]": "1",
		"metadata[esignflow_request_id]": "order-1042", "metadata[esignflow_tenant]": "acme"} {
		_ = mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile("files[0]", "order.pdf")
	_, _ = fw.Write([]byte("%PDF-1.7 order 1042"))
	_ = mw.Close()
	code, body := call("POST", "/v3/signature_request/send", mw.FormDataContentType(), buf.Bytes(), "order-1042")
	var sent struct {
		SR signatureRequest `json:"signature_request"`
	}
	if err := json.Unmarshal(body, &sent); code != 200 || err != nil {
		t.Fatalf("send: %d %s", code, body)
	}
	id := sent.SR.ID
	providertest.WaitFor(t, 20*time.Second, "signature_request_downloadable", func() bool {
		cbs, _ := hook.snapshot()
		for _, c := range cbs {
			if c.cb.Event.Type == "signature_request_downloadable" {
				return true
			}
		}
		return false
	})
	providertest.WaitFor(t, 20*time.Second, "every callback delivered", providertest.Settled(s, 1))
	cbs, bad := hook.snapshot()
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	var types []string
	var last schemas.Status
	for _, c := range cbs {
		types = append(types, c.cb.Event.Type)
		if len(c.events) == 1 && c.events[0].RequestID != nil && *c.events[0].RequestID == "order-1042" && *c.events[0].Status == schemas.StatusCompleted {
			last = schemas.StatusCompleted
		}
	}
	if len(cbs) != 7 || last != schemas.StatusCompleted { // sent, 2 × (viewed, signed), all_signed, downloadable
		t.Fatalf("callbacks %v", types)
	}
	code, body = call("GET", "/v3/signature_request/"+id, "", nil, "")
	var got struct {
		SR signatureRequest `json:"signature_request"`
	}
	if err := json.Unmarshal(body, &got); code != 200 || err != nil || !got.SR.IsComplete || got.SR.Signatures[1].StatusCode != "signed" || got.SR.Signatures[1].SignedAt == nil {
		t.Fatalf("get: %d %s", code, body)
	}
	if code, body = call("GET", "/v3/signature_request/files/"+id+"?file_type=pdf", "", nil, ""); code != 200 || !bytes.HasPrefix(body, []byte("%PDF")) {
		t.Fatalf("files: %d %.40q", code, body)
	}
	if code, body = call("POST", "/v3/signature_request/cancel/"+id, "", nil, ""); code != 400 {
		t.Fatalf("cancel completed: %d %s", code, body)
	}
	code, body = call("GET", "/v3/signature_request/list?"+url.Values{"query": {"metadata:order-1042"}}.Encode(), "", nil, "")
	var list struct {
		ListInfo struct {
			NumResults int `json:"num_results"`
		} `json:"list_info"`
	}
	if err := json.Unmarshal(body, &list); code != 200 || err != nil || list.ListInfo.NumResults != 1 {
		t.Fatalf("list: %d %s", code, body)
	}
	resp, err := http.Get(s.URL() + "/v1/_truth")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr []sim.Truth
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || len(tr) != 1 || tr[0].ID != id || tr[0].Status != schemas.StatusCompleted || tr[0].RequestID != "order-1042" || !tr[0].Final {
		t.Fatalf("truth %+v %v", tr, err)
	}
}

// TestStateSurvivesRestart: a restarted simulator (state file) still
// knows its requests' titles, orders and test mode, replays their
// Idempotency-Keys and finds them by metadata.
func TestStateSurvivesRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state.json")
	d, err := dropboxsignfake.New(dropboxsignfake.Config{APIKey: apiKey})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sim.Config{Addr: "127.0.0.1:0", Dialect: d, StateFile: file, Step: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, s)
	h := &harness{t: t, sim: s, d: d}
	req := request("keep", 2)
	req["test_mode"] = true
	first := h.send(req, "keep-key")
	stop()

	h2 := start(t, dropboxsignfake.Config{}, sim.Config{StateFile: file})
	again := h2.send(request("other", 1), "keep-key")
	if again.ID != first.ID || again.Title != "NDA keep" || !again.TestMode || again.Signatures[1].Order == nil || *again.Signatures[1].Order != 1 ||
		again.Signatures[0].ID != first.Signatures[0].ID {
		t.Fatalf("after restart: %+v, before %+v", again, first)
	}
	ids, _, r := h2.listIDs(t, url.Values{"query": {"metadata:keep"}})
	if r.code != 200 || len(ids) != 1 {
		t.Fatalf("search after restart: %v %d %s", ids, r.code, r.body)
	}
}
