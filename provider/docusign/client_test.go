package docusign_test

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/docusign"
	"github.com/esignflow/esignflow/schemas"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func ptr[T any](v T) *T { return &v }

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func signingRequest(id string) schemas.SigningRequest {
	return schemas.SigningRequest{
		RequestID: id, Tenant: "acme", Provider: "docusign", Subject: "Please sign the NDA", Message: "Hi",
		Documents: []schemas.Document{{Name: "nda.pdf", ContentType: "application/pdf", Content: []byte("%PDF-1.7 nda")}},
		Recipients: []schemas.Recipient{
			{ID: "r1", Name: "Ann Signer", Email: "ann@example.com", Role: "signer", RoutingOrder: 1, Auth: schemas.AuthEmail},
			{ID: "r2", Name: "Bob Signer", Email: "bob@example.com", Role: "signer", RoutingOrder: 2, Auth: schemas.AuthSMS, Phone: ptr("+15551234567")},
		},
		Metadata: map[string]string{"order": "1042"},
	}
}

func TestNewConfigErrors(t *testing.T) {
	a, _ := testKeys(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pem")
	writeKey(t, good, a, true)
	notPEM := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(notPEM, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := docusign.Config{AccountID: accountID, IntegrationKey: integrationKey, UserID: userID, PrivateKeyFile: good}
	tests := []struct {
		name  string
		tweak func(*docusign.Config)
		want  string // in the error; "" for none
	}{
		{"valid", func(*docusign.Config) {}, ""},
		{"missing all", func(c *docusign.Config) { *c = docusign.Config{} }, "AccountID is required"},
		{"missing user", func(c *docusign.Config) { c.UserID = "" }, "UserID is required"},
		{"no key file", func(c *docusign.Config) { c.PrivateKeyFile = filepath.Join(dir, "absent.pem") }, "no such file"},
		{"not PEM", func(c *docusign.Config) { c.PrivateKeyFile = notPEM }, "no PEM block"},
		{"auth URL", func(c *docusign.Config) { c.AuthURL = "account-d.docusign.com" }, "AuthURL"},
		{"base URL", func(c *docusign.Config) { c.BaseURL = "ftp://x" }, "BaseURL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.tweak(&cfg)
			_, err := docusign.New(cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestJWTAssertion verifies the assertion with the public key (the server
// does) and checks every claim, for both PEM encodings.
func TestJWTAssertion(t *testing.T) {
	for _, pkcs8 := range []bool{false, true} {
		t.Run(map[bool]string{false: "pkcs1", true: "pkcs8"}[pkcs8], func(t *testing.T) {
			s := newSetup(t, nil)
			a, _ := testKeys(t)
			writeKey(t, s.keyPath, a, pkcs8)
			if err := s.c.Reload(); err != nil {
				t.Fatal(err)
			}
			if err := s.c.Check(context.Background()); err != nil {
				t.Fatal(err)
			}
			s.srv.mu.Lock()
			claims, form := s.srv.claims[0], s.srv.forms[0]
			s.srv.mu.Unlock()
			u, _ := url.Parse(s.srv.URL())
			now := s.clk.Now().Unix()
			iat, _ := claims["iat"].(float64)
			exp, _ := claims["exp"].(float64)
			got := []struct{ name, got, want string }{
				{"iss", claims["iss"].(string), integrationKey},
				{"sub", claims["sub"].(string), userID},
				{"aud", claims["aud"].(string), u.Host}, // host:port
				{"scope", claims["scope"].(string), "signature impersonation"},
				{"grant_type", form.Get("grant_type"), "urn:ietf:params:oauth:grant-type:jwt-bearer"},
			}
			for _, g := range got {
				if g.got != g.want {
					t.Errorf("%s: got %q, want %q", g.name, g.got, g.want)
				}
			}
			if int64(iat) != now || exp <= iat || exp-iat > 3600 {
				t.Errorf("iat %v exp %v, want iat %d and exp at most an hour later", iat, exp, now)
			}
		})
	}
}

func TestTokenReuseAndRenewal(t *testing.T) {
	s := newSetup(t, nil)
	s.srv.add(&fakeEnvelope{ID: "env-a", Status: "sent", Changed: s.clk.Now()})
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.c.Get(ctx, "env-a"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for range 3 {
		if _, err := s.c.Get(ctx, "env-a"); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.srv.tokenCalls(); n != 1 {
		t.Fatalf("%d token calls for 23 concurrent and serial calls, want 1", n)
	}
	s.srv.mu.Lock()
	ui := s.srv.userinfo
	s.srv.mu.Unlock()
	if ui != 1 {
		t.Fatalf("userinfo asked %d times, want once", ui)
	}
	// 54 minutes on, the hour-long token is still used; at 56 (within
	// the renewal margin) it is renewed, before it expires.
	s.clk.Add(54 * time.Minute)
	if _, err := s.c.Get(ctx, "env-a"); err != nil || s.srv.tokenCalls() != 1 {
		t.Fatalf("at 54m: err %v, %d token calls, want 1", err, s.srv.tokenCalls())
	}
	s.clk.Add(2 * time.Minute)
	if _, err := s.c.Get(ctx, "env-a"); err != nil || s.srv.tokenCalls() != 2 {
		t.Fatalf("at 56m: err %v, %d token calls, want 2", err, s.srv.tokenCalls())
	}
}

// TestKeyRotation: a rewritten key file is used for the next token,
// without a restart.
func TestKeyRotation(t *testing.T) {
	s := newSetup(t, nil)
	_, b := testKeys(t)
	ctx := context.Background()
	if err := s.c.Check(ctx); err != nil {
		t.Fatal(err)
	}
	s.srv.mu.Lock()
	s.srv.keys = []*rsa.PublicKey{&b.PublicKey} // DocuSign now knows only the new key
	s.srv.mu.Unlock()
	writeKey(t, s.keyPath, b, true)
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(s.keyPath, future, future); err != nil { // a new stamp even on a coarse clock
		t.Fatal(err)
	}
	if !s.c.Changed() {
		t.Fatal("Changed: false after the key file was rewritten")
	}
	s.clk.Add(time.Hour) // the token is due
	if err := s.c.Check(ctx); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if n := s.srv.tokenCalls(); n != 2 {
		t.Fatalf("%d tokens, want 2", n)
	}
}

func TestConsentRequired(t *testing.T) {
	s := newSetup(t, func(c *docusign.Config) { c.ConsentRedirectURI = "https://app.example.com/callback" })
	s.srv.mu.Lock()
	s.srv.tokenErr = "consent_required"
	s.srv.mu.Unlock()
	_, err := s.c.Get(context.Background(), "env-a")
	var ae *docusign.AuthError
	if !errors.As(err, &ae) || ae.Code != "consent_required" || !provider.IsPermanent(err) {
		t.Fatalf("got %v, want a permanent consent_required AuthError", err)
	}
	want := s.srv.URL() + "/oauth/auth?client_id=" + integrationKey + "&response_type=code&scope=signature%20impersonation&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcallback"
	if ae.ConsentURL != want || !strings.Contains(err.Error(), want) {
		t.Fatalf("consent URL %q in %q, want %q", ae.ConsentURL, err, want)
	}
	if len(s.srv.restCalls()) != 0 {
		t.Fatal("REST calls made without a token")
	}
}

func TestUnknownAccount(t *testing.T) {
	s := newSetup(t, func(c *docusign.Config) { c.AccountID = "11111111-0000-0000-0000-000000000000" })
	err := s.c.Check(context.Background())
	if !provider.IsPermanent(err) || !strings.Contains(err.Error(), "has no account 11111111") {
		t.Fatalf("got %v", err)
	}
}

func TestBaseURLSkipsUserInfo(t *testing.T) {
	var s *setup
	s = newSetup(t, nil)
	cfg := s.cfg
	cfg.BaseURL = s.srv.URL() + "/"
	c, err := docusign.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.srv.add(&fakeEnvelope{ID: "env-a", Status: "completed", Changed: s.clk.Now()})
	env, err := c.Get(context.Background(), "env-a")
	if err != nil || env.Status != schemas.StatusCompleted {
		t.Fatalf("got %+v %v", env, err)
	}
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if s.srv.userinfo != 0 {
		t.Fatal("userinfo asked although BaseURL is set")
	}
}

// countEnvelopes returns how many envelopes carry txid, and how many of
// them were sent.
func (s *server) countEnvelopes(txid string) (all, sent int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.envelopes {
		if e.TxID == txid {
			all++
			if e.Status == "sent" {
				sent++
			}
		}
	}
	return all, sent
}

// TestCreateIdempotent: whatever step fails, and however (after acting or
// not), the retried Create leaves exactly one sent envelope, and every
// retry looks the transaction up first.
func TestCreateIdempotent(t *testing.T) {
	tests := []struct {
		name   string
		faults map[string][]fault
	}{
		{"no fault", nil},
		{"create dropped after acting", map[string][]fault{"create": {faultDrop}}},
		{"create timed out after acting", map[string][]fault{"create": {faultTimeout}}},
		{"create 503", map[string][]fault{"create": {fault503}}},
		{"send dropped after acting", map[string][]fault{"send": {faultDrop}}},
		{"send timed out after acting", map[string][]fault{"send": {faultTimeout}}},
		{"send 503 twice", map[string][]fault{"send": {fault503, fault503}}},
		{"lookup 503 then create dropped", map[string][]fault{"lookup": {fault503}, "create": {faultDrop}}},
		{"both steps fail", map[string][]fault{"create": {faultTimeout}, "send": {faultDrop}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSetup(t, func(c *docusign.Config) { c.CallTimeout = 200 * time.Millisecond })
			for op, fs := range tt.faults {
				s.srv.inject(op, fs...)
			}
			req := signingRequest("req-1")
			env, err := s.c.Create(context.Background(), req.RequestID, req)
			if err != nil {
				t.Fatal(err)
			}
			s.srv.mu.Lock()
			for op, left := range s.srv.faults {
				if len(left) > 0 {
					t.Errorf("faults of %s not reached: %v", op, left)
				}
			}
			s.srv.mu.Unlock()
			txid := docusign.TransactionID("acme", "req-1")
			if all, sent := s.srv.countEnvelopes(txid); all != 1 || sent != 1 {
				t.Fatalf("%d envelopes, %d sent; want exactly one, sent", all, sent)
			}
			if env.ID == "" || env.Status != schemas.StatusSent || env.Metadata[provider.RequestIDKey] != "req-1" {
				t.Fatalf("envelope %+v", env)
			}
			// Every POST is preceded by a look-up, and so is every
			// send after a failure.
			calls := s.srv.restCalls()
			for i, c := range calls {
				if strings.HasPrefix(c, "POST ") && (i == 0 || !strings.Contains(calls[i-1], "transaction_ids=")) {
					t.Fatalf("create not preceded by a look-up: %q", calls)
				}
			}
			// The request again (a processor that died before
			// recording the envelope): still one envelope.
			again, err := s.c.Create(context.Background(), req.RequestID, req)
			if err != nil || again.ID != env.ID {
				t.Fatalf("again: %+v %v, want %s", again, err, env.ID)
			}
			if all, _ := s.srv.countEnvelopes(txid); all != 1 {
				t.Fatalf("%d envelopes after a second Create", all)
			}
		})
	}
}

func TestCreateBody(t *testing.T) {
	s := newSetup(t, func(c *docusign.Config) { c.IDVerificationWorkflow = "wf-123" })
	req := signingRequest("req-body")
	req.Recipients = append(req.Recipients, schemas.Recipient{ID: "r3", Name: "Cy", Email: "cy@example.com", RoutingOrder: 3, Auth: schemas.AuthIDVerification},
		schemas.Recipient{ID: "r4", Name: "Dee", Email: "dee@example.com", Role: "viewer", RoutingOrder: 4})
	if _, err := s.c.Create(context.Background(), req.RequestID, req); err != nil {
		t.Fatal(err)
	}
	s.srv.mu.Lock()
	raw, _ := json.Marshal(s.srv.lastCreate)
	s.srv.mu.Unlock()
	var def struct {
		Status, TransactionID, EmailSubject string
		Documents                           []struct{ DocumentBase64, DocumentID, Name, FileExtension string }
		Recipients                          struct {
			Signers []struct {
				RecipientID, RoutingOrder, Name, Email, IDCheckConfigurationName string
				SMSAuthentication                                                *struct{ SenderProvidedNumbers []string }
				IdentityVerification                                             *struct{ WorkflowID string }
				CustomFields                                                     []string
			}
			CarbonCopies []struct{ RecipientID, Email string }
		}
		CustomFields struct {
			TextCustomFields []struct{ Name, Value string }
		}
	}
	if err := json.Unmarshal(raw, &def); err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, f := range def.CustomFields.TextCustomFields {
		fields[f.Name] = f.Value
	}
	sg := def.Recipients.Signers
	checks := []struct {
		name string
		ok   bool
	}{
		{"draft", def.Status == "created"},
		{"transaction id", def.TransactionID == docusign.TransactionID("acme", "req-body") && len(def.TransactionID) <= 40},
		{"subject", def.EmailSubject == "Please sign the NDA"},
		{"document", len(def.Documents) == 1 && def.Documents[0].DocumentBase64 == base64.StdEncoding.EncodeToString([]byte("%PDF-1.7 nda")) &&
			def.Documents[0].DocumentID == "1" && def.Documents[0].FileExtension == "pdf"},
		{"custom fields", fields[provider.RequestIDKey] == "req-body" && fields[provider.TenantKey] == "acme" && fields["order"] == "1042"},
		{"signers", len(sg) == 3 && sg[0].RecipientID == "1" && sg[0].RoutingOrder == "1" && sg[0].Email == "ann@example.com" &&
			len(sg[0].CustomFields) == 1 && sg[0].CustomFields[0] == docusign.RecipientIDField+"r1"},
		{"sms", sg[1].SMSAuthentication != nil && sg[1].SMSAuthentication.SenderProvidedNumbers[0] == "+15551234567" && sg[1].IDCheckConfigurationName == "SMS Auth $"},
		{"id verification", sg[2].IdentityVerification != nil && sg[2].IdentityVerification.WorkflowID == "wf-123"},
		{"viewer", len(def.Recipients.CarbonCopies) == 1 && def.Recipients.CarbonCopies[0].RecipientID == "4"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: wrong in %s", c.name, raw)
		}
	}
	if a, b := docusign.TransactionID("acme", "x"), docusign.TransactionID("other", "x"); a == b {
		t.Error("two tenants' requests share a transaction id")
	}
}

func TestCreateDocumentsFromURI(t *testing.T) {
	s := newSetup(t, nil)
	pdf := []byte("%PDF-1.7 fetched")
	s.srv.mu.Lock()
	s.srv.docs["a.pdf"] = pdf
	s.srv.mu.Unlock()
	file := filepath.Join(t.TempDir(), "b.pdf")
	if err := os.WriteFile(file, []byte("%PDF-1.7 file"), 0o600); err != nil {
		t.Fatal(err)
	}
	req := signingRequest("req-uri")
	req.Documents = []schemas.Document{
		{Name: "a.pdf", URI: ptr(s.srv.URL() + "/docs/a.pdf"), SHA256: ptr(hexSHA(pdf))},
		{Name: "b.pdf", URI: ptr("file://" + file), SHA256: ptr(strings.ToUpper(hexSHA([]byte("%PDF-1.7 file"))))},
	}
	if _, err := s.c.Create(context.Background(), req.RequestID, req); err != nil {
		t.Fatal(err)
	}
	s.srv.mu.Lock()
	docs := s.srv.lastCreate["documents"].([]any)
	s.srv.mu.Unlock()
	if got := docs[0].(map[string]any)["documentBase64"]; got != base64.StdEncoding.EncodeToString(pdf) {
		t.Fatalf("http document: %v", got)
	}
	if got := docs[1].(map[string]any)["documentBase64"]; got != base64.StdEncoding.EncodeToString([]byte("%PDF-1.7 file")) {
		t.Fatalf("file document: %v", got)
	}
}

// TestCreateRefusals: requests DocuSign cannot take are refused
// permanently, with a reason, before any call.
func TestCreateRefusals(t *testing.T) {
	pdf := []byte("%PDF-1.7 x")
	tests := []struct {
		name   string
		tweak  func(*schemas.SigningRequest, *server)
		reason string
	}{
		{"ftp scheme", func(r *schemas.SigningRequest, _ *server) {
			r.Documents = []schemas.Document{{Name: "a.pdf", URI: ptr("ftp://example.com/a.pdf"), SHA256: ptr(hexSHA(pdf))}}
		}, `scheme "ftp" is not supported (http, https, file)`},
		{"s3 scheme", func(r *schemas.SigningRequest, _ *server) {
			r.Documents = []schemas.Document{{Name: "a.pdf", URI: ptr("s3://bucket/a.pdf"), SHA256: ptr(hexSHA(pdf))}}
		}, `scheme "s3" is not supported`},
		{"inline SHA-256 mismatch", func(r *schemas.SigningRequest, _ *server) {
			r.Documents[0].SHA256 = ptr(hexSHA([]byte("other")))
		}, "SHA-256 mismatch"},
		{"fetched SHA-256 mismatch", func(r *schemas.SigningRequest, s *server) {
			s.docs["a.pdf"] = []byte("tampered")
			r.Documents = []schemas.Document{{Name: "a.pdf", URI: ptr(s.URL() + "/docs/a.pdf"), SHA256: ptr(hexSHA(pdf))}}
		}, "SHA-256 mismatch"},
		{"URI without hash", func(r *schemas.SigningRequest, s *server) {
			r.Documents = []schemas.Document{{Name: "a.pdf", URI: ptr(s.URL() + "/docs/a.pdf")}}
		}, "needs its sha256"},
		{"URI not found", func(r *schemas.SigningRequest, s *server) {
			r.Documents = []schemas.Document{{Name: "a.pdf", URI: ptr(s.URL() + "/docs/absent.pdf"), SHA256: ptr(hexSHA(pdf))}}
		}, "HTTP 404"},
		{"ID verification without a workflow", func(r *schemas.SigningRequest, _ *server) {
			r.Recipients[0].Auth = schemas.AuthIDVerification
		}, "no identity-verification workflow is configured"},
		{"SMS without a phone", func(r *schemas.SigningRequest, _ *server) {
			r.Recipients[1].Phone = nil
		}, "SMS authentication needs a phone number"},
		{"subject too long", func(r *schemas.SigningRequest, _ *server) {
			r.Subject = strings.Repeat("x", 101)
		}, "at most 100"},
		{"unknown role", func(r *schemas.SigningRequest, _ *server) {
			r.Recipients[0].Role = "notary"
		}, `role "notary" is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSetup(t, nil)
			req := signingRequest("req-bad")
			s.srv.mu.Lock()
			tt.tweak(&req, s.srv)
			s.srv.mu.Unlock()
			_, err := s.c.Create(context.Background(), req.RequestID, req)
			if !provider.IsPermanent(err) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("got %v, want a permanent error with %q", err, tt.reason)
			}
			if calls := s.srv.restCalls(); len(calls) != 0 {
				t.Fatalf("calls made: %q", calls)
			}
		})
	}
}

// TestRateLimitStop: after the account's limit answer (400 or 429, keyed
// on errorCode), no call is made before X-RateLimit-Reset.
func TestRateLimitStop(t *testing.T) {
	tests := []struct {
		name   string
		status int
		code   string
	}{
		{"hourly 400", 400, "HOURLY_APIINVOCATION_LIMIT_EXCEEDED"},
		{"burst 429", 429, "BURST_APIINVOCATION_LIMIT_EXCEEDED"},
		{"hourly 429", 429, "HOURLY_APIINVOCATION_LIMIT_EXCEEDED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSetup(t, nil)
			s.srv.add(&fakeEnvelope{ID: "env-a", Status: "sent", Changed: s.clk.Now()})
			ctx := context.Background()
			reset := s.clk.Now().Add(10 * time.Minute)
			s.srv.mu.Lock()
			s.srv.limitOnce = &limitAnswer{status: tt.status, code: tt.code, reset: reset}
			s.srv.mu.Unlock()
			_, err := s.c.Get(ctx, "env-a")
			var rl *provider.RateLimitedError
			if !errors.As(err, &rl) || rl.RetryAfter != 10*time.Minute {
				t.Fatalf("got %v, want RateLimitedError for 10m", err)
			}
			n := len(s.srv.restCalls())
			s.clk.Add(9 * time.Minute)
			req := signingRequest("req-rl")
			for _, call := range []func() error{
				func() error { _, err := s.c.Get(ctx, "env-b"); return err },
				func() error { _, _, err := s.c.ChangedSince(ctx, s.clk.Now(), ""); return err },
				func() error { _, err := s.c.Create(ctx, req.RequestID, req); return err },
				func() error { _, err := s.c.Download(ctx, "env-a", provider.ArtifactSigned); return err },
			} {
				if err := call(); !errors.As(err, &rl) || rl.RetryAfter != time.Minute {
					t.Fatalf("before the reset: %v, want RateLimitedError for 1m", err)
				}
			}
			if got := len(s.srv.restCalls()); got != n {
				t.Fatalf("%d calls made before the reset", got-n)
			}
			s.clk.Add(time.Minute)
			if _, err := s.c.Get(ctx, "env-a"); err != nil {
				t.Fatalf("at the reset: %v", err)
			}
		})
	}
}

// TestEnvelopePollingBackoff: a per-envelope polling error backs off that
// envelope only, with a typed error that is not an account rate limit.
func TestEnvelopePollingBackoff(t *testing.T) {
	for _, code := range []string{"Burst_Envelope_Polling_Limit_Exceeded", "Hourly_Envelope_Polling_Limit_Exceeded"} {
		t.Run(code, func(t *testing.T) {
			s := newSetup(t, nil)
			for _, id := range []string{"env-a", "env-b"} {
				s.srv.add(&fakeEnvelope{ID: id, Status: "sent", Changed: s.clk.Now()})
			}
			ctx := context.Background()
			s.srv.mu.Lock()
			s.srv.envLimits["env-a"] = code
			s.srv.mu.Unlock()
			_, err := s.c.Get(ctx, "env-a")
			var el *docusign.EnvelopeLimitError
			var rl *provider.RateLimitedError
			if !errors.As(err, &el) || el.Code != code || el.EnvelopeIDs[0] != "env-a" || errors.As(err, &rl) || !provider.IsTransient(err) {
				t.Fatalf("got %v, want a transient EnvelopeLimitError that is no RateLimitedError", err)
			}
			wait := el.Until.Sub(s.clk.Now())
			n := len(s.srv.restCalls())
			if _, err := s.c.Get(ctx, "env-a"); !errors.As(err, &el) {
				t.Fatalf("again: %v", err)
			}
			if _, err := s.c.Get(ctx, "env-b"); err != nil {
				t.Fatalf("another envelope: %v", err)
			}
			got, err := s.c.GetMany(ctx, []string{"env-a", "env-b"})
			if len(got) != 1 || got[0].ID != "env-b" || !errors.As(err, &el) || len(el.EnvelopeIDs) != 1 || el.EnvelopeIDs[0] != "env-a" {
				t.Fatalf("GetMany: %+v %v", got, err)
			}
			if calls := s.srv.restCalls()[n:]; len(calls) != 2 || strings.Contains(strings.Join(calls, " "), "env-a") {
				t.Fatalf("calls while env-a is backed off: %q", calls)
			}
			s.clk.Add(wait)
			if _, err := s.c.Get(ctx, "env-a"); err != nil {
				t.Fatalf("after the back-off: %v", err)
			}
		})
	}
}

func TestChangedSincePaging(t *testing.T) {
	s := newSetup(t, func(c *docusign.Config) { c.PageSize = 3 })
	since := s.clk.Now()
	s.srv.add(&fakeEnvelope{ID: "old", Status: "sent", Changed: since.Add(-time.Hour)})
	for i := range 7 {
		s.srv.add(&fakeEnvelope{ID: "env-" + string(rune('a'+i)), Status: "delivered", Changed: since.Add(time.Duration(i) * time.Second)})
	}
	ctx := context.Background()
	var ids []string
	var sizes []int
	cursor := ""
	for {
		page, next, err := s.c.ChangedSince(ctx, since, cursor)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(page))
		for _, e := range page {
			ids = append(ids, e.ID)
			if e.Status != schemas.StatusDelivered {
				t.Fatalf("status %s", e.Status)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if got, want := strings.Join(ids, ","), "env-a,env-b,env-c,env-d,env-e,env-f,env-g"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if len(sizes) != 3 || sizes[0] != 3 || sizes[2] != 1 {
		t.Fatalf("page sizes %v, want 3 3 1", sizes)
	}
	calls := s.srv.restCalls()
	if len(calls) != 3 || !strings.Contains(calls[0], "from_date=2026-11-27T10%3A00%3A00.0000000Z") || !strings.Contains(calls[2], "start_position=6") {
		t.Fatalf("calls %q", calls)
	}

	// GetMany: one call per page for many envelopes.
	n := len(calls)
	got, err := s.c.GetMany(ctx, []string{"env-a", "env-b", "env-c", "env-d", "absent", "env-a"})
	if err != nil || len(got) != 4 {
		t.Fatalf("GetMany: %d envelopes, %v", len(got), err)
	}
	calls = s.srv.restCalls()[n:]
	if len(calls) != 2 || !strings.Contains(calls[0], "envelope_ids=absent%2Cenv-a%2Cenv-b%2Cenv-c%2Cenv-d") {
		t.Fatalf("GetMany calls %q", calls)
	}
}

func TestGetNotFoundAndStatus(t *testing.T) {
	s := newSetup(t, nil)
	s.srv.add(&fakeEnvelope{ID: "env-a", Status: "voided", Changed: s.clk.Now(),
		Def: map[string]any{"customFields": map[string]any{"textCustomFields": []any{map[string]any{"name": provider.RequestIDKey, "value": "req-9"}}},
			"recipients": map[string]any{"signers": []any{map[string]any{"recipientId": "1", "name": "Ann", "email": "ann@example.com"}}}}})
	env, err := s.c.Get(context.Background(), "env-a")
	if err != nil || env.Status != schemas.StatusVoided || env.Metadata[provider.RequestIDKey] != "req-9" ||
		len(env.Recipients) != 1 || env.Recipients[0].Status != schemas.RecipientSent || !env.StatusAt.Equal(s.clk.Now()) {
		t.Fatalf("got %+v %v", env, err)
	}
	if _, err := s.c.Get(context.Background(), "absent"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("absent: %v", err)
	}
}

func TestDownloads(t *testing.T) {
	s := newSetup(t, nil)
	ctx := context.Background()
	for _, tt := range []struct {
		kind provider.Artifact
		want string
	}{
		{provider.ArtifactSigned, "%PDF combined of env-a"},
		{provider.ArtifactCertificate, "%PDF certificate of env-a"},
	} {
		d, err := s.c.Download(ctx, "env-a", tt.kind)
		if err != nil || string(d.Body) != tt.want || d.DeclaredHash != "" || d.ContentType != "application/pdf" {
			t.Fatalf("%s: %q %+v %v", tt.kind, d.Body, d, err)
		}
	}
	d, err := s.c.Download(ctx, "env-a", provider.ArtifactAudit)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"provider":"docusign","envelope_id":"env-a","events":[` +
		`{"Action":"Registered","Source":"API","logTime":"2026-11-27T09:58:01.103Z"},` +
		`{"Action":"Signed","ClientIPAddress":"203.0.113.5","GeoLocation":"","logTime":"2026-11-27T10:15:41.867Z"}]}`
	if string(d.Body) != want || d.ContentType != "application/json" || d.DeclaredHash != "" {
		t.Fatalf("audit:\n got %s\nwant %s", d.Body, want)
	}
	again, _ := s.c.Download(ctx, "env-a", provider.ArtifactAudit)
	if hexSHA(again.Body) != hexSHA(d.Body) {
		t.Fatal("the audit document is not stable")
	}
}

func TestRateLimitHeaderMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newSetup(t, func(c *docusign.Config) { c.Metrics = reg })
	s.srv.add(&fakeEnvelope{ID: "env-a", Status: "sent", Changed: s.clk.Now()})
	s.srv.mu.Lock()
	for k, v := range map[string]string{"X-RateLimit-Limit": "3000", "X-RateLimit-Remaining": "2990", "X-RateLimit-Reset": "1795777200",
		"X-BurstLimit-Limit": "500", "X-BurstLimit-Remaining": "498"} {
		s.srv.headers.Set(k, v)
	}
	s.srv.mu.Unlock()
	if _, err := s.c.Get(context.Background(), "env-a"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "window" {
					name += "/" + l.GetValue()
				}
			}
			if g := m.GetGauge(); g != nil {
				got[name] = g.GetValue()
			}
		}
	}
	want := map[string]float64{
		"esignflow_provider_ratelimit_limit/hourly": 3000, "esignflow_provider_ratelimit_remaining/hourly": 2990,
		"esignflow_provider_ratelimit_limit/burst": 500, "esignflow_provider_ratelimit_remaining/burst": 498,
		"esignflow_provider_ratelimit_reset_seconds": 1795777200,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %v, want %v", k, got[k], v)
		}
	}
}

// TestSecretsNotLogged: nothing the Client logs holds the key or a token.
func TestSecretsNotLogged(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	s := newSetup(t, func(c *docusign.Config) {
		c.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return buf.Write(p)
		}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	s.srv.inject("create", faultDrop)
	req := signingRequest("req-log")
	if _, err := s.c.Create(context.Background(), req.RequestID, req); err != nil {
		t.Fatal(err)
	}
	key := string(readAll(t, mustOpen(t, s.keyPath)))
	mu.Lock()
	defer mu.Unlock()
	for _, secret := range []string{"tok-1", "Bearer", strings.Split(key, "\n")[1]} {
		if strings.Contains(buf.String(), secret) {
			t.Fatalf("log holds %q:\n%s", secret, buf.String())
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
