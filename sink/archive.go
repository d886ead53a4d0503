package sink

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Archive stores finalised envelopes' files. Names are slash-separated
// relative paths ("sha256/<hex>", "manifests/<envelope>/<version>.json").
// Implementations must make Put atomic (a reader sees the whole file or
// none) and idempotent (putting the same name twice is no error). An
// S3-compatible bucket is a matter of implementing these three methods and
// passing TestArchiveConformance.
type Archive interface {
	// Put stores data under name and returns its location.
	Put(ctx context.Context, name string, data []byte) (string, error)
	// Get returns what name holds, or an error wrapping fs.ErrNotExist.
	Get(ctx context.Context, name string) ([]byte, error)
	// Exists reports whether name is stored.
	Exists(ctx context.Context, name string) (bool, error)
}

// Dir is an Archive in a local directory: every file is written to a
// temporary file, fsynced, renamed into place, and the directory fsynced.
type Dir struct{ Root string }

func (d Dir) path(name string) (string, error) {
	clean := filepath.Clean(filepath.FromSlash(name))
	if name == "" || filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("archive: name %q escapes the archive", name)
	}
	return filepath.Join(d.Root, clean), nil
}

// Put writes data atomically under name.
func (d Dir) Put(_ context.Context, name string, data []byte) (string, error) {
	p, err := d.path(name)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("archive: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("archive: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", fmt.Errorf("archive: write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("archive: fsync %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("archive: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", fmt.Errorf("archive: rename into %s: %w", name, err)
	}
	if df, err := os.Open(dir); err == nil {
		_ = df.Sync()
		df.Close()
	}
	return "file://" + p, nil
}

// Get reads name.
func (d Dir) Get(_ context.Context, name string) ([]byte, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	return b, nil
}

// Exists reports whether name is stored.
func (d Dir) Exists(_ context.Context, name string) (bool, error) {
	p, err := d.path(name)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(p)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("archive: %w", err)
	}
}

// Checker is implemented by an Archive that can tell whether it is able to
// store right now; Sink.Ready asks it.
type Checker interface {
	// Check returns nil when a Put would be allowed to write.
	Check(ctx context.Context) error
}

// Check creates and removes a temporary file in the archive's root (made
// if missing), so that a directory the process cannot write — a root-owned
// volume under a non-root user, a read-only mount, a full disk — is seen
// before the first envelope needs it.
func (d Dir) Check(context.Context) error {
	if err := os.MkdirAll(d.Root, 0o750); err != nil {
		return fmt.Errorf("archive %s: %w", d.Root, err)
	}
	f, err := os.CreateTemp(d.Root, ".probe-*")
	if err != nil {
		return fmt.Errorf("archive %s is not writable: %w", d.Root, err)
	}
	name := f.Name()
	_, werr := f.Write([]byte{0})
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(werr, cerr, rerr); err != nil {
		return fmt.Errorf("archive %s is not writable: %w", d.Root, err)
	}
	return nil
}
