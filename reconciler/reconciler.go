// Package reconciler is the polling fallback that repairs whatever the
// webhooks missed. "Your architecture must assume that a webhook might never
// arrive": every interval it takes the envelopes that are not settled — in
// flight, or terminal with a conflict between their sources — and not
// updated for longer than the expected turnaround, polls the provider for
// each — within one rate budget per provider account shared by every
// replica, and at most once per envelope per minimum interval, across
// every replica — and publishes each answer to esignflow.events.v1 as a
// POLL event. It never writes envelope state: the processor applies poll
// answers like any other event, so a poll that confirms what is known
// changes nothing, one that finds a missed transition repairs it, and one
// that answers for a conflicted envelope settles it.
//
// A "not found" is not a verdict: providers' indexes lag behind their
// writes. The reconciler records when the provider first did not know an
// envelope, keeps polling it, and publishes it as FAILED only once the
// provider has not known it for Config.NotFoundAfter.
package reconciler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/esignflow/esignflow/internal/compression"
	"github.com/esignflow/esignflow/internal/kafkalog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/ratebudget"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

// Poller reads an envelope's status at its provider.
type Poller interface {
	Get(ctx context.Context, id string) (provider.Envelope, error)
}

// BatchPoller is a Poller whose provider answers for many envelopes in one
// call (DocuSign's listStatusChanges with envelope_ids). The reconciler
// uses GetMany for such a provider, one rate-budget token per call of up
// to Config.BatchSize envelopes. GetMany leaves out the envelopes the
// provider does not know (each counts as a "not found" answer); with an
// error it may still return the envelopes it read (the others are polled
// again later).
type BatchPoller interface {
	Poller
	GetMany(ctx context.Context, ids []string) ([]provider.Envelope, error)
}

// Accounter is a Poller that names the provider account it calls as, a
// stable id that is not a secret (e.g. "docusign:<account id>"). Providers
// limit calls per account, so the reconciler keys its shared rate budget
// by it: every replica, and every provider name configured with the same
// account, spends one budget. A Poller without it, or whose Account is "",
// is budgeted under its provider name.
type Accounter interface {
	Account() string
}

// Config configures a Reconciler. Brokers, Codec, Store and Pollers are
// required.
type Config struct {
	Brokers   []string
	KafkaOpts []kgo.Opt
	Codec     *schemas.Codec
	// Store is the processor's store: its index of envelopes not settled
	// (in flight, or terminal with a conflict) is what gets polled, and
	// leases, not-found records and the rate budgets live beside it.
	Store *store.Store
	// Pollers by provider name.
	Pollers map[string]Poller
	// StaleAfter is the expected turnaround: an envelope not updated for
	// longer is polled. Default 1h.
	StaleAfter time.Duration
	// Interval between scans, default 1m.
	Interval time.Duration
	// MinPollInterval is the least time between two polls of one envelope,
	// by any replica, default 15m.
	MinPollInterval time.Duration
	// PollIntervals overrides MinPollInterval for the envelopes of the
	// providers it names (a provider's own polling rule, from the
	// registry).
	PollIntervals map[string]time.Duration
	// BatchSize bounds the envelopes asked about in one GetMany call,
	// default 100.
	BatchSize int
	// Rate is the provider calls per hour allowed per provider account,
	// default DefaultRate, with bursts of Burst (default DefaultBurst). A
	// token bucket grants up to Rate + Burst calls within any hour, so the
	// defaults keep the reconciler to 2,100 calls of an account's hour,
	// leaving the rest of a provider's hourly limit (3,000 at the
	// strictest) to creates and downloads. The budget is a
	// token bucket held in the store's Redis (one key per account,
	// <prefix>budget:<account>, clocked by Redis TIME), shared by every
	// replica: N replicas together make at most Rate calls an hour, not N
	// times Rate. A batch call (GetMany) takes one token. When Redis cannot
	// be asked for a token the scan stops and polls nothing more: polling
	// without the shared budget could spend it once per replica, and the
	// provider's answer to that (a throttled account) also stops the
	// account's other calls.
	Rate  float64
	Burst int
	// NotFoundAfter is how long the provider must not have known an
	// envelope before the reconciler publishes it as FAILED, default 1h:
	// a single "not found" is not a verdict, since providers' indexes lag
	// behind their writes (an envelope just created or corrected can be
	// unknown to a read for a while). Until then the envelope is polled
	// as usual, and the time it was first not found is kept in Redis
	// beside the index (store.MarkMissing), forgotten when the provider
	// answers for it again or it settles. Losing that record (a restore, a
	// Redis flush) only delays the verdict: the wait starts over.
	NotFoundAfter time.Duration
	// ScanLimit bounds the envelopes taken per scan, default 1000.
	ScanLimit int
	// InFlightEvery is how often the envelopes in flight are counted by
	// status (esignflow_envelopes_in_flight), default 1m; negative never.
	// Each count reads every non-terminal envelope from Redis, in pages.
	InFlightEvery time.Duration
	// InstanceID names this replica in its leases, default random.
	InstanceID string
	Metrics    prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock, default time.Now.
	Now func() time.Time
}

