package dropboxsign_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/dropboxsign"
	"github.com/esignflow/esignflow/provider/dropboxsign/dropboxsignfake"
	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
	"github.com/esignflow/esignflow/sink"
)

// The Client against the simulator's Dropbox Sign dialect
// (dropboxsignfake): the other side is written from PROVIDER-APIS.md by
// someone else, so these tests check that both read the documentation the
// same way.

type fakeSetup struct {
	sim *sim.Simulator
	d   *dropboxsignfake.Dialect
	c   *dropboxsign.Client
	rec *providertest.Recorder
}

// startFake runs a simulator speaking Dropbox Sign, whose recipients never
// act unless scfg says otherwise, and a Client for it.
func startFake(t *testing.T, fcfg dropboxsignfake.Config, scfg sim.Config, tweak func(*dropboxsign.Config)) *fakeSetup {
	t.Helper()
	fcfg.APIKey = testAPIKey
	d, err := dropboxsignfake.New(fcfg)
	if err != nil {
		t.Fatal(err)
	}
	scfg.Dialect, scfg.Logger = d, quiet()
	if scfg.Step == 0 {
		scfg.Step = time.Hour
	}
	s := fakes.Sim(t, scfg)
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte(testAPIKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := &providertest.Recorder{}
	cfg := dropboxsign.Config{
		APIKeyFile: path, BaseURL: s.URL() + "/v3", HTTP: &http.Client{Transport: rec}, CallTimeout: 2 * time.Second,
		BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond, LookupSettle: 50 * time.Millisecond,
		StandardPerMinute: -1, HighTierPerMinute: -1, Logger: quiet(),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := dropboxsign.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeSetup{sim: s, d: d, c: c, rec: rec}
}

// onePerRequest checks that every request of want has exactly one
// envelope in the simulator's truth, the one Create returned, sent.
func onePerRequest(t *testing.T, s *sim.Simulator, want map[string]string) {
	t.Helper()
	per := map[string][]sim.Truth{}
	for _, tr := range s.Truth() {
		per[tr.RequestID] = append(per[tr.RequestID], tr)
	}
	for id, envID := range want {
		if got := per[id]; len(got) != 1 || got[0].ID != envID || got[0].Status != schemas.StatusSent {
			t.Errorf("request %s: envelopes %+v, want exactly %s, sent", id, got, envID)
		}
	}
	if len(per) != len(want) {
		t.Errorf("%d requests have envelopes, want %d", len(per), len(want))
	}
}

// TestFakeCreateExactlyOnce: with calls failing before acting (503) and
// timing out after acting, and the search index lagging, every request
// still ends as exactly one signature request.
func TestFakeCreateExactlyOnce(t *testing.T) {
	f := startFake(t, dropboxsignfake.Config{SearchLag: 30 * time.Millisecond},
		sim.Config{Seed: 7, Faults: sim.Faults{APIError: 0.15, APITimeout: 0.3}},
		func(c *dropboxsign.Config) {
			c.CallTimeout, c.MaxAttempts, c.LookupSettle = 150*time.Millisecond, 40, 80*time.Millisecond
		})
	ctx := context.Background()
	want := map[string]string{}
	for i := range 12 {
		req := inline("req-" + string(rune('a'+i)))
		if i%2 == 0 {
			req = byURL(req.RequestID)
		}
		env, err := f.c.Create(ctx, req.RequestID, req)
		if err != nil {
			t.Fatalf("create %s: %v", req.RequestID, err)
		}
		want[req.RequestID] = env.ID
	}
	onePerRequest(t, f.sim, want)
	timedOut := 0
	for _, r := range f.rec.All() {
		if r.Err != nil && r.Method == http.MethodPost {
			timedOut++
		}
	}
	if timedOut == 0 {
		t.Error("no send timed out: the faults missed the send (change the seed)")
	}
	t.Logf("%d sends timed out; dialect %+v; simulator %+v", timedOut, f.d.Stats(), f.sim.Stats())
}

// TestFakeCreateInFlight: two replicas create the same request at once;
// the dialect's send is slow, so the second meets the first in flight and
// is answered 409 "An identical request is already being processed": it
// waits, looks again and returns the first's signature request.
func TestFakeCreateInFlight(t *testing.T) {
	f := startFake(t, dropboxsignfake.Config{SendDelay: 300 * time.Millisecond}, sim.Config{},
		func(c *dropboxsign.Config) { c.LookupSettle, c.MaxAttempts = 20*time.Millisecond, 40 })
	c2, err := dropboxsign.New(dropboxsign.Config{APIKeyFile: writeKeyFile(t, t.TempDir(), testAPIKey), BaseURL: f.sim.URL() + "/v3",
		BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond, LookupSettle: 20 * time.Millisecond, MaxAttempts: 40,
		StandardPerMinute: -1, HighTierPerMinute: -1, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	req := byURL("req-slow")
	first := make(chan error, 1)
	var env1 provider.Envelope
	go func() {
		var err error
		env1, err = f.c.Create(context.Background(), req.RequestID, req)
		first <- err
	}()
	for f.d.Stats().Sending == 0 { // the first send is acting
		select {
		case err := <-first:
			t.Fatalf("the first create ended before its send was seen acting: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	env2, err := c2.Create(context.Background(), req.RequestID, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if env1.ID != env2.ID {
		t.Fatalf("the replicas got %s and %s", env1.ID, env2.ID)
	}
	onePerRequest(t, f.sim, map[string]string{req.RequestID: env1.ID})
	if st := f.d.Stats(); st.InFlight == 0 {
		t.Fatalf("stats %+v: no send met one in flight, the 409 path was not taken", st)
	}
}

// TestFakeDownloadNotReady: once completed, the files are being prepared
// for a while: Download says ErrFilesNotReady (transient, distinct), then
// returns the PDF; the certificate and audit trail are the same file.
func TestFakeDownloadNotReady(t *testing.T) {
	f := startFake(t, dropboxsignfake.Config{FilesDelay: time.Second, HighTierLimit: 1 << 20}, sim.Config{Step: time.Millisecond}, nil)
	ctx := context.Background()
	req := inline("req-files")
	req.Recipients = req.Recipients[:1]
	env, err := f.c.Create(ctx, req.RequestID, req)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := f.c.Get(ctx, env.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == schemas.StatusCompleted {
			if len(got.Recipients) != 1 || got.Recipients[0].Status != schemas.RecipientSigned || got.Metadata[provider.RequestIDKey] != "req-files" {
				t.Fatalf("completed: %+v", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not completed: %+v", got)
		}
		time.Sleep(5 * time.Millisecond) // a caller polling; the simulator moves on its own clock
	}
	_, err = f.c.Download(ctx, env.ID, provider.ArtifactSigned)
	if !errors.Is(err, dropboxsign.ErrFilesNotReady) || !errors.Is(err, provider.ErrNotReady) || !provider.IsTransient(err) {
		t.Fatalf("right after completion: %v, want ErrFilesNotReady", err)
	}
	var d provider.Download
	for {
		if d, err = f.c.Download(ctx, env.ID, provider.ArtifactSigned); err == nil {
			break
		}
		if !errors.Is(err, dropboxsign.ErrFilesNotReady) || time.Now().After(deadline) {
			t.Fatalf("waiting for the files: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // the sink's backoff, in short
	}
	if len(d.Body) < 4 || string(d.Body[:4]) != "%PDF" || d.ContentType != "application/pdf" {
		t.Fatalf("download %q %.20q", d.ContentType, d.Body)
	}
	before := len(f.rec.All())
	for _, kind := range []provider.Artifact{provider.ArtifactCertificate, provider.ArtifactAudit} {
		if got, err := f.c.Download(ctx, env.ID, kind); err != nil || string(got.Body) != string(d.Body) {
			t.Fatalf("%s: %v", kind, err)
		}
	}
	if n := len(f.rec.All()) - before; n != 0 {
		t.Fatalf("%d more calls for the other artefacts", n)
	}
	if st := f.d.Stats(); st.FilesNotReady == 0 {
		t.Fatalf("stats %+v: no 409 seen", st)
	}
}

// TestFakeRateLimit: once the dialect says nothing remains of a tier, no
// call of that tier leaves before X-Ratelimit-Reset; the other tier goes
// on.
func TestFakeRateLimit(t *testing.T) {
	f := startFake(t, dropboxsignfake.Config{StandardLimit: 4, RateWindow: 2 * time.Second}, sim.Config{}, nil)
	ctx := context.Background()
	req := byURL("req-rl")
	env, err := f.c.Create(ctx, req.RequestID, req) // a look-up (standard) and a send (high)
	if err != nil {
		t.Fatal(err)
	}
	var rl *provider.RateLimitedError
	var reset time.Time
	for i := 0; ; i++ {
		_, err := f.c.Get(ctx, env.ID)
		if errors.As(err, &rl) {
			reset = time.Now().Add(rl.RetryAfter)
			break
		}
		if err != nil || i > 10 {
			t.Fatalf("no rate limit after %d calls: %v", i, err)
		}
	}
	limitedAt := len(f.rec.All())
	if _, err := f.c.Download(ctx, env.ID, provider.ArtifactSigned); err != nil {
		t.Fatalf("high tier during a standard stop: %v", err)
	}
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
		if r.Path != "/v3/signature_request/files/"+env.ID && r.At.Before(reset.Add(-time.Second)) { // the reset has a one-second resolution
			t.Fatalf("a standard call left at %s, before the reset at %s", r.At, reset)
		}
	}
	// X-RateLimit-Remaining reached 0 on the fourth standard call: the
	// Client stopped there, never provoking a 429.
	if st := f.d.Stats(); st.RateLimited != 0 {
		t.Fatalf("stats %+v, want no 429: the Client stops when nothing remains", st)
	}
}

// TestFakeCheck: the dialect takes the key; another key fails Check.
func TestFakeCheck(t *testing.T) {
	f := startFake(t, dropboxsignfake.Config{}, sim.Config{}, nil)
	if err := f.c.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other")
	if err := os.WriteFile(path, []byte("wrong-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := dropboxsign.New(dropboxsign.Config{APIKeyFile: path, BaseURL: f.sim.URL() + "/v3", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(context.Background()); !provider.IsPermanent(err) {
		t.Fatalf("wrong key: %v, want permanent", err)
	}
}

// TestFakeCanceledKeepsNoFiles: Dropbox Sign deletes a canceled signature
// request, so its files answer 410 deleted, a refusal no retry changes;
// the Client says it keeps nothing of a VOIDED request (and everything of
// the other terminal statuses), so the sink never asks for them and does
// not dead-letter a canceled request for want of its audit trail.
func TestFakeCanceledKeepsNoFiles(t *testing.T) {
	f := startFake(t, dropboxsignfake.Config{HighTierLimit: 1 << 20}, sim.Config{}, nil)
	ctx := context.Background()
	env, err := f.c.Create(ctx, "req-cancel", inline("req-cancel"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.sim.Void(env.ID, "canceled by the requester"); err != nil {
		t.Fatal(err)
	}
	if got, err := f.c.Get(ctx, env.ID); err != nil || got.Status != schemas.StatusVoided {
		t.Fatalf("canceled: %+v %v, want VOIDED", got, err)
	}
	for _, kind := range []provider.Artifact{provider.ArtifactSigned, provider.ArtifactCertificate, provider.ArtifactAudit} {
		if _, err := f.c.Download(ctx, env.ID, kind); !provider.IsPermanent(err) {
			t.Fatalf("%s of a canceled request: %v, want a refusal (410)", kind, err)
		}
	}
	var k any = f.c
	kp, ok := k.(sink.Keeper)
	if !ok {
		t.Fatal("the Client is no sink.Keeper: it does not say which artefacts Dropbox Sign keeps")
	}
	for _, st := range []schemas.Status{schemas.StatusCompleted, schemas.StatusDeclined, schemas.StatusExpired, schemas.StatusVoided} {
		for _, kind := range []provider.Artifact{provider.ArtifactSigned, provider.ArtifactCertificate, provider.ArtifactAudit} {
			if got, want := kp.Keeps(st, kind), st != schemas.StatusVoided; got != want {
				t.Errorf("Keeps(%s, %s) = %v, want %v", st, kind, got, want)
			}
		}
	}
}
