package dropboxsign_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/dropboxsign"
	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/schemas"
)

// The API key the tests' Dropbox Sign accepts; distinctive, so a leak into
// a log or an error is found by a substring search.
const testAPIKey = "b5f0c5e1d7a94c2e8f3a6b9d0c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e"

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func ptrTo[T any](v T) *T { return &v }

func writeKeyFile(t *testing.T, dir, key string) string {
	t.Helper()
	path := filepath.Join(dir, "dropboxsign-api-key")
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newClient returns a Client of s with the test key, fast retries, no
// pacing, and cfg's changes applied.
func newClient(t *testing.T, s *server, tweak func(*dropboxsign.Config)) *dropboxsign.Client {
	t.Helper()
	cfg := dropboxsign.Config{
		APIKeyFile: writeKeyFile(t, t.TempDir(), testAPIKey), BaseURL: s.url(),
		CallTimeout: 2 * time.Second, BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		LookupSettle: 20 * time.Millisecond, StandardPerMinute: -1, HighTierPerMinute: -1, Logger: quiet(),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := dropboxsign.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// byURL is a request whose documents are http(s) URLs.
func byURL(id string) schemas.SigningRequest {
	return schemas.SigningRequest{
		RequestID: id, Tenant: "acme", Subject: "NDA with Acme Co.", Message: "Please sign this NDA.",
		Documents: []schemas.Document{{Name: "nda.pdf", ContentType: "application/pdf", URI: ptrTo("https://docs.example/nda.pdf"), SHA256: ptrTo("00")}},
		Recipients: []schemas.Recipient{
			{ID: "r1", Name: "Jack", Email: "jack@example.com", RoutingOrder: 1},
			{ID: "r2", Name: "Jill", Email: "jill@example.com", RoutingOrder: 2, Auth: schemas.AuthSMS, Phone: ptrTo("+14155550100")},
			{ID: "r3", Name: "Lawyer", Email: "lawyer@example.com", Role: "cc"},
		},
		Metadata: map[string]string{"po": "PO-1042"},
	}
}

// inline is a request whose document is inline bytes.
func inline(id string) schemas.SigningRequest {
	r := byURL(id)
	r.Documents = []schemas.Document{{Name: "contract.pdf", ContentType: "application/pdf", Content: []byte("%PDF-1.4 contract")}}
	return r
}

func TestNewConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  dropboxsign.Config
		want string
	}{
		{"no key file", dropboxsign.Config{}, "APIKeyFile is required"},
		{"bad base URL", dropboxsign.Config{APIKeyFile: "x", BaseURL: "api.hellosign.com/v3"}, "BaseURL"},
		{"page too large", dropboxsign.Config{APIKeyFile: "x", PageSize: 500}, "at most 100"},
		{"missing file", dropboxsign.Config{APIKeyFile: filepath.Join(t.TempDir(), "none")}, "no such file"},
		{"empty file", dropboxsign.Config{APIKeyFile: writeKeyFile(t, t.TempDir(), "  ")}, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dropboxsign.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestBasicAuthAndCheck: every call is HTTP Basic with the key as the user
// and an empty password; Check fails with a refused key, and the error
// says so without the key.
func TestBasicAuthAndCheck(t *testing.T) {
	s := newServer(t, testAPIKey)
	c := newClient(t, s, nil)
	if err := c.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := s.allCalls()
	if len(calls) != 1 || calls[0].path != "/v3/account" || calls[0].user != testAPIKey || calls[0].pass != "" {
		t.Fatalf("calls %+v, want GET /v3/account as the key with no password", calls)
	}
	s.setKeys("another-key")
	err := c.Check(context.Background())
	if !provider.IsPermanent(err) || !strings.Contains(err.Error(), "API key is refused") || strings.Contains(err.Error(), testAPIKey) {
		t.Fatalf("wrong key: %v", err)
	}
}

// TestKeyRotation: a rewritten key file is used from the next call on,
// without Reload; Account follows it and never shows the key.
func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	path := writeKeyFile(t, dir, "key-one")
	s := newServer(t, "key-one")
	c := newClient(t, s, func(cfg *dropboxsign.Config) { cfg.APIKeyFile = path })
	ctx := context.Background()
	if err := c.Check(ctx); err != nil {
		t.Fatal(err)
	}
	acct := c.Account()
	if !strings.HasPrefix(acct, "dropboxsign:") || len(acct) != len("dropboxsign:")+12 || strings.Contains(acct, "key-one") {
		t.Fatalf("Account() = %q", acct)
	}
	s.setKeys("key-two-rotated")
	if err := os.WriteFile(path, []byte("  key-two-rotated \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !c.Changed() {
		t.Fatal("Changed() false after the file was rewritten")
	}
	if err := c.Check(ctx); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	calls := s.allCalls()
	if last := calls[len(calls)-1]; last.user != "key-two-rotated" {
		t.Fatalf("last call as %q, want the rotated key, trimmed", last.user)
	}
	if c.Account() == acct {
		t.Fatal("Account() did not follow the rotated key")
	}
	// An emptied file keeps the key in use.
	if err := os.WriteFile(path, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(); err == nil {
		t.Fatal("Reload of an empty file succeeded")
	}
	if err := c.Check(ctx); err != nil {
		t.Fatalf("after an emptied file: %v", err)
	}
}

// TestSecretsNotLogged: with debug logging, through retries, refusals and
// rate limits, the key is in no log line and no error.
func TestSecretsNotLogged(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := newServer(t, testAPIKey)
	c := newClient(t, s, func(cfg *dropboxsign.Config) { cfg.Logger = log; cfg.CallTimeout = 100 * time.Millisecond })
	ctx := context.Background()
	var errs []error
	s.fault("send", fault503After, faultTimeout, faultDrop)
	s.fault("lookup", fault503)
	_, err := c.Create(ctx, "req-log", byURL("req-log"))
	errs = append(errs, err)
	s.fault("get", faultRateLimit)
	_, err = c.Get(ctx, "0123abcd")
	errs = append(errs, err)
	_, err = c.Get(ctx, "0123abcd")
	errs = append(errs, err)
	s.setKeys("other")
	errs = append(errs, c.Check(ctx))
	_, err = c.Create(ctx, "req-log2", byURL("req-log2"))
	errs = append(errs, err)
	for _, err := range errs {
		if err != nil && strings.Contains(err.Error(), testAPIKey) {
			t.Errorf("error holds the key: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(buf.String(), testAPIKey) {
		t.Fatalf("the log holds the key:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "may have reached it") {
		t.Fatalf("the log shows no retry, so the test proved nothing:\n%s", buf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestCreateJSONBody: documents by URL go as JSON with file_urls; title,
// subject, message, signers in routing order with order, SMS
// authentication, cc, metadata with the request id, tenant and create key,
// test_mode, expires_at, and the Idempotency-Key header.
func TestCreateJSONBody(t *testing.T) {
	s := newServer(t, testAPIKey)
	c := newClient(t, s, func(cfg *dropboxsign.Config) { cfg.TestMode = true })
	req := byURL("req-json")
	// Listed out of routing order: Jill (2) first.
	req.Recipients[0], req.Recipients[1] = req.Recipients[1], req.Recipients[0]
	exp := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	req.ExpiresAt = &exp
	env, err := c.Create(context.Background(), req.RequestID, req)
	if err != nil {
		t.Fatal(err)
	}
	sends := s.allSends()
	if len(sends) != 1 {
		t.Fatalf("%d sends, want 1", len(sends))
	}
	got := sends[0]
	if !strings.HasPrefix(got.ContentType, "application/json") || got.JSON == nil {
		t.Fatalf("content type %q, want JSON", got.ContentType)
	}
	ck := dropboxsign.CreateKey("acme", "req-json")
	if got.IdemKey != ck {
		t.Fatalf("Idempotency-Key %q, want %q", got.IdemKey, ck)
	}
	b, _ := json.Marshal(got.JSON)
	var body struct {
		Title, Subject, Message string
		Signers                 []struct {
			Name           string `json:"name"`
			Email          string `json:"email_address"`
			Order          *int   `json:"order"`
			SMSPhoneNumber string `json:"sms_phone_number"`
			SMSType        string `json:"sms_phone_number_type"`
		}
		CC        []string          `json:"cc_email_addresses"`
		FileURLs  []string          `json:"file_urls"`
		Files     []string          `json:"files"`
		Metadata  map[string]string `json:"metadata"`
		TestMode  bool              `json:"test_mode"`
		ExpiresAt int64             `json:"expires_at"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatal(err)
	}
	if body.Title != req.Subject || body.Subject != req.Subject || body.Message != req.Message {
		t.Errorf("title/subject/message %q %q %q", body.Title, body.Subject, body.Message)
	}
	if len(body.Signers) != 2 || body.Signers[0].Email != "jack@example.com" || *body.Signers[0].Order != 0 ||
		body.Signers[1].Email != "jill@example.com" || *body.Signers[1].Order != 1 {
		t.Errorf("signers %s, want Jack order 0 then Jill order 1", b)
	}
	if body.Signers[1].SMSPhoneNumber != "+14155550100" || body.Signers[1].SMSType != "authentication" || body.Signers[0].SMSPhoneNumber != "" {
		t.Errorf("SMS authentication: %+v", body.Signers)
	}
	if len(body.CC) != 1 || body.CC[0] != "lawyer@example.com" {
		t.Errorf("cc %v", body.CC)
	}
	if len(body.FileURLs) != 1 || body.FileURLs[0] != "https://docs.example/nda.pdf" || body.Files != nil {
		t.Errorf("file_urls %v files %v", body.FileURLs, body.Files)
	}
	want := map[string]string{provider.RequestIDKey: "req-json", provider.TenantKey: "acme", dropboxsign.CreateKeyField: ck, "po": "PO-1042"}
	if len(body.Metadata) != len(want) {
		t.Errorf("metadata %v, want %v", body.Metadata, want)
	}
	for k, v := range want {
		if body.Metadata[k] != v {
			t.Errorf("metadata %v, want %v", body.Metadata, want)
		}
	}
	if !body.TestMode || body.ExpiresAt != exp.Unix() {
		t.Errorf("test_mode %v expires_at %d, want true %d", body.TestMode, body.ExpiresAt, exp.Unix())
	}
	if env.Status != schemas.StatusSent || env.ID == "" || len(env.Recipients) != 2 || env.Metadata[provider.RequestIDKey] != "req-json" {
		t.Fatalf("envelope %+v", env)
	}
	// The first in order is invited, the second waits its turn.
	if env.Recipients[0].Status != schemas.RecipientSent || env.Recipients[1].Status != schemas.RecipientCreated {
		t.Fatalf("recipients %+v, want SENT then CREATED", env.Recipients)
	}
}

// TestCreateMultipartBody: an inline document goes as multipart with
// files[0] and bracket-named fields.
func TestCreateMultipartBody(t *testing.T) {
	s := newServer(t, testAPIKey)
	c := newClient(t, s, nil)
	req := inline("req-mp")
	req.Recipients[0].RoutingOrder, req.Recipients[1].RoutingOrder = 1, 1 // parallel: no order
	if _, err := c.Create(context.Background(), req.RequestID, req); err != nil {
		t.Fatal(err)
	}
	sends := s.allSends()
	if len(sends) != 1 || !strings.HasPrefix(sends[0].ContentType, "multipart/form-data") {
		t.Fatalf("sends %+v, want one multipart", sends)
	}
	f := sends[0].Fields
	for k, v := range map[string]string{
		"title": req.Subject, "signers[0][name]": "Jack", "signers[0][email_address]": "jack@example.com",
		"signers[1][email_address]": "jill@example.com", "signers[1][sms_phone_number]": "+14155550100",
		"signers[1][sms_phone_number_type]": "authentication", "cc_email_addresses[0]": "lawyer@example.com",
		"metadata[esignflow_request_id]": "req-mp", "metadata[esignflow_tenant]": "acme", "metadata[po]": "PO-1042",
		"metadata[esignflow_create_key]": dropboxsign.CreateKey("acme", "req-mp"), "test_mode": "0",
	} {
		if f[k] != v {
			t.Errorf("field %s = %q, want %q", k, f[k], v)
		}
	}
	if _, ok := f["signers[0][order]"]; ok {
		t.Errorf("signers of one routing order got an order: %v", f)
	}
	if got := string(sends[0].Files["files[0]"]); got != "%PDF-1.4 contract" {
		t.Errorf("files[0] = %q", got)
	}
	if sends[0].IdemKey != dropboxsign.CreateKey("acme", "req-mp") {
		t.Errorf("Idempotency-Key %q", sends[0].IdemKey)
	}
}

// TestCreateRefusals: what Dropbox Sign cannot take is refused before any
// call, permanently, saying why.
func TestCreateRefusals(t *testing.T) {
	many := map[string]string{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		many[k] = "v"
	}
	for _, tc := range []struct {
		name   string
		change func(*schemas.SigningRequest)
		want   string
	}{
		{"id verification", func(r *schemas.SigningRequest) { r.Recipients[0].Auth = schemas.AuthIDVerification }, "ID verification"},
		{"sms without phone", func(r *schemas.SigningRequest) { r.Recipients[1].Phone = nil }, "needs a phone number"},
		{"sms phone not E.164", func(r *schemas.SigningRequest) { r.Recipients[1].Phone = ptrTo("415 555 0100") }, "E.164"},
		{"too many metadata keys", func(r *schemas.SigningRequest) { r.Metadata = many }, "10 per request"},
		{"metadata name too long", func(r *schemas.SigningRequest) { r.Metadata = map[string]string{strings.Repeat("k", 41): "v"} }, "at most 40"},
		{"metadata value too long", func(r *schemas.SigningRequest) { r.Metadata = map[string]string{"k": strings.Repeat("v", 1001)} }, "at most 1000"},
		{"subject too long", func(r *schemas.SigningRequest) { r.Subject = strings.Repeat("s", 256) }, "at most 255"},
		{"no documents", func(r *schemas.SigningRequest) { r.Documents = nil }, "no documents"},
		{"only viewers", func(r *schemas.SigningRequest) { r.Recipients = r.Recipients[2:] }, "no signer"},
		{"expired already", func(r *schemas.SigningRequest) { r.ExpiresAt = ptrTo(time.Now().Add(-time.Hour)) }, "not in the future"},
		{"hash mismatch", func(r *schemas.SigningRequest) {
			r.Documents = []schemas.Document{{Name: "x.pdf", Content: []byte("x"), SHA256: ptrTo("00")}}
		}, "SHA-256 mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, testAPIKey)
			c := newClient(t, s, nil)
			req := byURL("req-refused")
			tc.change(&req)
			_, err := c.Create(context.Background(), req.RequestID, req)
			if !provider.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a permanent error containing %q", err, tc.want)
			}
			if n := len(s.allCalls()); n != 0 {
				t.Fatalf("%d calls made for a refused request", n)
			}
		})
	}
}

// TestCreateRefusedByDropboxSign: a 400 with an error body is permanent and
// names the field.
func TestCreateRefusedByDropboxSign(t *testing.T) {
	s := newServer(t, testAPIKey)
	c := newClient(t, s, nil)
	s.fault("send", faultBadRequest)
	_, err := c.Create(context.Background(), "req-400", byURL("req-400"))
	var pe *provider.PermanentError
	if !errors.As(err, &pe) || pe.Status != 400 || !strings.Contains(err.Error(), "bad_request") || !strings.Contains(err.Error(), "signers[0][email_address]") {
		t.Fatalf("got %v", err)
	}
	sends := 0
	for _, cl := range s.allCalls() {
		if cl.path == "/v3/signature_request/send" {
			sends++
		}
	}
	if sends != 1 {
		t.Fatalf("%d sends, want 1 (a refusal is not retried)", sends)
	}
}

// TestCreateExactlyOnce: whatever the faults — timeouts, 503s and dropped
// connections after the server acted, 503s before, failing look-ups —
// every request ends as exactly one signature request, the one Create
// returned, and every send carries the request's Idempotency-Key. Run
// against a server that ignores the header (the look-up alone must hold,
// its index lagging less than LookupSettle) and one that replays it (its
// index lagging more).
func TestCreateExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		name       string
		honourIdem bool
		lag        time.Duration
		settle     time.Duration
	}{
		{"header ignored, index lags less than the settle time", false, 20 * time.Millisecond, 60 * time.Millisecond},
		{"header replayed, index lags more than the settle time", true, time.Hour, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, testAPIKey)
			s.honourIdem, s.searchLag = tc.honourIdem, tc.lag
			c := newClient(t, s, func(cfg *dropboxsign.Config) {
				cfg.CallTimeout, cfg.LookupSettle, cfg.MaxAttempts = 100*time.Millisecond, tc.settle, 30
			})
			rng := rand.New(rand.NewPCG(17, 4))
			sendFaults := []fault{faultNone, faultTimeout, fault503After, faultDrop, fault503}
			lookupFaults := []fault{faultNone, faultNone, faultNone, fault503, faultTimeout}
			const n = 16
			want := map[string]string{}
			acted := 0
			for i := range n {
				id := "req-" + string(rune('a'+i))
				for range 1 + rng.IntN(3) {
					f := sendFaults[rng.IntN(len(sendFaults))]
					s.fault("send", f)
					if f == faultTimeout || f == fault503After || f == faultDrop {
						acted++
					}
				}
				for range 4 {
					s.fault("lookup", lookupFaults[rng.IntN(len(lookupFaults))])
				}
				req := inline(id)
				if i%2 == 0 {
					req = byURL(id)
				}
				env, err := c.Create(context.Background(), id, req)
				if err != nil {
					t.Fatalf("create %s: %v", id, err)
				}
				want[id] = env.ID
				s.mu.Lock()
				s.faults = map[string][]fault{}
				s.mu.Unlock()
			}
			got := s.byRequest()
			for id, envID := range want {
				if ids := got[id]; len(ids) != 1 || ids[0] != envID {
					t.Errorf("request %s: signature requests %v, want exactly [%s]", id, ids, envID)
				}
			}
			if len(got) != n {
				t.Errorf("%d requests have signature requests, want %d", len(got), n)
			}
			sends := s.allSends()
			for _, r := range sends {
				if r.IdemKey != dropboxsign.CreateKey("acme", r.Metadata[provider.RequestIDKey]) {
					t.Errorf("a send of %s carried Idempotency-Key %q", r.Metadata[provider.RequestIDKey], r.IdemKey)
				}
			}
			for _, cl := range s.allCalls() {
				if cl.method == http.MethodGet && cl.idemKey != "" {
					t.Errorf("GET %s carried an Idempotency-Key", cl.path)
				}
			}
			if acted == 0 {
				t.Fatal("no fault acted before failing: the test proved nothing (change the seed)")
			}
			t.Logf("%d sends for %d requests, %d faults after acting", len(sends), n, acted)
		})
	}
}

// TestCreateInFlight: a send that the server is still acting on when the
// client gives up; the next send with the same Idempotency-Key is answered
// 409 "already being processed"; the client waits, looks again and
// returns the one signature request.
func TestCreateInFlight(t *testing.T) {
	s := newServer(t, testAPIKey)
	s.honourIdem = true
	c := newClient(t, s, func(cfg *dropboxsign.Config) {
		cfg.CallTimeout, cfg.LookupSettle = 100*time.Millisecond, time.Millisecond
	})
	// The first send holds until the client gives up and has sent again
	// (answered 409 in flight, without acting), then acts.
	s.fault("send", faultLateAct)
	env, err := c.Create(context.Background(), "req-409", byURL("req-409"))
	if err != nil {
		t.Fatal(err)
	}
	got := s.byRequest()["req-409"]
	if len(got) != 1 || got[0] != env.ID {
		t.Fatalf("signature requests %v, want exactly [%s]", got, env.ID)
	}
	sends := s.allSends()
	if len(sends) < 2 {
		t.Fatalf("%d sends: the 409 path was not taken", len(sends))
	}
	for _, r := range sends[1:] {
		if r.Acted {
			t.Fatalf("a later send acted: %+v", sends)
		}
	}
}

// TestCreateFindsEarlierSend: a Create whose earlier call acted (answer
// lost) finds it by its metadata and sends nothing, even in another
// Client (another replica).
func TestCreateFindsEarlierSend(t *testing.T) {
	s := newServer(t, testAPIKey)
	c1 := newClient(t, s, func(cfg *dropboxsign.Config) { cfg.CallTimeout, cfg.MaxAttempts = 100*time.Millisecond, 1 })
	s.fault("send", faultTimeout)
	if _, err := c1.Create(context.Background(), "req-old", byURL("req-old")); !provider.IsTransient(err) {
		t.Fatalf("first: %v, want transient", err)
	}
	c2 := newClient(t, s, nil)
	env, err := c2.Create(context.Background(), "req-old", byURL("req-old"))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.byRequest()["req-old"]; len(got) != 1 || got[0] != env.ID || len(s.allSends()) != 1 {
		t.Fatalf("signature requests %v, %d sends; want one, found", got, len(s.allSends()))
	}
	// Another tenant's request with the same id is another signature
	// request.
	other := byURL("req-old")
	other.Tenant = "globex"
	env2, err := c2.Create(context.Background(), "req-old", other)
	if err != nil || env2.ID == env.ID {
		t.Fatalf("other tenant: %+v %v", env2, err)
	}
}

// TestGetStatusMapping: Dropbox Sign's answers normalised, over the states
// a signature request goes through.
func TestGetStatusMapping(t *testing.T) {
	now := time.Now().Unix()
	sig := func(id string, order int, code string, signed, viewed int64) string {
		j := func(v int64) string {
			if v == 0 {
				return "null"
			}
			return jsonInt(v)
		}
		return `{"signature_id":"` + id + `","signer_email_address":"` + id + `@example.com","signer_name":"` + id +
			`","order":` + jsonInt(int64(order)) + `,"status_code":"` + code + `","signed_at":` + j(signed) + `,"last_viewed_at":` + j(viewed) + `}`
	}
	sr := func(flags string, expires int64, sigs ...string) string {
		e := "null"
		if expires != 0 {
			e = jsonInt(expires)
		}
		return `{"signature_request_id":"5e0","title":"NDA","created_at":1700000000,"expires_at":` + e +
			`,"metadata":{"esignflow_request_id":"req-1","esignflow_tenant":"acme","custom_id":1234},` + flags +
			`,"signatures":[` + strings.Join(sigs, ",") + `]}`
	}
	open := `"is_complete":false,"is_declined":false,"has_error":false`
	type rs = schemas.RecipientStatus
	for _, tc := range []struct {
		name   string
		raw    string
		status schemas.Status
		at     int64
		recips []rs
	}{
		{"sent, parallel", sr(open, 0, sig("a", 0, "awaiting_signature", 0, 0), sig("b", 0, "awaiting_signature", 0, 0)),
			schemas.StatusSent, 1700000000, []rs{schemas.RecipientSent, schemas.RecipientSent}},
		{"sent, ordered: the second waits", sr(open, 0, sig("a", 0, "awaiting_signature", 0, 0), sig("b", 1, "awaiting_signature", 0, 0)),
			schemas.StatusSent, 1700000000, []rs{schemas.RecipientSent, schemas.RecipientCreated}},
		{"viewed", sr(open, 0, sig("a", 0, "awaiting_signature", 0, 1700000100), sig("b", 1, "awaiting_signature", 0, 0)),
			schemas.StatusViewed, 1700000100, []rs{schemas.RecipientViewed, schemas.RecipientCreated}},
		{"partially signed", sr(open, 0, sig("a", 0, "signed", 1700000200, 1700000100), sig("b", 1, "awaiting_signature", 0, 0)),
			schemas.StatusPartiallySigned, 1700000200, []rs{schemas.RecipientSigned, schemas.RecipientSent}},
		{"all signed, not complete yet", sr(open, 0, sig("a", 0, "signed", 1700000200, 0), sig("b", 1, "signed", 1700000300, 0)),
			schemas.StatusPartiallySigned, 1700000300, []rs{schemas.RecipientSigned, schemas.RecipientSigned}},
		{"completed", sr(`"is_complete":true,"is_declined":false,"has_error":false`, 0, sig("a", 0, "signed", 1700000200, 0), sig("b", 1, "signed", 1700000300, 1700000250)),
			schemas.StatusCompleted, 1700000300, []rs{schemas.RecipientSigned, schemas.RecipientSigned}},
		{"declined", sr(`"is_complete":false,"is_declined":true,"has_error":false`, 0, sig("a", 0, "declined", 0, 1700000100), sig("b", 1, "awaiting_signature", 0, 0)),
			schemas.StatusDeclined, 1700000100, []rs{schemas.RecipientDeclined, schemas.RecipientSent}},
		{"error", sr(`"is_complete":false,"is_declined":false,"has_error":true`, 0, sig("a", 0, "error_file", 0, 0)),
			schemas.StatusFailed, 1700000000, []rs{schemas.RecipientFailed}},
		{"bounced", sr(open, 0, sig("a", 0, "error_invalid_email", 0, 0)),
			schemas.StatusSent, 1700000000, []rs{schemas.RecipientBounced}},
		{"expired", sr(open, now-10, sig("a", 0, "awaiting_signature", 0, 0)),
			schemas.StatusExpired, now - 10, []rs{schemas.RecipientSent}},
		{"expires later", sr(open, now+3600, sig("a", 0, "awaiting_signature", 0, 0)),
			schemas.StatusSent, 1700000000, []rs{schemas.RecipientSent}},
		{"on hold", sr(open, 0, sig("a", 0, "on_hold", 0, 0)),
			schemas.StatusSent, 1700000000, []rs{schemas.RecipientCreated}},
		{"unknown signature status left out", sr(open, 0, sig("a", 0, "awaiting_signature", 0, 0), sig("b", 0, "teleported", 0, 0)),
			schemas.StatusSent, 1700000000, []rs{schemas.RecipientSent}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, testAPIKey)
			s.canned["5e0"] = tc.raw
			c := newClient(t, s, nil)
			env, err := c.Get(context.Background(), "5e0")
			if err != nil {
				t.Fatal(err)
			}
			if env.ID != "5e0" || env.Status != tc.status || env.StatusAt.Unix() != tc.at {
				t.Errorf("got %s at %d, want %s at %d", env.Status, env.StatusAt.Unix(), tc.status, tc.at)
			}
			var got []rs
			for _, r := range env.Recipients {
				got = append(got, r.Status)
			}
			if strings.Join(statusStrings(got), ",") != strings.Join(statusStrings(tc.recips), ",") {
				t.Errorf("recipients %v, want %v", got, tc.recips)
			}
			if env.Recipients[0].RecipientID != "a" || env.Recipients[0].Email != "a@example.com" {
				t.Errorf("recipient %+v: want recipient_id = signature_id", env.Recipients[0])
			}
			if env.Metadata[provider.RequestIDKey] != "req-1" || env.Metadata[provider.TenantKey] != "acme" || env.Metadata["custom_id"] != "1234" {
				t.Errorf("metadata %v", env.Metadata)
			}
		})
	}
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

func statusStrings(ss []schemas.RecipientStatus) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

// TestGetNotFoundAndCanceled: 404 is provider.ErrNotFound; 410 (canceled)
// is VOIDED.
func TestGetNotFoundAndCanceled(t *testing.T) {
	s := newServer(t, testAPIKey)
	c := newClient(t, s, nil)
	if _, err := c.Get(context.Background(), "abc123"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("unknown: %v, want ErrNotFound", err)
	}
	s.fault("get", faultGone)
	env, err := c.Get(context.Background(), "abc123")
	if err != nil || env.Status != schemas.StatusVoided || env.ID != "abc123" {
		t.Fatalf("canceled: %+v %v, want VOIDED", env, err)
	}
}

// TestDownloadNotReady: 409 while the files are being prepared is a
// transient, distinct error, returned at once (no retry); once ready, the
// merged PDF, for every artefact, in one call.
func TestDownloadNotReady(t *testing.T) {
	s := newServer(t, testAPIKey)
	c := newClient(t, s, nil)
	ctx := context.Background()
	s.fault("files", faultNotReady)
	_, err := c.Download(ctx, "abc123", provider.ArtifactSigned)
	if !errors.Is(err, dropboxsign.ErrFilesNotReady) || !errors.Is(err, provider.ErrNotReady) || !provider.IsTransient(err) || provider.IsPermanent(err) {
		t.Fatalf("preparing: %v, want ErrFilesNotReady (provider.ErrNotReady), transient", err)
	}
	if n := len(s.allCalls()); n != 1 {
		t.Fatalf("%d calls, want 1: not ready is the caller's to back off", n)
	}
	s.fault("files", fault503)
	d, err := c.Download(ctx, "abc123", provider.ArtifactSigned)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Body) != "%PDF-1.7 abc123 pdf" || d.ContentType != "application/pdf" || d.DeclaredHash != "" {
		t.Fatalf("download %q %q %q", d.Body, d.ContentType, d.DeclaredHash)
	}
	before := len(s.allCalls())
	for _, kind := range []provider.Artifact{provider.ArtifactCertificate, provider.ArtifactAudit} {
		got, err := c.Download(ctx, "abc123", kind)
		if err != nil || !bytes.Equal(got.Body, d.Body) {
			t.Fatalf("%s: %q %v, want the merged PDF", kind, got.Body, err)
		}
	}
	if n := len(s.allCalls()) - before; n != 0 {
		t.Fatalf("%d more calls for the certificate and audit trail, want 0", n)
	}
	for _, cl := range s.allCalls() {
		if cl.path != "/v3/signature_request/files/abc123" || cl.query.Get("file_type") != "pdf" {
			t.Fatalf("call %s?%s", cl.path, cl.query.Encode())
		}
	}
}

// clock is a settable clock for rate-limit resets.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestRateLimited: 429 exceeded_rate is a RateLimitedError until
// X-Ratelimit-Reset, in either casing, and stops that tier's calls (not
// the other's) until then, without calling.
func TestRateLimited(t *testing.T) {
	for _, header := range []string{"X-Ratelimit-Reset", "X-RateLimit-Reset"} {
		t.Run(header, func(t *testing.T) {
			clk := &clock{t: time.Unix(1800000000, 0)}
			s := newServer(t, testAPIKey)
			s.resetName = header
			s.reset = func() int64 { return clk.Now().Unix() + 20 }
			c := newClient(t, s, func(cfg *dropboxsign.Config) { cfg.Now = clk.Now })
			ctx := context.Background()
			s.fault("get", faultRateLimit)
			_, err := c.Get(ctx, "abc123")
			var rl *provider.RateLimitedError
			if !errors.As(err, &rl) || rl.RetryAfter != 20*time.Second {
				t.Fatalf("got %v, want rate limited for 20s", err)
			}
			n := len(s.allCalls())
			clk.add(19 * time.Second)
			if _, err := c.Get(ctx, "abc123"); !errors.As(err, &rl) || rl.RetryAfter != time.Second {
				t.Fatalf("before the reset: %v", err)
			}
			if len(s.allCalls()) != n {
				t.Fatal("a call was made before the reset")
			}
			// The high tier is not stopped.
			if _, err := c.Download(ctx, "abc123", provider.ArtifactSigned); err != nil {
				t.Fatalf("download during a standard-tier stop: %v", err)
			}
			clk.add(time.Second)
			if _, err := c.Get(ctx, "abc123"); !errors.Is(err, provider.ErrNotFound) {
				t.Fatalf("after the reset: %v, want the server's answer (not found)", err)
			}
		})
	}
}

// TestRemainingZeroWaitsForReset: an answer with X-RateLimit-Remaining: 0
// stops that tier's calls until X-Ratelimit-Reset: none is made before.
func TestRemainingZeroWaitsForReset(t *testing.T) {
	clk := &clock{t: time.Unix(1800000000, 0)}
	s := newServer(t, testAPIKey)
	s.reset = func() int64 { return clk.Now().Unix() + 30 }
	reg := prometheus.NewRegistry()
	c := newClient(t, s, func(cfg *dropboxsign.Config) { cfg.Now, cfg.Metrics = clk.Now, reg })
	ctx := context.Background()
	s.fault("account", faultRemaining0)
	if err := c.Check(ctx); err != nil {
		t.Fatal(err)
	}
	n := len(s.allCalls())
	for _, d := range []time.Duration{0, 10 * time.Second, 19 * time.Second} { // +29s in all
		clk.add(d)
		var rl *provider.RateLimitedError
		if err := c.Check(ctx); !errors.As(err, &rl) {
			t.Fatalf("at +%s: %v, want rate limited without a call", d, err)
		}
	}
	if got := len(s.allCalls()); got != n {
		t.Fatalf("%d calls made before the reset", got-n)
	}
	clk.add(time.Second)
	if err := c.Check(ctx); err != nil {
		t.Fatalf("at the reset: %v", err)
	}
	if got := gauge(t, reg, "esignflow_dropboxsign_ratelimit_remaining", "standard"); got != 99 {
		t.Fatalf("remaining gauge %v, want 99", got)
	}
}

// gauge is the value of the gauge name{tier=tier} in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name, tier string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "tier" && l.GetValue() == tier {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{tier=%s}", name, tier)
	return 0
}

// TestPacing: with pacing on, the calls of a tier beyond its per-minute
// allowance wait; a caller whose deadline comes first gets a
// RateLimitedError and no call is made.
func TestPacing(t *testing.T) {
	s := newServer(t, testAPIKey)
	c := newClient(t, s, func(cfg *dropboxsign.Config) { cfg.StandardPerMinute = 2 })
	ctx := context.Background()
	for range 2 {
		if err := c.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, time.Second) // the next slot is 30s away
	defer cancel()
	var rl *provider.RateLimitedError
	if err := c.Check(short); !errors.As(err, &rl) || rl.RetryAfter < 25*time.Second {
		t.Fatalf("third call: %v, want rate limited for about 30s", err)
	}
	if n := len(s.allCalls()); n != 2 {
		t.Fatalf("%d calls, want 2", n)
	}
	// The high tier has its own allowance.
	if _, err := c.Download(ctx, "abc123", provider.ArtifactSigned); err != nil {
		t.Fatal(err)
	}
}

// TestChangedSincePaging: the list walked page by page, the cursor the
// next page, keeping what changed at or after since.
func TestChangedSincePaging(t *testing.T) {
	s := newServer(t, testAPIKey)
	c := newClient(t, s, func(cfg *dropboxsign.Config) { cfg.PageSize = 3 })
	ctx := context.Background()
	for i := range 7 {
		if _, err := c.Create(ctx, "", byURL("req-p"+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	seen, pages := providertest.ListAll(t, c, time.Now().Add(-time.Minute))
	if len(seen) != 7 || pages != 3 {
		t.Fatalf("%d signature requests in %d pages, want 7 in 3", len(seen), pages)
	}
	page, _, err := c.ChangedSince(ctx, time.Now().Add(time.Hour), "")
	if err != nil || len(page) != 0 {
		t.Fatalf("since the future: %d, %v", len(page), err)
	}
	if _, _, err := c.ChangedSince(ctx, time.Now(), "x"); !provider.IsPermanent(err) {
		t.Fatalf("bad cursor: %v", err)
	}
}

// TestSendNotReplayedByTransport: a send whose reused connection breaks
// after the server acted reaches the server once: net/http's Transport
// replays a request with a canonical Idempotency-Key header on its own
// (seen: two signature requests for one request when the header was set
// with Header.Set), and Create must look up before any resend.
func TestSendNotReplayedByTransport(t *testing.T) {
	s := newServer(t, testAPIKey) // ignores the header's replay
	c := newClient(t, s, nil)
	ctx := context.Background()
	if err := c.Check(ctx); err != nil { // the send reuses this connection
		t.Fatal(err)
	}
	s.fault("send", faultDrop)
	env, err := c.Create(ctx, "req-drop", byURL("req-drop"))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.byRequest()["req-drop"]; len(got) != 1 || got[0] != env.ID {
		t.Fatalf("signature requests %v, want exactly [%s]", got, env.ID)
	}
	if n := len(s.allSends()); n != 1 {
		t.Fatalf("%d sends reached the server, want 1", n)
	}
}
