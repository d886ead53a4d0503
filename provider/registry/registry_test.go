package registry_test

import (
	"errors"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/esignflow/esignflow/provider/registry"
)

const module = "github.com/esignflow/esignflow/"

// TestOnlyTheRegistryNamesProviders keeps DESIGN.md's rule: nothing
// outside provider/ names a provider. The components and the shared
// machinery import no provider package but the registry and hold no
// provider's name as a string; the assembled system and the CLI, which
// run the simulator, may import its engine (provider/sim) too, and name
// it, but no other provider.
func TestOnlyTheRegistryNamesProviders(t *testing.T) {
	root := "../.."
	names := registry.Names()
	// Files that are about one provider's protocol, with why.
	exempt := map[string]string{
		"cmd/esignflow/sim.go":      "the simulator's own command: its --dialect flags configure each dialect",
		"internal/bench/ingress.go": "a micro-benchmark of the ingress on the simulator's Standard Webhooks",
	}
	assembled := []string{"cmd/esignflow", "internal/stack", "internal/bench", "internal/fakes"}
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "provider" || strings.HasPrefix(rel, ".") && rel != "." || rel == "interop" || rel == "deploy" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") || exempt[rel] != "" {
			return nil
		}
		isAssembled := slices.ContainsFunc(assembled, func(p string) bool { return strings.HasPrefix(rel, p+"/") })
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			sub, ok := strings.CutPrefix(p, module+"provider/")
			if !ok || sub == "registry" || (isAssembled && sub == "sim") {
				continue
			}
			t.Errorf("%s imports %s: go through provider/registry", rel, p)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range names {
			if isAssembled && n == registry.Default() {
				continue // the simulator, which they run
			}
			if strings.Contains(string(raw), strconv.Quote(n)) {
				t.Errorf("%s names provider %q: take it from provider/registry", rel, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d files: is the walk rooted at the module?", checked)
	}
}

func TestNotEnabled(t *testing.T) {
	for _, tt := range []struct {
		name string
		want []string
	}{
		{"docusign", []string{`"docusign" is not enabled`, "--docusign-account-id", "--docusign-integration-key", "--docusign-user-id", "--docusign-private-key-file"}},
		{"dropboxsign", []string{`"dropboxsign" is not enabled`, "--dropboxsign-api-key-file"}},
		{"standard", []string{`"standard" has webhooks only`}},
		{"acme-sign", []string{`unknown provider "acme-sign"`, "sim, docusign"}},
	} {
		err := registry.NotEnabled(tt.name)
		if !errors.Is(err, registry.ErrNotEnabled) {
			t.Errorf("%s: %v does not wrap ErrNotEnabled", tt.name, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q, want it to say %q", tt.name, err, w)
			}
		}
	}
}

func TestRegistry(t *testing.T) {
	if got, want := registry.Names(), []string{"sim", "docusign", "dropboxsign", "standard"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	if got, want := registry.Dialects(), []string{"standard", "docusign", "dropboxsign"}; !slices.Equal(got, want) {
		t.Errorf("Dialects() = %v, want %v", got, want)
	}
	hooks := registry.Webhooks()
	for _, n := range registry.Names() {
		if hooks[n] == nil {
			t.Errorf("no webhook scheme for %s", n)
		}
	}
	if p, _ := registry.ByDialect("docusign"); p.Name != "docusign" || p.MinPollInterval.Minutes() != 15 || !p.HasAPI() {
		t.Errorf("docusign: %+v", p)
	}
	if p, _ := registry.ByDialect("dropboxsign"); p.Name != "dropboxsign" || !p.HasAPI() {
		t.Errorf("dropboxsign: %+v", p)
	}
	if p, _ := registry.Lookup("standard"); p.HasAPI() || p.Dialect != "" {
		t.Errorf("standard has an API client or a dialect: %+v", p)
	}
	if k, err := registry.DecodeSecret("docusign", "c2VjcmV0"); err != nil || string(k) != "c2VjcmV0" {
		t.Errorf("docusign HMAC key decoded to %q, %v; want its bytes as they are", k, err)
	}
	if k, err := registry.DecodeSecret("sim", "whsec_c2VjcmV0"); err != nil || string(k) != "secret" {
		t.Errorf("sim secret decoded to %q, %v", k, err)
	}
	if _, err := registry.DecodeSecret("sim", "secret"); err == nil {
		t.Error("a sim secret without whsec_ was taken")
	}
}
