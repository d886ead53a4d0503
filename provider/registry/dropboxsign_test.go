package registry_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/dropboxsign/dropboxsignfake"
	"github.com/esignflow/esignflow/provider/registry"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

const dropboxsignTestKey = "6e2b9c1d0f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c"

// TestDropboxSignFlags: --dropboxsign-api-key-file enables Dropbox Sign;
// the key is checked against the account at start, and a key Dropbox Sign
// refuses stops the service with the flag named (and the key not shown).
func TestDropboxSignFlags(t *testing.T) {
	ctx := context.Background()
	d, err := dropboxsignfake.New(dropboxsignfake.Config{APIKey: dropboxsignTestKey})
	if err != nil {
		t.Fatal(err)
	}
	s := fakes.Sim(t, sim.Config{Dialect: d, Logger: quiet()})
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte(dropboxsignTestKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("not-the-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := parse(t, true, "--sim-url", "").Enabled(); len(got) != 0 {
		t.Errorf("enabled with no flags: %v", got)
	}
	args := []string{"--sim-url", "", "--dropboxsign-api-key-file", good, "--dropboxsign-base-url", s.URL() + "/v3", "--dropboxsign-test-mode"}
	f := parse(t, true, args...)
	if got := f.Enabled(); !slices.Equal(got, []string{"dropboxsign"}) {
		t.Fatalf("enabled %v, want [dropboxsign]", got)
	}
	clients, err := f.Open(ctx, registry.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if clients["dropboxsign"] == nil {
		t.Fatalf("clients %v, want dropboxsign", clients)
	}
	args[3] = bad
	_, err = parse(t, true, args...).Open(ctx, registry.Options{Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "--dropboxsign-api-key-file") || strings.Contains(err.Error(), dropboxsignTestKey) {
		t.Errorf("refused key: %v, want a start-up error naming --dropboxsign-api-key-file", err)
	}
	if p, ok := registry.Lookup("dropboxsign"); !ok || !p.HasAPI() || p.Dialect != "dropboxsign" || !registry.CanSimulate("dropboxsign") {
		t.Errorf("dropboxsign registration %+v", p)
	}
	if err := registry.NotEnabled("dropboxsign"); err == nil || !strings.Contains(err.Error(), "--dropboxsign-api-key-file") {
		t.Errorf("NotEnabled: %v, want the flag named", err)
	}
}

// TestSimulateDropboxSign: the simulator plays Dropbox Sign with an API
// key written once into the secrets directory, and the client reaches it:
// a request created, read back, and its callback key the same.
func TestSimulateDropboxSign(t *testing.T) {
	dir := t.TempDir()
	scfg := registry.SimulateConfig{Dir: dir, SecretsDir: filepath.Join(dir, "secrets")}
	sd, err := registry.Simulate("dropboxsign", scfg)
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(dir, "secrets", "dropboxsign"))
	if err != nil || len(strings.TrimSpace(string(key))) != 64 {
		t.Fatalf("API key file %q, %v", key, err)
	}
	again, err := registry.Simulate("dropboxsign", scfg)
	if err != nil || again == nil {
		t.Fatal(err)
	}
	if key2, _ := os.ReadFile(filepath.Join(dir, "secrets", "dropboxsign")); string(key2) != string(key) {
		t.Fatal("a second setup generated another key")
	}
	cfg := sim.Config{Logger: quiet(), Step: time.Hour}
	sd.Configure(&cfg)
	s := fakes.Sim(t, cfg)
	c, err := sd.Connect(s.URL(), 5*time.Second, registry.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := schemas.SigningRequest{RequestID: "req-sim", Tenant: "acme", Subject: "NDA",
		Documents:  []schemas.Document{{Name: "nda.pdf", ContentType: "application/pdf", Content: []byte("%PDF-1.4 nda")}},
		Recipients: []schemas.Recipient{{ID: "r1", Name: "Jack", Email: "jack@example.com"}}}
	env, err := c.Create(ctx, req.RequestID, req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, env.ID)
	if err != nil || got.Status != schemas.StatusSent || got.Metadata[provider.RequestIDKey] != "req-sim" || len(got.Recipients) != 1 {
		t.Fatalf("get: %+v %v", got, err)
	}
	if tr := s.Truth(); len(tr) != 1 || tr[0].ID != env.ID {
		t.Fatalf("truth %+v, want one envelope %s", tr, env.ID)
	}
	if !slices.Contains(registry.Dialects(), "dropboxsign") {
		t.Errorf("Dialects() = %v, want dropboxsign among them", registry.Dialects())
	}
}
