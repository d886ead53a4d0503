package dropboxsignfake

import (
	"net/http"
	"strconv"
	"time"
)

// tier is the rate-limit class of a call (PROVIDER-APIS.md 2.6).
type tier int

const (
	standardTier tier = iota
	highTier          // send, files
	testModeTier      // a send with test_mode
	tiers
)

func (d *Dialect) limit(t tier) int {
	switch t {
	case highTier:
		return d.cfg.HighTierLimit
	case testModeTier:
		return d.cfg.TestModeLimit
	}
	return d.cfg.StandardLimit
}

// admit counts one call against its tier's window, sets the rate-limit
// headers and, past the limit, answers 429 exceeded_rate and returns
// false. count false sets the headers without counting (a call refused
// before it reaches the API, such as a 401).
func (d *Dialect) admit(w http.ResponseWriter, t tier, now time.Time, count bool) bool {
	limit := d.limit(t)
	d.mu.Lock()
	win := d.windows[t].At(now, d.cfg.RateWindow)
	over := count && win.N >= limit
	if count && !over {
		win.N++
	}
	remaining := max(0, limit-win.N)
	reset := win.Reset(d.cfg.RateWindow)
	d.mu.Unlock()
	// The spec's exact names, X-Ratelimit-Reset with its lower-case l:
	// set on the map directly, as Header.Set would canonicalise them.
	h := w.Header()
	h["X-RateLimit-Limit"] = []string{strconv.Itoa(limit)}
	h["X-RateLimit-Remaining"] = []string{strconv.Itoa(remaining)}
	h["X-Ratelimit-Reset"] = []string{strconv.FormatInt(reset, 10)}
	if over {
		d.stats.rateLimited.Add(1)
		writeError(w, http.StatusTooManyRequests, "exceeded_rate", "Too many requests.", "")
		return false
	}
	return true
}
