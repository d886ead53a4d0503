// Package secrets holds webhook secrets read from a directory: one file per
// provider, named as in the URL (sim, standard, docusign, dropboxsign), one
// secret per line. Several lines are several active secrets, which is how a
// secret rotates without a restart: add the new one, let senders switch,
// remove the old. Files are re-read on SIGHUP and when they change.
package secrets

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/esignflow/esignflow/internal/reload"
)

// Decoder turns one line of a provider's file into key bytes.
type Decoder func(provider, line string) ([]byte, error)

// Dir is a reloadable directory of secrets. Keys is safe for concurrent use
// with Reload.
type Dir struct {
	path   string
	decode Decoder
	log    *slog.Logger

	mu    sync.RWMutex
	keys  map[string][][]byte
	stamp string // sizes and mtimes of the files last loaded
}

// Open loads the directory. decode may be nil (lines used as-is).
func Open(path string, decode Decoder, log *slog.Logger) (*Dir, error) {
	if decode == nil {
		decode = func(_, line string) ([]byte, error) { return []byte(line), nil }
	}
	if log == nil {
		log = slog.Default()
	}
	d := &Dir{path: path, decode: decode, log: log.With("component", "secrets")}
	if err := d.Reload(); err != nil {
		return nil, err
	}
	return d, nil
}

// Keys returns the active keys of a provider; the caller must not modify
// them.
func (d *Dir) Keys(provider string) [][]byte {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.keys[provider]
}

// Providers returns how many keys each provider has (for logs: never the
// keys).
func (d *Dir) Providers() map[string]int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make(map[string]int, len(d.keys))
	for p, k := range d.keys {
		out[p] = len(k)
	}
	return out
}

// Reload re-reads every file. On any error the keys in use are kept.
//
// A provider's file that exists but holds no key keeps that provider's
// keys in use: an editor or a plain `echo >` truncates a file before it
// writes it, and a reload that lands in between must not make every
// webhook of that provider a 401. Removing the file is how a provider's
// secrets are withdrawn.
func (d *Dir) Reload() error {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return fmt.Errorf("secrets: read %s: %w", d.path, err)
	}
	keys := map[string][][]byte{}
	var stamp strings.Builder
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("secrets: %w", err)
		}
		if info.Mode().Type()&fs.ModeSymlink == 0 && !info.Mode().IsRegular() {
			continue
		}
		fmt.Fprintf(&stamp, "%s:%d:%d;", e.Name(), info.Size(), info.ModTime().UnixNano())
		raw, err := os.ReadFile(filepath.Join(d.path, e.Name()))
		if err != nil {
			return fmt.Errorf("secrets: %w", err)
		}
		for i, line := range strings.Split(string(raw), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, err := d.decode(e.Name(), line)
			if err != nil {
				return fmt.Errorf("secrets: %s line %d: %w", e.Name(), i+1, err)
			}
			keys[e.Name()] = append(keys[e.Name()], k)
		}
		if len(keys[e.Name()]) == 0 {
			if prev := d.Keys(e.Name()); len(prev) > 0 {
				d.log.Warn("secrets file holds no secret (being rewritten?); keeping the previous ones until it does", "provider", e.Name())
				keys[e.Name()] = prev
			}
		}
	}
	d.mu.Lock()
	d.keys, d.stamp = keys, stamp.String()
	d.mu.Unlock()
	return nil
}

// Changed reports whether a file was added, removed or rewritten since the
// last load (by size and modification time).
func (d *Dir) Changed() bool {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return false
	}
	var stamp strings.Builder
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if info, err := e.Info(); err == nil {
			fmt.Fprintf(&stamp, "%s:%d:%d;", e.Name(), info.Size(), info.ModTime().UnixNano())
		}
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	return stamp.String() != d.stamp
}

// Run reloads on SIGHUP and whenever a file changes (checked every
// interval, default 2s), until ctx ends.
func (d *Dir) Run(ctx context.Context, interval time.Duration) error {
	return reload.Run(ctx, interval, d, "secrets", d.log, func() []any { return []any{"providers", d.Providers()} })
}
