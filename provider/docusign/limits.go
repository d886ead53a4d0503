package docusign

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/esignflow/esignflow/internal/promreg"
	"github.com/esignflow/esignflow/provider"
)

// limits holds the account's stop (after an hourly or burst limit answer)
// and the envelopes backed off after a per-envelope limit answer. Safe for
// concurrent use.
type limits struct {
	mu        sync.Mutex
	until     time.Time // no call before
	code      string
	envelopes map[string]envelopeBackoff
}

type envelopeBackoff struct {
	until time.Time
	code  string
}

// admit refuses a call, without making it, while the account is stopped
// or one of envs is backed off.
func (l *limits) admit(now time.Time, envs []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.until) {
		return &provider.RateLimitedError{RetryAfter: l.until.Sub(now)}
	}
	var limited []string
	var b envelopeBackoff
	for _, id := range envs {
		if e, ok := l.envelopes[id]; ok {
			if now.Before(e.until) {
				limited = append(limited, id)
				if e.until.After(b.until) {
					b = e
				}
			} else {
				delete(l.envelopes, id)
			}
		}
	}
	if len(limited) > 0 {
		return &EnvelopeLimitError{EnvelopeIDs: limited, Code: b.code, Until: b.until}
	}
	return nil
}

// stop stops every call until the reset the answer's headers give and
// returns it. X-RateLimit-Reset (Unix seconds) is used when it lies in the
// next hour; otherwise a burst waits its 30-second window, the hourly
// limit the top of the next hour, a bare 429 its Retry-After (default 1s).
func (l *limits) stop(now time.Time, code string, h http.Header) time.Time {
	var until time.Time
	if s, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-RateLimit-Reset")), 10, 64); err == nil {
		if t := time.Unix(s, 0); t.After(now) && t.Sub(now) <= time.Hour+time.Minute {
			until = t
		}
	}
	if until.IsZero() {
		switch code {
		case codeBurst:
			until = now.Add(30 * time.Second)
		case codeHourly:
			until = now.Truncate(time.Hour).Add(time.Hour)
		default:
			wait := time.Second
			if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s > 0 {
				wait = time.Duration(s) * time.Second
			}
			until = now.Add(wait)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if until.After(l.until) {
		l.until, l.code = until, code
	}
	return l.until
}

// backOff leaves envs alone until until. Expired entries are pruned on the
// way, so the map holds only envelopes currently backed off.
func (l *limits) backOff(now time.Time, envs []string, code string, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, e := range l.envelopes {
		if !now.Before(e.until) {
			delete(l.envelopes, id)
		}
	}
	for _, id := range envs {
		l.envelopes[id] = envelopeBackoff{until: until, code: code}
	}
}

// observe records the rate-limit headers of an answer.
func (l *limits) observe(m *metrics, h http.Header) {
	if m == nil {
		return
	}
	set := func(g *prometheus.GaugeVec, window, header string) {
		if v, err := strconv.ParseFloat(strings.TrimSpace(h.Get(header)), 64); err == nil {
			g.WithLabelValues("docusign", window).Set(v)
		}
	}
	set(m.limit, "hourly", "X-RateLimit-Limit")
	set(m.remaining, "hourly", "X-RateLimit-Remaining")
	set(m.limit, "burst", "X-BurstLimit-Limit")
	set(m.remaining, "burst", "X-BurstLimit-Remaining")
	if v, err := strconv.ParseFloat(strings.TrimSpace(h.Get("X-RateLimit-Reset")), 64); err == nil {
		m.reset.WithLabelValues("docusign").Set(v)
	}
}

// metrics are the Client's: the call metrics every provider client shares
// (provider.CallMetrics), and DocuSign's declared limits.
type metrics struct {
	*provider.CallMetrics
	limit      *prometheus.GaugeVec   // provider, window
	remaining  *prometheus.GaugeVec   // provider, window
	reset      *prometheus.GaugeVec   // provider
	envLimited *prometheus.CounterVec // provider, code
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	calls, err := provider.NewCallMetrics(reg)
	if err != nil {
		return nil, err
	}
	m := &metrics{
		CallMetrics: calls,
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "esignflow_provider_ratelimit_limit",
			Help: "The provider's call limit as its last answer declared it (DocuSign X-RateLimit-Limit, X-BurstLimit-Limit), by provider and window (hourly, burst)."},
			[]string{"provider", "window"}),
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "esignflow_provider_ratelimit_remaining",
			Help: "Calls left in the window as the provider's last answer declared it (DocuSign X-RateLimit-Remaining, X-BurstLimit-Remaining), by provider and window."},
			[]string{"provider", "window"}),
		reset: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "esignflow_provider_ratelimit_reset_seconds",
			Help: "When the provider's hourly call limit resets, Unix seconds (DocuSign X-RateLimit-Reset), by provider."},
			[]string{"provider"}),
		envLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_provider_envelope_limited_total",
			Help: "Answers refusing a call because one envelope was polled or changed too often, by provider and error code."},
			[]string{"provider", "code"}),
	}
	for _, err := range []error{
		promreg.Register(reg, &m.limit), promreg.Register(reg, &m.remaining), promreg.Register(reg, &m.reset),
		promreg.Register(reg, &m.envLimited),
	} {
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) envelopeLimited(code string) {
	if m != nil {
		m.envLimited.WithLabelValues("docusign", code).Inc()
	}
}
