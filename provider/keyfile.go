package provider

import (
	"fmt"
	"os"
	"sync"
)

// KeyFile is a provider credential (an API key, a private key) read from a
// file and re-read when the file changes — by size and modification time,
// as a rotated Kubernetes secret or a Vault Agent template does — so that
// it is rotated without a restart. Safe for concurrent use. Its errors name
// the file, never the key.
type KeyFile[T any] struct {
	path, what string
	parse      func(raw []byte) (T, error)

	mu    sync.Mutex
	key   T
	stamp string // size and modification time of the file last loaded
}

// OpenKeyFile reads the credential at path with parse; what names it in
// errors ("docusign: private key").
func OpenKeyFile[T any](path, what string, parse func(raw []byte) (T, error)) (*KeyFile[T], error) {
	k := &KeyFile[T]{path: path, what: what, parse: parse}
	if err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

func fileStamp(path string) (string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d:%d", info.Size(), info.ModTime().UnixNano()), nil
}

// Changed reports whether the file differs from the one last loaded.
func (k *KeyFile[T]) Changed() bool {
	stamp, err := fileStamp(k.path)
	k.mu.Lock()
	defer k.mu.Unlock()
	return err == nil && stamp != k.stamp
}

// Reload reads and parses the file; on error the credential in use stays.
func (k *KeyFile[T]) Reload() error {
	stamp, err := fileStamp(k.path)
	if err != nil {
		return fmt.Errorf("%s: %w", k.what, err)
	}
	raw, err := os.ReadFile(k.path)
	if err != nil {
		return fmt.Errorf("%s: %w", k.what, err)
	}
	key, err := k.parse(raw)
	if err != nil {
		return fmt.Errorf("%s %s: %w", k.what, k.path, err)
	}
	k.mu.Lock()
	k.key, k.stamp = key, stamp
	k.mu.Unlock()
	return nil
}

// Get returns the credential, re-reading the file first when it changed;
// the error says why a changed file was not taken (the previous credential
// is still returned).
func (k *KeyFile[T]) Get() (T, error) {
	var err error
	if k.Changed() {
		err = k.Reload()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.key, err
}
