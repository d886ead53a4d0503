package secrets_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/secrets"
)

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRotationAndReload(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "docusign", "# comment\nold-key\n\n")
	upper := func(_, line string) ([]byte, error) {
		if strings.Contains(line, "bad") {
			return nil, errors.New("bad line")
		}
		return []byte(line), nil
	}
	d, err := secrets.Open(dir, upper, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Keys("docusign"); len(got) != 1 || string(got[0]) != "old-key" {
		t.Fatalf("keys = %q", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, 10*time.Millisecond) }()
	defer func() { cancel(); <-done }()

	write(t, dir, "docusign", "old-key\nnew-key\n") // rotation: both active
	waitKeys(t, d, "docusign", 2)
	write(t, dir, "docusign", "new-key\nbad\n") // a broken file keeps the old keys
	if err := d.Reload(); err == nil {
		t.Fatal("a bad line reloaded without error")
	}
	if got := d.Keys("docusign"); len(got) != 2 {
		t.Fatalf("a bad file replaced the keys: %q", got)
	}
	write(t, dir, "docusign", "new-key-only\n")
	waitKeys(t, d, "docusign", 1)
	if got := d.Keys("docusign"); string(got[0]) != "new-key-only" {
		t.Fatalf("keys = %q", got)
	}
}

// A file caught between its truncation and its new contents (a reload
// racing a plain rewrite) keeps the keys in use; removing it withdraws them.
func TestEmptiedFileKeepsKeys(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "docusign", "k1\nk2\n")
	d, err := secrets.Open(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "docusign", "")
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := d.Keys("docusign"); len(got) != 2 {
		t.Fatalf("an emptied file left %d keys, want the 2 in use", len(got))
	}
	write(t, dir, "docusign", "k3\n")
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := d.Keys("docusign"); len(got) != 1 || string(got[0]) != "k3" {
		t.Fatalf("after the rewrite: %q", got)
	}
	if err := os.Remove(filepath.Join(dir, "docusign")); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := d.Keys("docusign"); len(got) != 0 {
		t.Fatalf("a removed file left keys: %q", got)
	}
}

func waitKeys(t *testing.T, d *secrets.Dir, p string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(d.Keys(p)) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d keys, want %d", p, len(d.Keys(p)), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOpenMissingDir(t *testing.T) {
	if _, err := secrets.Open(filepath.Join(t.TempDir(), "nope"), nil, nil); err == nil {
		t.Fatal("no error for a missing directory")
	}
}