// The rate budget's defaults: calls an hour per provider account, and the
// burst.
const (
	DefaultRate  = 2000
	DefaultBurst = 100
)

// Validate reports the first missing or invalid field.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("reconciler: Brokers is required")
	case c.Codec == nil || c.Store == nil:
		return errors.New("reconciler: Codec and Store are required")
	case len(c.Pollers) == 0:
		return errors.New("reconciler: at least one Poller is required")
	case c.Rate < 0 || c.Burst < 0:
		return errors.New("reconciler: Rate and Burst must not be negative")
	case c.NotFoundAfter < 0:
		return errors.New("reconciler: NotFoundAfter must not be negative")
	}
	return nil
}

func (c *Config) defaults() {
	if c.StaleAfter <= 0 {
		c.StaleAfter = time.Hour
	}
	if c.Interval <= 0 {
		c.Interval = time.Minute
	}
	if c.MinPollInterval <= 0 {
		c.MinPollInterval = 15 * time.Minute
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	if c.NotFoundAfter <= 0 {
		c.NotFoundAfter = time.Hour
	}
	if c.ScanLimit <= 0 {
		c.ScanLimit = 1000
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.InFlightEvery == 0 {
		c.InFlightEvery = time.Minute
	}
	if c.InstanceID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		c.InstanceID = hex.EncodeToString(b[:])
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Reconciler polls stale envelopes. Create it with New, start it with Run.
type Reconciler struct {
	cfg Config
	log *slog.Logger
	// budgets are the rate budgets by provider name; names of one
	// account share one bucket.
	budgets map[string]*ratebudget.Bucket
	m       *metrics
	prod    *kgo.Client
}

type metrics struct {
	stale, polls, calls, repairs, waits, leased prometheus.Counter
	notFound, notFoundFailed, conflictPolls     prometheus.Counter
	errors                                      *prometheus.CounterVec
	lastScan                                    prometheus.Gauge
	inFlight                                    *prometheus.GaugeVec
	conflicted                                  prometheus.Gauge
}

// inFlightStatuses are the statuses an envelope in flight can have: every
// one but the terminal ones.
var inFlightStatuses = []schemas.Status{schemas.StatusCreated, schemas.StatusSent, schemas.StatusDelivered, schemas.StatusViewed, schemas.StatusPartiallySigned}

// New returns a Reconciler for cfg.
func New(cfg Config) (*Reconciler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	m := &metrics{
		stale:    prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_reconciler_stale_found_total", Help: "Stale envelopes found by scans."}),
		polls:    prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_reconciler_polls_total", Help: "Envelopes polled at their provider (a batch call polls many)."}),
		calls:    prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_reconciler_provider_calls_total", Help: "Provider calls made to poll, each one token of its account's shared rate budget (a batch call is one)."}),
		repairs:  prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_reconciler_repairs_total", Help: "Polls whose answer differs from the stored status: a missed transition found."}),
		waits:    prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_reconciler_rate_limit_waits_total", Help: "Provider calls that waited for their account's shared rate budget, and provider answers asking to wait (Retry-After)."}),
		leased:   prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_reconciler_leased_elsewhere_total", Help: "Stale envelopes skipped because a poll lease was held (polled recently, here or by another replica)."}),
		notFound: prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_reconciler_not_found_total", Help: "Poll answers saying the provider does not know an envelope: not a verdict until it has not known it for NotFoundAfter."}),
		notFoundFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_reconciler_not_found_failed_total",
			Help: "FAILED verdicts published for envelopes their provider had not known for NotFoundAfter (default 1h)."}),
		conflictPolls: prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_reconciler_conflict_polls_total",
			Help: "Polls of terminal envelopes whose sources disagreed (e.g. COMPLETED then DECLINED): the provider's answer settles them."}),
		errors:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_reconciler_errors_total", Help: "Poll and publish errors, by kind."}, []string{"kind"}),
		lastScan: prometheus.NewGauge(prometheus.GaugeOpts{Name: "esignflow_reconciler_last_scan_timestamp_seconds", Help: "When the last scan of the stale index succeeded (Unix time): alert when it falls behind the interval."}),
	}
	m.inFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "esignflow_envelopes_in_flight",
		Help: "Envelopes not terminal yet, by status (UNKNOWN: no status yet), counted from the store's index of non-terminal envelopes every InFlightEvery (default 1m) by each reconciler replica: every replica reports the same number, aggregate with max."},
		[]string{"status"})
	m.conflicted = prometheus.NewGauge(prometheus.GaugeOpts{Name: "esignflow_envelopes_conflicted",
		Help: "Terminal envelopes whose sources disagreed, polled until the provider's answer settles them, counted with esignflow_envelopes_in_flight (same caveats: aggregate with max)."})
	for _, c := range []prometheus.Collector{m.stale, m.polls, m.calls, m.repairs, m.waits, m.leased, m.notFound, m.notFoundFailed, m.conflictPolls, m.errors, m.lastScan, m.inFlight, m.conflicted} {
		if err := cfg.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("reconciler: metrics: %w", err)
		}
	}
	budgets, err := newBudgets(cfg)
	if err != nil {
		return nil, err
	}
	return &Reconciler{cfg: cfg, log: cfg.Logger.With("component", "reconciler", "instance", cfg.InstanceID), m: m,
		budgets: budgets}, nil
}

