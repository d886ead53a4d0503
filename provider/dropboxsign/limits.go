package dropboxsign

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/esignflow/esignflow/internal/promreg"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/apicall"
)

// window is Dropbox Sign's rate-limit window: its limits are per minute.
const window = time.Minute

// limits paces the Client's calls per tier and holds each tier's stop
// (after a 429, or an answer saying nothing remains). Safe for concurrent
// use.
type limits struct {
	pacers [2]*rate.Limiter // by tier; nil: not paced

	mu    sync.Mutex
	until [2]time.Time // by tier: no call before
}

// newLimits paces std standard and high high-tier calls a minute, in
// bursts of up to a minute's worth; a negative count is not paced.
func newLimits(std, high int) *limits {
	l := &limits{}
	for t, n := range []int{std, high} {
		if n > 0 {
			l.pacers[t] = rate.NewLimiter(rate.Every(window/time.Duration(n)), n)
		}
	}
	return l
}

// admit refuses a call, without making it, while its tier is stopped.
func (l *limits) admit(now time.Time, t tier) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.until[t]) {
		return &provider.RateLimitedError{RetryAfter: l.until[t].Sub(now)}
	}
	return nil
}

// pace waits for the tier's next slot. When ctx would end first, it gives
// the slot back and returns a RateLimitedError saying how long the wait
// is, so the caller can schedule the call rather than fail it.
func (l *limits) pace(ctx context.Context, t tier) error {
	p := l.pacers[t]
	if p == nil {
		return nil
	}
	r := p.Reserve()
	d := r.Delay()
	if d == 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		r.Cancel()
		return &provider.RateLimitedError{RetryAfter: d}
	}
	if err := apicall.Sleep(ctx, d, nil); err != nil {
		r.Cancel()
		return err
	}
	return nil
}

// resetAt reads X-Ratelimit-Reset (Unix seconds; the spec writes it with a
// lowercase l, and http.Header.Get finds either casing): the reset when it
// lies in the next hour, false otherwise.
func resetAt(now time.Time, h http.Header) (time.Time, bool) {
	s, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-Ratelimit-Reset")), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	t := time.Unix(s, 0)
	return t, t.After(now) && t.Sub(now) <= time.Hour+time.Minute
}

// stop stops the tier's calls until the reset the answer's headers give
// (X-Ratelimit-Reset, else Retry-After seconds, else one window) and
// returns when they may start again.
func (l *limits) stop(now time.Time, t tier, h http.Header) time.Time {
	until, ok := resetAt(now, h)
	if !ok {
		until = now.Add(window)
		if s, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After"))); err == nil && s > 0 {
			until = now.Add(time.Duration(s) * time.Second)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if until.After(l.until[t]) {
		l.until[t] = until
	}
	return l.until[t]
}

// observe reads the rate-limit headers of every answer: when
// X-RateLimit-Remaining says 0, the tier stops until the reset (a 429
// stops it in classify). The headers are recorded in m.
func (l *limits) observe(m *metrics, now time.Time, t tier, status int, h http.Header) {
	m.rateHeaders(t, h)
	if status == http.StatusTooManyRequests {
		return
	}
	if rem, err := strconv.Atoi(strings.TrimSpace(h.Get("X-RateLimit-Remaining"))); err == nil && rem <= 0 {
		l.stop(now, t, h)
	}
}

// metrics are the Client's: the call metrics every provider client shares
// (provider.CallMetrics), and Dropbox Sign's declared limits by tier.
type metrics struct {
	*provider.CallMetrics
	limit     *prometheus.GaugeVec // tier
	remaining *prometheus.GaugeVec // tier
	reset     *prometheus.GaugeVec // tier
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	calls, err := provider.NewCallMetrics(reg)
	if err != nil {
		return nil, err
	}
	m := &metrics{
		CallMetrics: calls,
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "esignflow_dropboxsign_ratelimit_limit",
			Help: "Dropbox Sign's call limit as its last answer of the tier declared it (X-RateLimit-Limit), by tier (standard, high)."},
			[]string{"tier"}),
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "esignflow_dropboxsign_ratelimit_remaining",
			Help: "Calls left in the window as Dropbox Sign's last answer of the tier declared it (X-RateLimit-Remaining), by tier."},
			[]string{"tier"}),
		reset: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "esignflow_dropboxsign_ratelimit_reset_seconds",
			Help: "When the tier's window resets, Unix seconds (X-Ratelimit-Reset), by tier."},
			[]string{"tier"}),
	}
	for _, err := range []error{promreg.Register(reg, &m.limit), promreg.Register(reg, &m.remaining), promreg.Register(reg, &m.reset)} {
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) rateHeaders(t tier, h http.Header) {
	if m == nil {
		return
	}
	for _, x := range []struct {
		g      *prometheus.GaugeVec
		header string
	}{{m.limit, "X-RateLimit-Limit"}, {m.remaining, "X-RateLimit-Remaining"}, {m.reset, "X-Ratelimit-Reset"}} {
		if v, err := strconv.ParseFloat(strings.TrimSpace(h.Get(x.header)), 64); err == nil {
			x.g.WithLabelValues(t.String()).Set(v)
		}
	}
}
