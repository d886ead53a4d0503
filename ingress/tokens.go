package ingress

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/esignflow/esignflow/internal/reload"
)

// MinTokenLen is the shortest API token a tokens file may hold.
const MinTokenLen = 16

// tenantName is what a tenant may be called in a tokens file.
var tenantName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// TokenFile is a reloadable API tokens file: one "TOKEN TENANT" pair per
// line, blank lines and lines starting with # ignored. Several lines may
// name one tenant, which is how a token rotates without a restart: add the
// new one, switch the callers, remove the old. Tenant is safe for
// concurrent use with Reload and Run.
type TokenFile struct {
	path string
	log  *slog.Logger

	mu     sync.RWMutex
	tokens []tokenEntry
	stamp  string // size and mtime of the file last loaded
}

// tokenEntry keeps a token's digest, never the token: comparing digests
// of equal length in constant time says nothing of a token's length or of
// how much of it matched.
type tokenEntry struct {
	digest [sha256.Size]byte
	tenant string
}

// OpenTokens loads the tokens file at path.
func OpenTokens(path string, log *slog.Logger) (*TokenFile, error) {
	if log == nil {
		log = slog.Default()
	}
	f := &TokenFile{path: path, log: log.With("component", "api-tokens")}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Tenant returns the tenant of token, comparing it with every known token
// in constant time.
func (f *TokenFile) Tenant(token string) (string, bool) {
	d := sha256.Sum256([]byte(token))
	f.mu.RLock()
	defer f.mu.RUnlock()
	tenant, found := "", 0
	for _, e := range f.tokens {
		if subtle.ConstantTimeCompare(d[:], e.digest[:]) == 1 {
			tenant, found = e.tenant, 1
		}
	}
	return tenant, found == 1
}

// Tenants returns how many tokens each tenant has (for logs: never the
// tokens).
func (f *TokenFile) Tenants() map[string]int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := map[string]int{}
	for _, e := range f.tokens {
		out[e.tenant]++
	}
	return out
}

// Reload re-reads the file. On any error the tokens in use are kept, and
// so they are when the file holds no token at all: an editor truncates a
// file before it writes it, and a reload in between must not lock every
// caller out.
func (f *TokenFile) Reload() error {
	info, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("api tokens: %w", err)
	}
	raw, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("api tokens: %w", err)
	}
	tokens, err := parseTokens(string(raw))
	if err != nil {
		return fmt.Errorf("api tokens %s: %w", f.path, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stamp = stampOf(info)
	if len(tokens) == 0 && len(f.tokens) > 0 {
		f.log.Warn("api tokens file holds no token (being rewritten?); keeping the previous ones until it does", "path", f.path)
		return nil
	}
	f.tokens = tokens
	return nil
}

func parseTokens(text string) ([]tokenEntry, error) {
	var out []tokenEntry
	seen := map[[sha256.Size]byte]bool{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) != 2:
			return nil, fmt.Errorf("line %d: want TOKEN TENANT", i+1)
		case len(fields[0]) < MinTokenLen:
			return nil, fmt.Errorf("line %d: the token is shorter than %d characters", i+1, MinTokenLen)
		case !tenantName.MatchString(fields[1]):
			return nil, fmt.Errorf("line %d: tenant %q is not letters, digits, '.', '_' and '-'", i+1, fields[1])
		}
		d := sha256.Sum256([]byte(fields[0]))
		if seen[d] {
			return nil, fmt.Errorf("line %d: the token is repeated", i+1)
		}
		seen[d] = true
		out = append(out, tokenEntry{digest: d, tenant: fields[1]})
	}
	return out, nil
}

func stampOf(info os.FileInfo) string {
	return fmt.Sprintf("%d:%d", info.Size(), info.ModTime().UnixNano())
}

// Changed reports whether the file was rewritten since the last load.
func (f *TokenFile) Changed() bool {
	info, err := os.Stat(f.path)
	if err != nil {
		return false
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return stampOf(info) != f.stamp
}

// Run reloads on SIGHUP and whenever the file changes (checked every
// interval, default 2s), until ctx ends.
func (f *TokenFile) Run(ctx context.Context, interval time.Duration) error {
	return reload.Run(ctx, interval, f, "api tokens", f.log, func() []any { return []any{"tenants", f.Tenants()} })
}

// errNoToken and errBadToken are why a request was not authenticated.
var (
	errNoToken  = errors.New("an Authorization: Bearer token is required")
	errBadToken = errors.New("the bearer token is not valid")
)

// authenticate returns the tenant a request acts for: the token's, or ""
// (any tenant) with InsecureNoAuth.
func (in *Ingress) authenticate(r *http.Request) (string, error) {
	if in.cfg.Tokens == nil {
		if in.cfg.InsecureNoAuth {
			return "", nil
		}
		return "", errors.New("no API tokens are configured")
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", errNoToken
	}
	tenant, ok := in.cfg.Tokens.Tenant(strings.TrimSpace(token))
	if !ok {
		return "", errBadToken
	}
	return tenant, nil
}

// authenticated runs h with the request's tenant, or answers 401.
func (in *Ingress) authenticated(endpoint string, h func(w http.ResponseWriter, r *http.Request, tenant string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tenant, err := in.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="esignflow"`)
			in.problem(w, r, endpoint, http.StatusUnauthorized, err.Error(), nil)
			return
		}
		h(w, r, tenant)
	}
}

// EnsureTokenFile returns a token of tenant from the tokens file at path,
// first creating the file (mode 0600) with one fresh random token for
// tenant when it does not exist. esignflow dev uses it for its data
// directory.
func EnsureTokenFile(path, tenant string) (string, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		token := "esf_" + hex.EncodeToString(b)
		text := fmt.Sprintf("# esignflow API tokens: one 'TOKEN TENANT' pair per line.\n%s %s\n", token, tenant)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return "", fmt.Errorf("api tokens: %w", err)
		}
		return token, nil
	}
	if err != nil {
		return "", fmt.Errorf("api tokens: %w", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(f[0], "#") && f[1] == tenant {
			return f[0], nil
		}
	}
	return "", fmt.Errorf("api tokens %s: no token for tenant %q", path, tenant)
}
