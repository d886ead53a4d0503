package sim_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/provider/stdwebhook"
	"github.com/esignflow/esignflow/schemas"
)

var secretKey = []byte("test-secret-key-0123456789abcdef")

// receiver is a webhook endpoint that checks every signature with its own
// HMAC computation (not the code under test) and records what arrived.
type receiver struct {
	t        testing.TB
	mu       sync.Mutex
	received []sim.Webhook
	byID     map[string]int
	bad      int
	fail     func(sim.Webhook) bool // answer 500 when true
	slow     time.Duration          // held before answering, as a loaded endpoint
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if rc.slow > 0 {
		time.Sleep(rc.slow)
	}
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	m := hmac.New(sha256.New, secretKey)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	var w0 sim.Webhook
	err := json.Unmarshal(body, &w0)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !strings.Contains(" "+r.Header.Get("webhook-signature")+" ", " "+want+" ") || err != nil || w0.ID != id {
		rc.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if rc.fail != nil && rc.fail(w0) {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	rc.received = append(rc.received, w0)
	rc.byID[id]++
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) snapshot() ([]sim.Webhook, map[string]int, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	ids := make(map[string]int, len(rc.byID))
	for k, v := range rc.byID {
		ids[k] = v
	}
	return append([]sim.Webhook(nil), rc.received...), ids, rc.bad
}

// start runs a simulator for the test with a receiver behind it.
func start(t testing.TB, cfg sim.Config) (*sim.Simulator, *receiver) {
	t.Helper()
	rc := &receiver{byID: map[string]int{}}
	return startWith(t, cfg, rc), rc
}

// startWith runs a simulator for the test that sends its webhooks to rc.
func startWith(t testing.TB, cfg sim.Config, rc *receiver) *sim.Simulator {
	t.Helper()
	rc.t = t
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.WebhookURL = hook.URL
	cfg.WebhookSecrets = []stdwebhook.Secret{secretKey}
	if cfg.Step == 0 {
		cfg.Step = 2 * time.Millisecond
	}
	if cfg.RetryBase == 0 {
		cfg.RetryBase = 5 * time.Millisecond
		cfg.RetryMax = 50 * time.Millisecond
	}
	return fakes.Sim(t, cfg)
}

func client(t testing.TB, s *sim.Simulator, timeout time.Duration) *sim.Client {
	t.Helper()
	c, err := sim.NewClient(sim.ClientConfig{BaseURL: s.URL(), CallTimeout: timeout, BackoffBase: time.Millisecond, BackoffMax: 20 * time.Millisecond, MaxAttempts: 30})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func request(id string, recipients int) schemas.SigningRequest {
	uri, sum := "s3://docs/"+id+".pdf", strings.Repeat("ab", 32)
	r := schemas.SigningRequest{RequestID: id, Tenant: "acme", Subject: "Sign " + id,
		Documents: []schemas.Document{{Name: id + ".pdf", URI: &uri, SHA256: &sum}}}
	for i := range recipients {
		auth := schemas.AuthEmail
		if i == 0 {
			auth = schemas.AuthIDVerification
		}
		r.Recipients = append(r.Recipients, schemas.Recipient{ID: fmt.Sprintf("r%d", i), Name: "Signer", Email: fmt.Sprintf("s%d@example.com", i), RoutingOrder: int32(1 + i/2), Auth: auth})
	}
	return r
}

func TestLifecycleAndSignedWebhooks(t *testing.T) {
	s, rc := start(t, sim.Config{DeclineRate: 0.2, VoidRate: 0.1, Seed: 7})
	c := client(t, s, time.Second)
	ctx := context.Background()
	const n = 40
	for i := range n {
		env, err := c.Create(ctx, fmt.Sprintf("req-%d", i), request(fmt.Sprintf("req-%d", i), 1+i%3))
		if err != nil {
			t.Fatal(err)
		}
		if env.Status != schemas.StatusSent || env.Metadata[provider.RequestIDKey] != fmt.Sprintf("req-%d", i) {
			t.Fatalf("created envelope: %+v", env)
		}
	}
	// Settled, not AllFinal: the final transition is in the truth before
	// its webhook is delivered (the receiver records it before answering).
	providertest.WaitFor(t, 30*time.Second, "every envelope final and every webhook delivered", providertest.Settled(s, n))
	got, _, bad := rc.snapshot()
	if bad != 0 {
		t.Fatalf("%d webhooks failed the independent signature check", bad)
	}
	// Deliveries run in parallel, so arrival order is not transition
	// order: the webhook id's sequence number is.
	last := map[string]sim.Webhook{}
	for _, w := range got {
		if seq(w) > seq(last[w.Data.EnvelopeID]) {
			last[w.Data.EnvelopeID] = w
		}
	}
	fates := map[schemas.Status]int{}
	for _, tr := range s.Truth() {
		w := last[tr.ID]
		if strings.ToUpper(w.Data.Status) != string(tr.Status) {
			t.Errorf("%s: last webhook says %s, truth %s", tr.ID, w.Data.Status, tr.Status)
		}
		if w.Data.Metadata[provider.RequestIDKey] != tr.RequestID {
			t.Errorf("%s: webhook lacks the request id", tr.ID)
		}
		fates[tr.Status]++
		env, err := c.Get(ctx, tr.ID)
		if err != nil || env.Status != tr.Status {
			t.Errorf("Get(%s) = %v, %v; truth %s", tr.ID, env.Status, err, tr.Status)
		}
		if tr.Status == schemas.StatusCompleted && env.Recipients[0].IDVerifiedAt == nil {
			t.Errorf("%s: ID-verified recipient has no verification time", tr.ID)
		}
	}
	if fates[schemas.StatusCompleted] == 0 || fates[schemas.StatusDeclined] == 0 {
		t.Fatalf("fates %v: expected completed and declined envelopes", fates)
	}
	// Every webhook parses into a normalised event.
	for _, w := range got[:10] {
		b, _ := json.Marshal(w)
		evs, err := sim.ParseWebhook(b)
		if err != nil || len(evs) != 1 || evs[0].EventID != w.ID || evs[0].RequestID == nil {
			t.Fatalf("ParseWebhook(%s) = %+v, %v", b, evs, err)
		}
	}
}

// TestRoutingOrderRespected reads the webhooks, so it waits for them to be
// delivered, not only for the truth to be final: the receiver here answers
// slowly, as a loaded machine does, which made the old wait read a partial
// history.
func TestRoutingOrderRespected(t *testing.T) {
	rc := &receiver{byID: map[string]int{}, slow: 20 * time.Millisecond}
	s := startWith(t, sim.Config{}, rc)
	c := client(t, s, time.Second)
	env, err := c.Create(context.Background(), "k", request("ro", 4)) // orders 1,1,2,2
	if err != nil {
		t.Fatal(err)
	}
	providertest.WaitFor(t, 20*time.Second, "completion and every webhook delivered", providertest.Settled(s, 1))
	got, _, _ := rc.snapshot()
	firstSent := map[string]int{}
	signed := map[string]int{}
	for _, w := range got {
		i := seq(w)
		if r := w.Data.Recipient; r != nil && w.Data.EnvelopeID == env.ID {
			if r.Status == "sent" {
				firstSent[r.ID] = i
			}
			if r.Status == "signed" {
				signed[r.ID] = i
			}
		}
	}
	for _, r := range []string{"r0", "r1", "r2", "r3"} {
		if firstSent[r] == 0 || signed[r] == 0 {
			t.Fatalf("%s: no sent or signed webhook among the %d received (sent %v, signed %v)", r, len(got), firstSent, signed)
		}
	}
	for _, late := range []string{"r2", "r3"} {
		for _, early := range []string{"r0", "r1"} {
			if firstSent[late] < signed[early] {
				t.Fatalf("%s was sent (webhook %d) before %s signed (webhook %d)", late, firstSent[late], early, signed[early])
			}
		}
	}
}

// seq is a webhook's position in its envelope's history: the number after
// the last underscore of its id (0 for none).
func seq(w sim.Webhook) int {
	n, _ := strconv.Atoi(w.ID[strings.LastIndexByte(w.ID, '_')+1:])
	return n
}

func rawCreate(t *testing.T, url, key, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/envelopes", strings.NewReader(body))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%s %s: error answer %d has Content-Type %q", key, body, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, out
}

func TestCreateIdempotencyKey(t *testing.T) {
	s, _ := start(t, sim.Config{CreateDelay: 300 * time.Millisecond})
	body := `{"subject":"a","metadata":{"x":"1"}}`
	tests := []struct {
		name, key, body string
		want            int
	}{
		{"missing key", "", body, http.StatusBadRequest},
		{"first", "k1", body, http.StatusCreated},
		{"same key same body", "k1", body, http.StatusCreated},
		{"same key other body", "k1", `{"subject":"b"}`, http.StatusUnprocessableEntity},
		{"bad recipient", "k2", `{"recipients":[{"id":"r","email":"nope"}]}`, http.StatusUnprocessableEntity},
		{"bad recipient replayed", "k2", `{"recipients":[{"id":"r","email":"nope"}]}`, http.StatusUnprocessableEntity},
	}
	var firstID any
	for _, tt := range tests {
		code, out := rawCreate(t, s.URL(), tt.key, tt.body)
		if code != tt.want {
			t.Fatalf("%s: status %d, want %d (%v)", tt.name, code, tt.want, out)
		}
		if tt.name == "first" {
			firstID = out["id"]
		}
		if tt.name == "same key same body" && out["id"] != firstID {
			t.Fatalf("replay returned %v, first was %v", out["id"], firstID)
		}
	}
	// In flight: a second request while the first is still being created.
	started := make(chan struct{})
	result := make(chan int, 1)
	go func() {
		close(started)
		code, _ := rawCreate(t, s.URL(), "k3", body)
		result <- code
	}()
	<-started
	providertest.WaitFor(t, 5*time.Second, "the first k3 request to be in flight", func() bool {
		return s.Stats().APICalls >= int64(len(tests))+1
	})
	if code, _ := rawCreate(t, s.URL(), "k3", body); code != http.StatusConflict {
		t.Fatalf("same key in flight: %d, want 409", code)
	}
	if code := <-result; code != http.StatusCreated {
		t.Fatalf("first k3: %d", code)
	}
	if n := len(s.Truth()); n != 2 {
		t.Fatalf("%d envelopes, want 2 (k1, k3)", n)
	}
}

func TestConfigurationClosedAfterSend(t *testing.T) {
	s, _ := start(t, sim.Config{Step: time.Hour})
	env, err := client(t, s, time.Second).Create(context.Background(), "k", request("r", 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/documents", "/recipients"} {
		req, _ := http.NewRequest(http.MethodPut, s.URL()+"/v1/envelopes/"+env.ID+path, strings.NewReader(`[]`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusConflict {
			t.Fatalf("PUT %s after send: %d, want 409", path, resp.StatusCode)
		}
	}
}

// The classic "did it happen?": the simulator acts, then never answers. The
// client retries with the same key; there is still one envelope per key.
func TestTimeoutAfterActionCreatesOnce(t *testing.T) {
	s, _ := start(t, sim.Config{Step: time.Hour, Faults: sim.Faults{APITimeout: 0.3, APIError: 0.1}, Seed: 3})
	c := client(t, s, 100*time.Millisecond)
	const n = 30
	for i := range n {
		if _, err := c.Create(context.Background(), fmt.Sprintf("key-%d", i), request(fmt.Sprintf("req-%d", i), 2)); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	st := s.Stats()
	if st.APITimeouts == 0 || st.APIErrors == 0 {
		t.Fatalf("faults not injected: %+v", st)
	}
	tr := s.Truth()
	if len(tr) != n {
		t.Fatalf("%d envelopes for %d keys (%d timeouts injected)", len(tr), n, st.APITimeouts)
	}
	for _, e := range tr {
		if e.Status != schemas.StatusSent {
			t.Fatalf("%s is %s, want SENT: configuration finished after retries", e.ID, e.Status)
		}
	}
}

func TestPermanentErrors(t *testing.T) {
	s, _ := start(t, sim.Config{})
	c := client(t, s, time.Second)
	bad := request("bad", 1)
	bad.Recipients[0].Email = "not an address"
	_, err := c.Create(context.Background(), "bad", bad)
	if !provider.IsPermanent(err) {
		t.Fatalf("invalid recipient: %v, want a permanent error", err)
	}
	if _, err := c.Get(context.Background(), "env-nope"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("Get unknown: %v", err)
	}
}

func TestChangedSincePaginates(t *testing.T) {
	s, _ := start(t, sim.Config{Step: time.Hour, PageSize: 7})
	c := client(t, s, time.Second)
	since := time.Now()
	for i := range 25 {
		if _, err := c.Create(context.Background(), fmt.Sprintf("k%d", i), request(fmt.Sprintf("r%d", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	cursor, pages := "", 0
	for {
		page, next, err := c.ChangedSince(context.Background(), since, cursor)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range page {
			if seen[e.ID] {
				t.Fatalf("%s listed twice", e.ID)
			}
			seen[e.ID] = true
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != 25 || pages != 4 {
		t.Fatalf("listed %d envelopes in %d pages, want 25 in 4", len(seen), pages)
	}
	if later, _, _ := c.ChangedSince(context.Background(), time.Now().Add(time.Minute), ""); len(later) != 0 {
		t.Fatalf("changed since the future: %d", len(later))
	}
}

func TestDownloadDeclaresDigest(t *testing.T) {
	// Before completion, on a simulator whose recipients never act: with
	// 2ms steps an envelope could complete between create and download
	// on a busy machine (seen in CI).
	slow, _ := start(t, sim.Config{Step: time.Hour})
	sc := client(t, slow, time.Second)
	pending, err := sc.Create(context.Background(), "k", request("d", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Download(context.Background(), pending.ID, provider.ArtifactSigned); !provider.IsPermanent(err) {
		t.Fatalf("download before completion: %v, want refused", err)
	}
	s, _ := start(t, sim.Config{})
	c := client(t, s, time.Second)
	env, err := c.Create(context.Background(), "k", request("d", 1))
	if err != nil {
		t.Fatal(err)
	}
	providertest.WaitFor(t, 10*time.Second, "completion", providertest.AllFinal(s, 1))
	var first []byte
	for _, kind := range []provider.Artifact{provider.ArtifactSigned, provider.ArtifactCertificate, provider.ArtifactAudit} {
		d, err := c.Download(context.Background(), env.ID, kind)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(d.Body)
		if d.DeclaredHash != fmt.Sprintf("%x", sum) {
			t.Fatalf("%s: declared %s, body hashes to %x", kind, d.DeclaredHash, sum)
		}
		if kind == provider.ArtifactSigned {
			first = d.Body
		}
	}
	again, _ := c.Download(context.Background(), env.ID, provider.ArtifactSigned)
	if !bytes.Equal(again.Body, first) {
		t.Fatal("artefacts are not deterministic")
	}
	if err := s.SetFaults(sim.Faults{CorruptDownload: 1}); err != nil {
		t.Fatal(err)
	}
	bad, err := c.Download(context.Background(), env.ID, provider.ArtifactSigned)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(bad.Body); bad.DeclaredHash == fmt.Sprintf("%x", sum) {
		t.Fatal("corrupted download still matches its declared digest")
	}
}

func TestFailedDeliveriesAreRetried(t *testing.T) {
	s, rc := start(t, sim.Config{})
	var mu sync.Mutex
	failures := map[string]int{}
	rc.fail = func(w sim.Webhook) bool { // every webhook fails twice first
		mu.Lock()
		defer mu.Unlock()
		failures[w.ID]++
		return failures[w.ID] <= 2
	}
	if _, err := client(t, s, time.Second).Create(context.Background(), "k", request("x", 1)); err != nil {
		t.Fatal(err)
	}
	providertest.WaitFor(t, 10*time.Second, "completion", providertest.AllFinal(s, 1))
	providertest.WaitFor(t, 10*time.Second, "delivery", func() bool { st := s.Stats(); return st.Delivered == st.Webhooks })
	st := s.Stats()
	if st.FailedAttempts != 2*st.Webhooks || st.Lost != 0 {
		t.Fatalf("stats %+v: want two failed attempts per webhook, none lost", st)
	}
}

func TestPartitionWindowHoldsWebhooks(t *testing.T) {
	s, rc := start(t, sim.Config{Faults: sim.Faults{PartitionFrom: 0, PartitionFor: 300 * time.Millisecond}})
	if _, err := client(t, s, time.Second).Create(context.Background(), "k", request("x", 1)); err != nil {
		t.Fatal(err)
	}
	providertest.WaitFor(t, 10*time.Second, "completion", providertest.AllFinal(s, 1))
	providertest.WaitFor(t, 10*time.Second, "delivery after the partition", func() bool { st := s.Stats(); return st.Delivered == st.Webhooks })
	if st := s.Stats(); st.Partitioned == 0 {
		t.Fatalf("no attempt hit the partition: %+v", st)
	}
	got, _, _ := rc.snapshot()
	if len(got) == 0 {
		t.Fatal("nothing delivered after the partition")
	}
}

func FuzzParseWebhook(f *testing.F) {
	f.Add([]byte(`{"id":"evt_1","type":"recipient.signed","created_at":"2026-11-27T11:59:58Z","data":{"envelope_id":"e","status":"completed","recipient":{"id":"r1","status":"signed"}}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := sim.ParseWebhook(b)
		if err == nil && (len(evs) != 1 || evs[0].EnvelopeID == "" || evs[0].EventID == "") {
			t.Fatalf("accepted without an envelope or event id: %+v", evs)
		}
	})
}

// A restarted simulator with a state file still knows its envelopes and
// carries on signing the ones in progress.
func TestStateSurvivesRestart(t *testing.T) {
	path := t.TempDir() + "/state.json"
	run := func(step time.Duration) (*sim.Simulator, func()) {
		s, err := sim.New(sim.Config{Addr: "127.0.0.1:0", Step: step, StateFile: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		<-s.Ready()
		return s, func() {
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
	a, stopA := run(time.Hour)
	env, err := client(t, a, time.Second).Create(context.Background(), "k1", request("r1", 2))
	if err != nil {
		t.Fatal(err)
	}
	stopA()
	b, stopB := run(time.Millisecond)
	defer stopB()
	again, err := client(t, b, time.Second).Create(context.Background(), "k1", request("r1", 2))
	if err != nil || again.ID != env.ID {
		t.Fatalf("the idempotency key was forgotten: %v %v", again.ID, err)
	}
	providertest.WaitFor(t, 10*time.Second, "the resumed envelope to complete", providertest.AllFinal(b, 1))
	if tr := b.Truth(); len(tr) != 1 || tr[0].ID != env.ID {
		t.Fatalf("truth after restart: %+v", tr)
	}
}

// The state file is written as the state changes, not only when Run
// stops: a second simulator started from a copy of the file while the
// first still runs — as after a kill -9, which runs no shutdown path — knows
// the in-flight envelope and its idempotency key, and finishes it.
func TestStateSavedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/state.json"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := fakes.Sim(t, sim.Config{Step: time.Hour, StateFile: path, SaveEvery: 10 * time.Millisecond, Logger: quiet})
	env, err := client(t, a, time.Second).Create(context.Background(), "k1", request("r1", 2))
	if err != nil {
		t.Fatal(err)
	}
	// Wait on the file itself: it names the envelope, sent, once a save
	// after the create has completed.
	var raw []byte
	providertest.WaitFor(t, 10*time.Second, "the running simulator to save the sent envelope", func() bool {
		raw, _ = os.ReadFile(path)
		var snap struct {
			Envelopes []struct{ ID, Status string }
		}
		if json.Unmarshal(raw, &snap) != nil {
			return false
		}
		for _, e := range snap.Envelopes {
			if e.ID == env.ID && e.Status == "sent" {
				return true
			}
		}
		return false
	})
	copyPath := dir + "/copy.json"
	if err := os.WriteFile(copyPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	b := fakes.Sim(t, sim.Config{Step: time.Millisecond, StateFile: copyPath, Logger: quiet})
	again, err := client(t, b, time.Second).Create(context.Background(), "k1", request("r1", 2))
	if err != nil || again.ID != env.ID {
		t.Fatalf("the idempotency key was not saved: %v %v", again.ID, err)
	}
	providertest.WaitFor(t, 10*time.Second, "the resumed envelope to complete", providertest.AllFinal(b, 1))
	if tr := b.Truth(); len(tr) != 1 || tr[0].ID != env.ID {
		t.Fatalf("truth from the saved state: %+v", tr)
	}
	if st := a.Stats(); st.StateSaves == 0 || st.StateSaveErrors != 0 {
		t.Fatalf("stats %+v: want saves and no errors", st)
	}
}
