package docusign_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/docusign"
	"github.com/esignflow/esignflow/provider/docusign/docusignfake"
	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

// The Client against the simulator's DocuSign dialect (docusignfake): the
// other side is written from PROVIDER-APIS.md by someone else, so these
// tests check that both read the documentation the same way.

type fakeSetup struct {
	sim *sim.Simulator
	d   *docusignfake.Dialect
	c   *docusign.Client
	rec *providertest.Recorder
}

// startFake runs a simulator speaking DocuSign, whose recipients never act
// unless scfg says otherwise, and a Client for it (BaseURL from userinfo).
func startFake(t *testing.T, fcfg docusignfake.Config, scfg sim.Config, tweak func(*docusign.Config)) *fakeSetup {
	t.Helper()
	a, _ := testKeys(t)
	fcfg.PublicKey = &a.PublicKey
	d, err := docusignfake.New(fcfg)
	if err != nil {
		t.Fatal(err)
	}
	scfg.Addr, scfg.Dialect, scfg.Logger = "127.0.0.1:0", d, discard()
	if scfg.Step == 0 {
		scfg.Step = time.Hour
	}
	s, err := sim.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("simulator: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("simulator: %v", err)
	}
	path := filepath.Join(t.TempDir(), "docusign.pem")
	writeKey(t, path, a, true)
	rec := &providertest.Recorder{}
	cfg := docusign.Config{
		AccountID: docusignfake.DefaultAccountID, IntegrationKey: docusignfake.DefaultIntegrationKey,
		UserID: docusignfake.DefaultUserID, PrivateKeyFile: path, AuthURL: s.URL(),
		HTTP: &http.Client{Transport: rec}, CallTimeout: 2 * time.Second,
		BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond, Logger: discard(),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := docusign.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeSetup{sim: s, d: d, c: c, rec: rec}
}

// TestFakeCreateExactlyOnce: with calls failing before acting and timing
// out after acting, every request still ends as exactly one sent
// envelope; and the timeouts hit both steps, the create and the send.
func TestFakeCreateExactlyOnce(t *testing.T) {
	f := startFake(t, docusignfake.Config{}, sim.Config{Seed: 7, Faults: sim.Faults{APIError: 0.15, APITimeout: 0.3}},
		func(c *docusign.Config) { c.CallTimeout, c.MaxAttempts = 150*time.Millisecond, 40 })
	ctx := context.Background()
	const n = 12
	want := map[string]string{}
	for i := range n {
		req := signingRequest("req-" + string(rune('a'+i)))
		env, err := f.c.Create(ctx, req.RequestID, req)
		if err != nil {
			t.Fatalf("create %s: %v", req.RequestID, err)
		}
		want[req.RequestID] = env.ID
	}
	per := map[string][]sim.Truth{}
	for _, tr := range f.sim.Truth() {
		per[tr.RequestID] = append(per[tr.RequestID], tr)
	}
	for id, envID := range want {
		got := per[id]
		if len(got) != 1 || got[0].ID != envID || got[0].Status != schemas.StatusSent {
			t.Errorf("request %s: envelopes %+v, want exactly %s, sent", id, got, envID)
		}
	}
	if len(per) != n {
		t.Errorf("%d requests have envelopes, want %d", len(per), n)
	}
	timedOut := map[string]int{}
	for _, r := range f.rec.All() {
		if r.Err != nil && strings.HasSuffix(r.Path, "/envelopes") && r.Method == http.MethodPost {
			timedOut["create"]++
		}
		if r.Err != nil && r.Method == http.MethodPut {
			timedOut["send"]++
		}
	}
	if timedOut["create"] == 0 || timedOut["send"] == 0 {
		t.Errorf("timeouts per step %v: the faults missed a step (change the seed)", timedOut)
	}
	t.Logf("timeouts per step: %v; simulator %+v", timedOut, f.sim.Stats())
}

// TestFakeTokenReused: the dialect verifies the JWT with the public key
// and issues one token, which every later call reuses; userinfo is asked
// once.
func TestFakeTokenReused(t *testing.T) {
	f := startFake(t, docusignfake.Config{}, sim.Config{}, nil)
	ctx := context.Background()
	req := signingRequest("req-tok")
	env, err := f.c.Create(ctx, req.RequestID, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []provider.Artifact{provider.ArtifactSigned, provider.ArtifactCertificate, provider.ArtifactAudit} {
		if _, err := f.c.Download(ctx, env.ID, kind); err != nil {
			t.Fatalf("download %s: %v", kind, err)
		}
	}
	if _, _, err := f.c.ChangedSince(ctx, time.Now().Add(-time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	st := f.d.Stats()
	if st.TokensIssued != 1 || st.TokensRefused != 0 || st.UserInfoCalls != 1 || st.Unauthorized != 0 {
		t.Fatalf("stats %+v, want one token, no refusal, one userinfo", st)
	}
	got, err := f.c.Get(ctx, env.ID)
	if err != nil || got.Status != schemas.StatusSent || got.Metadata[provider.RequestIDKey] != "req-tok" ||
		got.Metadata[provider.TenantKey] != "acme" || len(got.Recipients) != 2 {
		t.Fatalf("get: %+v %v", got, err)
	}
}

func TestFakeConsentRequired(t *testing.T) {
	f := startFake(t, docusignfake.Config{NoConsent: true}, sim.Config{}, nil)
	err := f.c.Check(context.Background())
	var ae *docusign.AuthError
	if !errors.As(err, &ae) || ae.Code != "consent_required" || !strings.Contains(err.Error(), "/oauth/auth?client_id="+docusignfake.DefaultIntegrationKey) {
		t.Fatalf("got %v", err)
	}
	f.d.SetConsent(true)
	if err := f.c.Check(context.Background()); err != nil {
		t.Fatalf("after consent: %v", err)
	}
}

// TestFakeRateLimit: once the account's limit answers, no call leaves
// before X-RateLimit-Reset.
func TestFakeRateLimit(t *testing.T) {
	f := startFake(t, docusignfake.Config{HourlyLimit: 3, HourlyWindow: 2 * time.Second}, sim.Config{}, nil)
	ctx := context.Background()
	req := signingRequest("req-rl")
	env, err := f.c.Create(ctx, req.RequestID, req) // look-up, create, send
	if err != nil {
		var rl *provider.RateLimitedError
		if !errors.As(err, &rl) {
			t.Fatal(err)
		}
	}
	var rl *provider.RateLimitedError
	var reset time.Time
	for i := 0; ; i++ {
		_, err := f.c.Get(ctx, env.ID)
		if errors.As(err, &rl) {
			reset = time.Now().Add(rl.RetryAfter)
			break
		}
		if i > 10 {
			t.Fatalf("no rate limit after %d calls: %v", i, err)
		}
	}
	limitedAt := len(f.rec.All())
	// Ask until DocuSign answers again; none may leave before the reset.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := f.c.Get(ctx, env.ID)
		if err == nil {
			break
		}
		if !errors.As(err, &rl) || time.Now().After(deadline) {
			t.Fatalf("waiting for the reset: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // a caller polling; the Client itself makes no call
	}
	for _, r := range f.rec.All()[limitedAt:] {
		if r.At.Before(reset.Add(-time.Second)) { // X-RateLimit-Reset has a one-second resolution
			t.Fatalf("a call left at %s, before the reset at %s", r.At, reset)
		}
	}
}

// TestFakeListPaging: listStatusChanges paged by from_date, and the batch
// read by envelope_ids, one call per page.
func TestFakeListPaging(t *testing.T) {
	f := startFake(t, docusignfake.Config{}, sim.Config{}, func(c *docusign.Config) { c.PageSize = 3 })
	ctx := context.Background()
	since := time.Now().Add(-time.Minute)
	created := map[string]bool{}
	var ids []string
	for i := range 7 {
		req := signingRequest("req-p" + string(rune('a'+i)))
		env, err := f.c.Create(ctx, req.RequestID, req)
		if err != nil {
			t.Fatal(err)
		}
		created[env.ID] = true
		ids = append(ids, env.ID)
	}
	seen, pages := providertest.ListAll(t, f.c, since)
	if len(seen) != 7 || pages != 3 {
		t.Fatalf("%d envelopes in %d pages, want 7 in 3", len(seen), pages)
	}
	for id := range created {
		if !seen[id] {
			t.Fatalf("%s missing from the listing", id)
		}
	}
	before := len(f.rec.All())
	got, err := f.c.GetMany(ctx, ids)
	if err != nil || len(got) != 7 {
		t.Fatalf("GetMany: %d, %v", len(got), err)
	}
	if calls := len(f.rec.All()) - before; calls != 3 {
		t.Fatalf("GetMany made %d calls for 7 envelopes in pages of 3, want 3", calls)
	}
}

// TestFakePollingLimit: the dialect's per-envelope polling error backs that
// envelope off in the Client.
func TestFakePollingLimit(t *testing.T) {
	f := startFake(t, docusignfake.Config{PollInterval: time.Hour}, sim.Config{}, nil)
	ctx := context.Background()
	req := signingRequest("req-poll")
	env, err := f.c.Create(ctx, req.RequestID, req)
	if err != nil {
		t.Fatal(err)
	}
	var el *docusign.EnvelopeLimitError
	for i := 0; !errors.As(err, &el); i++ {
		if i > 3 {
			t.Fatalf("no polling limit: %v", err)
		}
		_, err = f.c.Get(ctx, env.ID)
	}
	before := len(f.rec.All())
	if _, err := f.c.Get(ctx, env.ID); !errors.As(err, &el) {
		t.Fatalf("again: %v", err)
	}
	if len(f.rec.All()) != before {
		t.Fatal("a call was made for an envelope backed off")
	}
}