// newBudgets returns the rate budget of each poller's provider account,
// one bucket per account.
func newBudgets(cfg Config) (map[string]*ratebudget.Bucket, error) {
	byAccount := map[string]*ratebudget.Bucket{}
	out := make(map[string]*ratebudget.Bucket, len(cfg.Pollers))
	for name, p := range cfg.Pollers {
		account := AccountOf(name, p)
		b, ok := byAccount[account]
		if !ok {
			var err error
			b, err = ratebudget.New(ratebudget.Config{Client: cfg.Store.Client(), Key: cfg.Store.Key("budget:" + account),
				Rate: cfg.Rate / 3600, Burst: cfg.Burst})
			if err != nil {
				return nil, fmt.Errorf("reconciler: rate budget of %s: %w", name, err)
			}
			byAccount[account] = b
		}
		out[name] = b
	}
	return out, nil
}

// AccountOf is the account the poller of the provider called name spends
// the rate budget of: its Account (Accounter) when it has one, else name.
func AccountOf(name string, p Poller) string {
	if a, ok := p.(Accounter); ok {
		if acct := a.Account(); acct != "" {
			return acct
		}
	}
	return name
}

// Run checks Redis as the processor does (store.CheckServer), then scans
// every Interval until ctx ends; it returns after the scan in
// flight has published what it polled and released the leases it had not
// used.
func (r *Reconciler) Run(ctx context.Context) error {
	if err := r.cfg.Store.CheckAtStart(ctx, r.log); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("reconciler: %w", err)
	}
	prod, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(r.cfg.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.WithLogger(kafkalog.New(r.log)),
		compression.DefaultOpt(),
	}, r.cfg.KafkaOpts...)...)
	if err != nil {
		return fmt.Errorf("reconciler: kafka producer: %w", err)
	}
	defer prod.Close()
	r.prod = prod
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	var counted time.Time
	for {
		if err := r.Scan(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("scan failed", "err", err)
		}
		if r.cfg.InFlightEvery > 0 && time.Since(counted) >= r.cfg.InFlightEvery {
			counted = time.Now()
			if err := r.CountInFlight(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("counting the envelopes in flight failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Scan runs one scan: find stale envelopes that are not settled, lease
// them, poll within their accounts' rate budgets — in batches where the
// provider answers for many envelopes in one call (BatchPoller), one by
// one otherwise — and publish the answers, and the FAILED verdicts of
// envelopes the provider has not known for NotFoundAfter. A scan that
// cannot take a token from a budget (Redis unavailable) stops polling and
// returns the error, after publishing what it polled.
func (r *Reconciler) Scan(ctx context.Context) error {
	now := r.cfg.Now()
	stale, err := r.cfg.Store.Stale(ctx, now.Add(-r.cfg.StaleAfter), r.cfg.ScanLimit)
	if err != nil {
		return err
	}
	r.m.lastScan.Set(float64(now.UnixNano()) / 1e9)
	if len(stale) == 0 {
		return nil
	}
	r.m.stale.Add(float64(len(stale)))
	// The states first: an envelope's provider says how long its lease
	// lasts (the provider's polling rule).
	states, err := r.cfg.Store.EnvelopesOf(ctx, stale)
	if err != nil {
		return err
	}
	where := make(map[string]store.Stale, len(stale))
	ids := make([]string, 0, len(stale))
	ttlOf := make(map[string]time.Duration, len(stale))
	for _, s := range stale {
		st, ok := states[s.EnvelopeID]
		if !ok || store.Settled(st) {
			continue // settled since the index was read
		}
		where[s.EnvelopeID] = s
		ids = append(ids, s.EnvelopeID)
		ttlOf[s.EnvelopeID] = leaseFor(r.interval(st.State.Provider))
	}
	// renewed is when the leases were last taken or renewed, read before
	// the round trip: their TTLs run from no earlier than this.
	renewed := time.Now()
	leased, err := r.lease(ctx, ids, ttlOf)
	if err != nil {
		return err
	}
	r.m.leased.Add(float64(len(ids) - len(leased)))
	// No more per provider than its budget pays for within a lease: the
	// others are the next scan's.
	taken := map[string]int{}
	var over []string
	kept := leased[:0]
	for _, id := range leased {
		if name := states[id].State.Provider; taken[name] < r.scanCap(name) {
			taken[name]++
			kept = append(kept, id)
		} else {
			over = append(over, id)
		}
	}
	r.release(over)
	if leased = kept; len(leased) == 0 {
		return nil
	}
	// Leased envelopes by provider, in the order found.
	var order []string
	byProvider := map[string][]string{}
	for _, id := range leased {
		name := states[id].State.Provider
		if _, ok := byProvider[name]; !ok {
			order = append(order, name)
		}
		byProvider[name] = append(byProvider[name], id)
	}
	var (
		recs     []*kgo.Record
		unpolled []string
		missing  []store.Stale       // not known to their provider
		found    []store.Stale       // answered for
		lost     = map[string]bool{} // leases no longer this replica's
	)
	defer func() {
		recs = append(recs, r.verdicts(ctx, now, states, missing, found)...)
		r.release(unpolled)
		if len(recs) > 0 {
			if err := r.publish(ctx, recs); err != nil {
				r.m.errors.WithLabelValues("publish").Inc()
				r.log.Warn("publishing poll answers failed; they will be polled again after the lease", "err", err)
			}
		}
	}()
	answer := func(id string, pe provider.Envelope) {
		st := states[id]
		if st.State.Status == nil || *st.State.Status != pe.Status {
			r.m.repairs.Inc()
		}
		found = append(found, where[id])
		recs = append(recs, r.record(ctx, pollEvent(st, pe, now)))
	}
	notFound := func(id string) {
		r.m.notFound.Inc()
		missing = append(missing, where[id])
	}
	// rest is every leased id not polled yet from provider k's i'th on.
	rest := func(k, i int) []string {
		out := append([]string(nil), byProvider[order[k]][i:]...)
		for _, name := range order[k+1:] {
			out = append(out, byProvider[name]...)
		}
		return out
	}
	for k, name := range order {
		group := byProvider[name]
		poller := r.cfg.Pollers[name]
		if poller == nil {
			r.m.errors.WithLabelValues("no-poller").Add(float64(len(group)))
			continue
		}
		budget := r.budgets[name]
		bp, batched := poller.(BatchPoller)
		size := 1
		if batched {
			size = r.cfg.BatchSize
		}
		for i := 0; i < len(group); i += size {
			chunk := group[i:min(len(group), i+size)]
			if err := r.wait(ctx, budget); err != nil {
				unpolled = append(unpolled, rest(k, i)...)
				if ctx.Err() != nil {
					return nil
				}
				r.m.errors.WithLabelValues("budget").Inc()
				return fmt.Errorf("reconciler: provider %s: %w", name, err)
			}
			// The leases were taken when the scan began, and a scan may
			// wait for its budget longer than a lease lasts. A lease is
			// longer than its interval by a slack (leaseFor); once half of
			// it has passed, every lease of the scan not read yet is
			// renewed, in one round trip, so that each lease runs a whole
			// interval from the read it guards. An envelope whose lease
			// is no longer this replica's (lapsed, and another replica
			// took it) is that replica's to poll.
			if iv := r.interval(name); time.Since(renewed) > (leaseFor(iv)-iv)/2 {
				todo := slices.DeleteFunc(rest(k, i), func(id string) bool { return lost[id] })
				renewed = time.Now()
				kept, err := r.renew(ctx, todo, ttlOf)
				if err != nil {
					unpolled = append(unpolled, rest(k, i)...)
					if ctx.Err() != nil {
						return nil
					}
					r.m.errors.WithLabelValues("lease").Inc()
					return fmt.Errorf("reconciler: provider %s: %w", name, err)
				}
				r.m.leased.Add(float64(len(todo) - len(kept)))
				for _, id := range todo {
					lost[id] = true
				}
				for _, id := range kept {
					lost[id] = false
				}
			}
			if chunk = slices.DeleteFunc(slices.Clone(chunk), func(id string) bool { return lost[id] }); len(chunk) == 0 {
				continue
			}
			r.m.calls.Inc()
			r.m.polls.Add(float64(len(chunk)))
			for _, id := range chunk {
				if st := states[id]; st.Terminal() && st.State.Conflict != nil {
					r.m.conflictPolls.Inc()
				}
			}
			var envs []provider.Envelope
			if batched {
				envs, err = bp.GetMany(ctx, chunk)
			} else {
				var pe provider.Envelope
				if pe, err = poller.Get(ctx, chunk[0]); err == nil {
					envs = []provider.Envelope{pe}
				}
			}
			var rl *provider.RateLimitedError
			switch {
			case errors.As(err, &rl):
				// The provider's account limit: every replica waits,
				// through the account's budget.
				r.m.waits.Inc()
				r.m.errors.WithLabelValues("rate-limited").Inc()
				unpolled = append(unpolled, rest(k, i)...)
				r.log.Info("provider rate limit; pausing", "provider", name, "retry_after", rl.RetryAfter)
				if err := budget.Hold(ctx, rl.RetryAfter); err != nil {
					// This replica at least waits.
					r.log.Warn("could not pause the shared rate budget", "provider", name, "err", err)
					select {
					case <-ctx.Done():
					case <-time.After(rl.RetryAfter):
					}
				}
				return nil
			case !batched && errors.Is(err, provider.ErrNotFound):
				notFound(chunk[0])
				continue
			}
			got := make(map[string]bool, len(envs))
			for _, pe := range envs {
				if slices.Contains(chunk, pe.ID) && !got[pe.ID] {
					got[pe.ID] = true
					answer(pe.ID, pe)
				}
			}
			if err != nil {
				// A failed call, or envelopes the provider refuses to be
				// asked about for now (a per-envelope limit): what it did
				// answer is published, the rest is polled again later.
				r.m.errors.WithLabelValues("poll").Inc()
				r.log.Warn("poll failed", "provider", name, "envelopes", len(chunk), "answered", len(got), "err", err)
				for _, id := range chunk {
					if !got[id] {
						unpolled = append(unpolled, id)
					}
				}
				continue
			}
			for _, id := range chunk {
				if !got[id] {
					notFound(id)
				}
			}
		}
	}
	return nil
}

// verdicts records what a scan learnt about envelopes their provider did
// or did not know (store.MarkMissing) and returns the FAILED events of
// those it has not known for NotFoundAfter. When the record cannot be
// written no verdict is given this time: the envelopes are polled again.
func (r *Reconciler) verdicts(ctx context.Context, now time.Time, states map[string]envelope.Envelope, missing, found []store.Stale) []*kgo.Record {
	if len(missing) == 0 && len(found) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	since, err := r.cfg.Store.MarkMissing(ctx, now, missing, found)
	if err != nil {
		r.m.errors.WithLabelValues("not-found-record").Inc()
		r.log.Warn("recording envelopes their provider does not know failed; no verdict this time", "envelopes", len(missing), "err", err)
		return nil
	}
	var recs []*kgo.Record
	for _, m := range missing {
		first, ok := since[m.EnvelopeID]
		if !ok || now.Sub(first) < r.cfg.NotFoundAfter {
			continue
		}
		r.m.notFoundFailed.Inc()
		r.log.Info("provider has not known an envelope for too long; publishing FAILED", "envelope", m.EnvelopeID,
			"provider", states[m.EnvelopeID].State.Provider, "unknown_since", first, "not_found_after", r.cfg.NotFoundAfter)
		recs = append(recs, r.record(ctx, notFoundEvent(states[m.EnvelopeID], first, now)))
	}
	return recs
}

// scanCap is the most envelopes of the provider called name one scan
// takes: those its account's budget can pay for within one lease (its
// burst, and its rate over the lease), so that a scan does not lease more
// than it can read before the leases lapse. The scan renews its leases
// before they run short of a whole interval; an envelope whose lease
// lapsed while the scan waited for the budget is skipped, and reading the
// first ones again and again would starve the rest.
func (r *Reconciler) scanCap(name string) int {
	tokens := float64(r.cfg.Burst) + r.cfg.Rate/3600*leaseFor(r.interval(name)).Seconds()
	per := 1
	if _, ok := r.cfg.Pollers[name].(BatchPoller); ok {
		per = r.cfg.BatchSize
	}
	return max(1, int(tokens)) * per
}

// interval is the least time between two polls of one envelope of the
// provider called name.
func (r *Reconciler) interval(name string) time.Duration {
	if d, ok := r.cfg.PollIntervals[name]; ok && d > 0 {
		return d
	}
	return r.cfg.MinPollInterval
}

// leaseFor is how long an envelope is leased for a poll whose provider
// allows one read of it per interval. The lease is taken before the read,
// and the read leaves some time after: with a lease of exactly the
// interval, two reads could come closer than it by the difference (seen:
// 291ms apart for 300ms), which a provider such as DocuSign refuses. So the
// lease is longer by a fiftieth, at least 100ms.
func leaseFor(interval time.Duration) time.Duration {
	return interval + max(interval/50, 100*time.Millisecond)
}

// inFlightPage bounds the envelopes read at once while counting.
const inFlightPage = 1000

// CountInFlight counts the non-terminal envelopes by status and sets
// esignflow_envelopes_in_flight, and the conflicted terminal ones
// (esignflow_envelopes_conflicted): one read of the store's active index
// and one read per inFlightPage envelopes. Run calls it every
// InFlightEvery.
func (r *Reconciler) CountInFlight(ctx context.Context) error {
	n, err := r.cfg.Store.Active(ctx)
	if err != nil {
		return err
	}
	// Every envelope in the index, whatever its last update (a clock
	// ahead of ours included); some slack for those added meanwhile.
	all, err := r.cfg.Store.Stale(ctx, time.Now().Add(100*365*24*time.Hour), int(n)+inFlightPage)
	if err != nil {
		return err
	}
	counts := map[string]int{}
	conflicted := 0
	for len(all) > 0 {
		page := all[:min(len(all), inFlightPage)]
		all = all[len(page):]
		envs, err := r.cfg.Store.EnvelopesOf(ctx, page)
		if err != nil {
			return err
		}
		for _, e := range envs {
			switch {
			case e.Terminal() && e.State.Conflict != nil:
				conflicted++
			case e.Terminal():
				// settled since the index was read
			case e.State.Status == nil:
				counts["UNKNOWN"]++
			default:
				counts[string(*e.State.Status)]++
			}
		}
	}
	for _, st := range inFlightStatuses {
		r.m.inFlight.WithLabelValues(string(st)).Set(float64(counts[string(st)]))
		delete(counts, string(st))
	}
	r.m.inFlight.WithLabelValues("UNKNOWN").Set(float64(counts["UNKNOWN"]))
	r.m.conflicted.Set(float64(conflicted))
	return nil
}

// wait takes a token from the account's shared budget and waits until
// it may be spent, counting the waits.
func (r *Reconciler) wait(ctx context.Context, b *ratebudget.Bucket) error {
	waited, err := b.Wait(ctx, 1)
	if waited {
		r.m.waits.Inc()
	}
	return err
}

// lease takes, in one round trip, a lease on each envelope not leased by
// anyone: SET NX with a TTL a little longer than its provider's minimum
// poll interval (ttlOf, leaseFor). A lease is not released
// after a poll — it is what keeps the envelope from being polled again
// within the interval, here or on another replica — only when the poll did
// not happen; a crashed replica's leases expire.
func (r *Reconciler) lease(ctx context.Context, ids []string, ttlOf map[string]time.Duration) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := r.cfg.Store.Client().Pipeline()
	cmds := make([]*redis.BoolCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.SetNX(ctx, r.leaseKey(id), r.cfg.InstanceID, ttlOf[id])
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("reconciler: lease: %w", err)
	}
	var out []string
	for i, c := range cmds {
		if c.Val() {
			out = append(out, ids[i])
		}
	}
	return out, nil
}

// release gives back leases this replica holds and did not use.
func (r *Reconciler) release(ids []string) {
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pipe := r.cfg.Store.Client().Pipeline()
	for _, id := range ids {
		pipe.Eval(ctx, `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`, []string{r.leaseKey(id)}, r.cfg.InstanceID)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		r.log.Warn("releasing leases", "err", err)
	}
}

func (r *Reconciler) leaseKey(id string) string { return r.cfg.Store.Key("lease:" + id) }

// renewScript sets a lease's TTL again if the lease is still this
// replica's.
var renewScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`)

// renew gives each of ids whose lease is still this replica's a whole
// lease again (ttlOf), in one round trip, and returns those ids.
func (r *Reconciler) renew(ctx context.Context, ids []string, ttlOf map[string]time.Duration) ([]string, error) {
	pipe := r.cfg.Store.Client().Pipeline()
	cmds := make([]*redis.Cmd, len(ids))
	for i, id := range ids {
		cmds[i] = renewScript.Eval(ctx, pipe, []string{r.leaseKey(id)}, r.cfg.InstanceID, ttlOf[id].Milliseconds())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	kept := make([]string, 0, len(ids))
	for i, c := range cmds {
		if n, _ := c.Int64(); n == 1 {
			kept = append(kept, ids[i])
		}
	}
	return kept, nil
}

func (r *Reconciler) record(ctx context.Context, ev schemas.EnvelopeEvent) *kgo.Record {
	val, err := r.cfg.Codec.Encode(&ev)
	if err != nil {
		r.m.errors.WithLabelValues("encode").Inc()
		r.log.Error("encode poll event", "err", err)
		return nil
	}
	return &kgo.Record{Topic: r.cfg.Codec.Topics().Events, Key: []byte(ev.EnvelopeID), Value: val}
}

func (r *Reconciler) publish(ctx context.Context, recs []*kgo.Record) error {
	var keep []*kgo.Record
	for _, rec := range recs {
		if rec != nil {
			keep = append(keep, rec)
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return r.prod.ProduceSync(ctx, keep...).FirstErr()
}

// pollEvent turns a poll answer into an event. Its id is derived from the
// answer itself (status, status time, every recipient's status), so polls
// that see the same thing are one event and are dropped as duplicates —
// except that an answer about a conflicted envelope also names the
// conflict (the version it was recorded at): the provider may answer
// exactly what it answered before the conflict arose (a poll repaired the
// envelope to COMPLETED, then a late DECLINED webhook disagreed), and that
// answer must settle the conflict, not be dropped as the first poll's
// duplicate.
func pollEvent(st envelope.Envelope, pe provider.Envelope, now time.Time) schemas.EnvelopeEvent {
	status := pe.Status
	rcps := append([]schemas.RecipientUpdate{}, pe.Recipients...)
	sort.Slice(rcps, func(i, j int) bool { return rcps[i].RecipientID < rcps[j].RecipientID })
	var sig strings.Builder
	for _, u := range rcps {
		sig.WriteString(u.RecipientID + "=" + string(u.Status) + ";")
	}
	if st.State.Conflict != nil {
		sig.WriteString("conflict@" + strconv.FormatInt(st.State.Version, 10) + ";")
	}
	at := pe.StatusAt
	if at.IsZero() {
		at = now
	}
	ev := schemas.EnvelopeEvent{
		EventID:  "poll:" + envelope.EventID(st.State.Provider, st.State.EnvelopeID, string(status), sig.String(), at),
		Provider: st.State.Provider, EnvelopeID: st.State.EnvelopeID, RequestID: st.State.RequestID, Tenant: st.State.Tenant,
		Source: schemas.SourcePoll, Type: "poll", Status: &status, Recipients: rcps,
		OccurredAt: at, ReceivedAt: now, Metadata: map[string]string{},
	}
	if rid := pe.Metadata[provider.RequestIDKey]; rid != "" && ev.RequestID == nil {
		ev.RequestID = &rid
	}
	return ev
}

// notFoundEvent is the verdict on an envelope its provider has not known
// since first (purged or deleted there, or never created): FAILED with the
// reason, which settles it (taking it out of the polling index) unless a
// webhook disagrees later, which is then a conflict the provider's next
// answer settles. Its id names the period of not knowing, so that the
// verdict published again before the processor applied it is a duplicate,
// and a later period is an event of its own.
func notFoundEvent(st envelope.Envelope, first, now time.Time) schemas.EnvelopeEvent {
	failed := schemas.StatusFailed
	reason := "the provider has not known this envelope since " + first.UTC().Format(time.RFC3339)
	return schemas.EnvelopeEvent{
		EventID:  "poll-missing:" + st.State.EnvelopeID + ":" + strconv.FormatInt(first.UnixMilli(), 10),
		Provider: st.State.Provider, EnvelopeID: st.State.EnvelopeID, RequestID: st.State.RequestID, Tenant: st.State.Tenant,
		Source: schemas.SourcePoll, Type: "poll.not_found", Status: &failed, Reason: &reason,
		Recipients: []schemas.RecipientUpdate{}, OccurredAt: now, ReceivedAt: now, Metadata: map[string]string{},
	}
}
