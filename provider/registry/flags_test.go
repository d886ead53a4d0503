package registry_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/provider/docusign/docusignfake"
	"github.com/esignflow/esignflow/provider/registry"
	"github.com/esignflow/esignflow/provider/sim"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// docusignSim is a simulator speaking DocuSign, and the private key file
// its dialect trusts.
func docusignSim(t *testing.T, noConsent bool) (*sim.Simulator, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := docusignfake.New(docusignfake.Config{PublicKey: &key.PublicKey, NoConsent: noConsent})
	if err != nil {
		t.Fatal(err)
	}
	return fakes.Sim(t, sim.Config{Dialect: d, Logger: quiet()}), path
}

func parse(t *testing.T, standalone bool, args ...string) *registry.Flags {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := registry.RegisterFlags(fs, standalone)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestDocuSignFlags(t *testing.T) {
	ctx := context.Background()
	s, keyFile := docusignSim(t, false)
	creds := []string{"--docusign-account-id", docusignfake.DefaultAccountID, "--docusign-integration-key", docusignfake.DefaultIntegrationKey,
		"--docusign-user-id", docusignfake.DefaultUserID, "--docusign-private-key-file", keyFile, "--docusign-auth-url", s.URL()}

	// Without credentials DocuSign is off; the simulator's default URL is on.
	if got := parse(t, true).Enabled(); !slices.Equal(got, []string{"sim"}) {
		t.Errorf("enabled with no flags: %v, want [sim]", got)
	}
	// dev runs the simulator itself: no --sim-url.
	if got := parse(t, false).Enabled(); len(got) != 0 {
		t.Errorf("enabled on dev with no flags: %v", got)
	}

	// Some credentials: the missing ones are named.
	_, err := parse(t, true, "--docusign-account-id", "x", "--sim-url", "").Open(ctx, registry.Options{Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "--docusign-integration-key, --docusign-user-id and --docusign-private-key-file") {
		t.Errorf("partial credentials: %v, want the missing flags named", err)
	}

	// All of them: the client is checked against the account at once.
	clients, err := parse(t, true, creds...).Open(ctx, registry.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range clients {
		names = append(names, n)
	}
	sort.Strings(names)
	if !slices.Equal(names, []string{"docusign", "sim"}) {
		t.Errorf("clients %v, want docusign and sim", names)
	}

	// A key the account does not trust fails at start, naming the flags.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(bad, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)}), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append(slices.Clone(creds), "--docusign-private-key-file", bad)
	if _, err := parse(t, true, args...).Open(ctx, registry.Options{Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "--docusign-*") {
		t.Errorf("untrusted key: %v, want a start-up error naming the --docusign-* flags", err)
	}
}

// Before the user consents, DocuSign answers consent_required: the
// service stops at start with the consent URL to open.
func TestDocuSignWithoutConsent(t *testing.T) {
	s, keyFile := docusignSim(t, true)
	_, err := parse(t, true, "--docusign-account-id", docusignfake.DefaultAccountID, "--docusign-integration-key", docusignfake.DefaultIntegrationKey,
		"--docusign-user-id", docusignfake.DefaultUserID, "--docusign-private-key-file", keyFile, "--docusign-auth-url", s.URL()).
		Open(context.Background(), registry.Options{Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "consent") || !strings.Contains(err.Error(), "/oauth/auth") {
		t.Errorf("no consent: %v, want consent_required with the consent URL", err)
	}
}

// The simulator plays each provider it has a dialect for, and the
// provider's own client reaches it.
func TestSimulate(t *testing.T) {
	for _, name := range []string{"sim", "docusign", "dropboxsign"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			sd, err := registry.Simulate(name, registry.SimulateConfig{Dir: dir, SecretsDir: filepath.Join(dir, "secrets")})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "secrets", name)); err != nil {
				t.Errorf("no webhook secret written: %v", err)
			}
			cfg := sim.Config{Logger: quiet()}
			sd.Configure(&cfg)
			s := fakes.Sim(t, cfg)
			c, err := sd.Connect(s.URL(), 0, registry.Options{Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.ChangedSince(context.Background(), time.Now().Add(-time.Hour), ""); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := registry.Simulate("standard", registry.SimulateConfig{}); err == nil {
		t.Error("the simulator claims to play the webhooks-only provider standard")
	}
}
