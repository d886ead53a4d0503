// Package sink finalises envelopes: when a status change makes an envelope
// terminal, it downloads the signed document, the certificate of completion
// and the provider's audit trail, checks each against the SHA-256 the
// provider declares, stores them in the archive under content-addressed
// names with a per-envelope manifest, and publishes EnvelopeFinalized to
// esignflow.finalized.v1 — exactly once: the publish and the consumed
// offset commit in one transaction, and a manifest already in the archive
// (a crash between archiving and publishing) is published again without
// downloading anything. An artefact the provider does not keep for the
// envelope's terminal status (Keeper: one that deletes what its sender
// canceled keeps nothing of a voided envelope) is not asked for; the
// manifest names it as not kept.
//
// A provider that is down (timeouts, 5xx, rate limits) or has not prepared
// the files yet (provider.ErrNotReady) does not hold anything up: the
// status change is parked on the sink's retry topic (topics.SinkRetry), in
// the same transaction that consumes it, and the sink's retry loop tries
// it again with capped exponential backoff, for as long as it takes, while
// later status changes go on. Only a refusal that retrying cannot change
// (provider.IsPermanent, bytes that keep contradicting their declared
// SHA-256, an envelope the provider has not known for NotFoundAfter, no
// client for its provider, an undecodable record) is dead-lettered; a
// sink dead letter replays onto the retry topic (ReplayRecord). The sink
// never writes esignflow.status.v1: that topic has one writer, the
// processor.
package sink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/internal/txloop"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

// Downloader fetches a finished envelope's artefacts.
type Downloader interface {
	Download(ctx context.Context, id string, kind provider.Artifact) (provider.Download, error)
}

// Config configures a Sink. Brokers, Codec, Archive and Downloaders are
// required.
type Config struct {
	Brokers     []string
	KafkaOpts   []kgo.Opt
	Codec       *schemas.Codec
	Archive     Archive
	Downloaders map[string]Downloader // by provider name
	// Group is the consumer group of the status topic, default
	// "esignflow-sink"; the retry loop's group is Group + "-retry".
	Group string
	// InstanceID names this replica's transactional ids, default random.
	InstanceID string
	// RetryTopic is where status changes wait for their next attempt,
	// default topics.SinkRetry of the codec's topic names.
	RetryTopic string
	// RetryBase is the wait before the first retry of an envelope the
	// provider could not serve, default 1s; it doubles with each failed
	// attempt up to RetryMax, default 5m, with jitter (each wait is
	// between half and all of it). A rate-limited attempt waits at least
	// what the provider asked.
	RetryBase, RetryMax time.Duration
	// AttemptTimeout bounds one attempt at an envelope (all its
	// downloads), default 30s. It is also the time a batch may spend
	// starting attempts: envelopes a batch has not started by then are
	// parked untried, for the retry loop.
	AttemptTimeout time.Duration
	// DigestAttempts is how many downloads of one artefact in a row may
	// hash to something other than the SHA-256 the provider declares
	// before the envelope is dead-lettered (digest_mismatch), default 3.
	DigestAttempts int
	// NotFoundAfter is how long the provider may answer "not found" for
	// a finished envelope's files before it is dead-lettered (not_found),
	// default 1h: a provider's read path may lag its write path.
	NotFoundAfter time.Duration
	// Concurrency bounds envelopes finalised at once per loop, default 8.
	Concurrency int
	Metrics     prometheus.Registerer
	Logger      *slog.Logger
	// Crash, when it returns true after an envelope is archived and before
	// its record is published, makes Run return ErrCrashed: for tests.
	Crash func() bool
}

// ErrCrashed is returned by Run when Config.Crash fired.
var ErrCrashed = errors.New("sink: injected crash")

// ErrDigest means a download does not hash to what the provider declared.
var ErrDigest = errors.New("sink: download does not match its declared SHA-256")

// Sink archives and publishes finalised envelopes.
type Sink struct {
	cfg    Config
	log    *slog.Logger
	parked *parkedSet
	health *health
	// retryPartitions is the retry topic's partition count, learnt by Run
	// before its loops start (parkPartition).
	retryPartitions int
	m               struct {
		finalized        *prometheus.CounterVec
		downloads        prometheus.Counter
		downloadFailures *prometheus.CounterVec
		retries          *prometheus.CounterVec
		loop             *txloop.Metrics // lag, aborts and dead letters, shared with the processor
		recovered        prometheus.Counter
		repeated         prometheus.Counter
		superseded       *prometheus.CounterVec
	}
}

// New returns a Sink for cfg.
func New(cfg Config) (*Sink, error) {
	switch {
	case len(cfg.Brokers) == 0 || cfg.Codec == nil || cfg.Archive == nil:
		return nil, errors.New("sink: Brokers, Codec and Archive are required")
	case len(cfg.Downloaders) == 0:
		return nil, errors.New("sink: at least one Downloader is required")
	}
	if cfg.Group == "" {
		cfg.Group = "esignflow-sink"
	}
	if cfg.InstanceID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		cfg.InstanceID = hex.EncodeToString(b[:])
	}
	if cfg.RetryTopic == "" {
		cfg.RetryTopic = topics.SinkRetry(cfg.Codec.Topics())
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Minute
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryBase)
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 30 * time.Second
	}
	if cfg.DigestAttempts <= 0 {
		cfg.DigestAttempts = 3
	}
	if cfg.NotFoundAfter <= 0 {
		cfg.NotFoundAfter = time.Hour
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Sink{cfg: cfg, log: cfg.Logger.With("component", "sink"), health: newHealth(cfg.RetryMax)}
	// An envelope is parked again at least every RetryMax (plus the time
	// its attempt takes): one not seen for twice that is no longer ours.
	s.parked = newParkedSet(2*cfg.RetryMax + 3*cfg.AttemptTimeout)
	s.m.finalized = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_sink_finalized_total", Help: "Envelopes finalised, by terminal status."}, []string{"status"})
	s.m.downloads = prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_sink_downloads_total", Help: "Artefacts downloaded and verified."})
	s.m.downloadFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_sink_download_failures_total", Help: "Failed downloads, by reason (digest, provider)."}, []string{"reason"})
	s.m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_sink_retries_total",
		Help: "Attempts at an envelope that failed in a way worth retrying and parked it for another, by reason: unavailable (5xx, timeout, connection), rate_limited, not_ready (the provider is still preparing the files), not_found (for up to the not-found delay)."},
		[]string{"reason"})
	parked := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "esignflow_sink_parked",
		Help: "Envelopes this replica has parked on the retry topic and not finalised since (parked or parked again within the last 2 × the maximum backoff): waiting for their provider. Summed over replicas, each parked envelope counts once, give or take one whose retry partition just moved."},
		func() float64 { return float64(s.parked.len(time.Now())) })
	s.m.recovered = prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_sink_recovered_total", Help: "Envelopes already archived whose manifest was published again (a crash before publishing)."})
	s.m.repeated = prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_sink_repeated_total", Help: "Status changes of an envelope version already published: skipped."})
	s.m.superseded = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_sink_superseded_total",
		Help: "Status changes not finalised because a later version of their envelope is finalised or on its way (a poll settled a parked envelope on another terminal status), by the superseded status."},
		[]string{"status"})
	for _, c := range []prometheus.Collector{s.m.finalized, s.m.downloads, s.m.downloadFailures, s.m.retries, parked, s.m.recovered, s.m.repeated, s.m.superseded} {
		if err := cfg.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("sink: metrics: %w", err)
		}
	}
	for _, r := range retryReasons {
		s.m.retries.WithLabelValues(r)
	}
	loop, err := txloop.NewMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("sink: metrics: %w", err)
	}
	loop.DeadLetterReasons("sink", reasonDownloadFailed, reasonDigest, reasonNoDownloader, reasonNotFound, reasonUndecodable)
	s.m.loop = loop
	return s, nil
}

// Run consumes esignflow.status.v1 and the retry topic until ctx ends,
// creating the retry topic first if it is missing (with every other
// missing esignflow topic, as the processor and the ingress do). It
// returns after both loops have finished their batch in flight, nil on
// cancellation, or the first loop's fatal error (ErrCrashed).
func (s *Sink) Run(ctx context.Context) error {
	n, err := s.ensureRetryTopic(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.retryPartitions = n
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	status := s.loopConfig(ctx, s.cfg.Codec.Topics().Status, s.cfg.Group, "sink", false)
	retry := s.loopConfig(ctx, s.cfg.RetryTopic, s.cfg.Group+"-retry", "sink-retry", true)
	errs := make(chan error, 2)
	for _, c := range []txloop.Config{status, retry} {
		go func() {
			err := txloop.Run(ctx, c)
			cancel() // one loop ending ends the other
			errs <- err
		}()
	}
	return errors.Join(<-errs, <-errs)
}

// loopConfig is the txloop of one of the sink's two inputs.
func (s *Sink) loopConfig(run context.Context, topic, group, name string, fromRetry bool) txloop.Config {
	st := &batchState{}
	c := txloop.Config{
		Name: name, Brokers: s.cfg.Brokers, Topic: topic, Group: group,
		TransactionalID: group + "-" + s.cfg.InstanceID, MaxBatch: 500, KafkaOpts: s.cfg.KafkaOpts,
		// Parks go to their envelope's retry partition, tombstones and
		// parks again to the partition of the record they replace.
		ExplicitPartitions: []string{s.cfg.RetryTopic},
		// A batch starts attempts for up to AttemptTimeout, and each
		// takes up to AttemptTimeout.
		BatchTimeout: max(2*time.Minute, 3*s.cfg.AttemptTimeout),
		Handler: func(ctx context.Context, recs []*kgo.Record, emit func(*kgo.Record)) error {
			return s.handle(run, ctx, st, fromRetry, recs, emit)
		},
		Logger: s.log, Metrics: s.m.loop,
		Hooks: txloop.Hooks{
			Committed: func(map[string]int, time.Duration) { s.committed(run, st) },
			Aborted:   func(string) { st.reset() },
		},
	}
	if fromRetry {
		// Few at a time: the loop waits for the last of a batch to be
		// due before trying any.
		c.MaxBatch = 4 * s.cfg.Concurrency
		c.Hooks.Prepare = s.waitUntilDue
	}
	return c
}

// ensureRetryTopic creates the missing esignflow topics when the retry
// topic is one of them (a sink upgraded before its topics were), and
// returns the retry topic's partition count.
func (s *Sink) ensureRetryTopic(ctx context.Context) (int, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.cfg.Brokers...)}, s.cfg.KafkaOpts...)...)
	if err != nil {
		return 0, fmt.Errorf("sink: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	md, err := topics.Await(ctx, adm, 0, s.cfg.RetryTopic) // one look
	if errors.Is(err, topics.ErrNotInMetadata) {
		if err := topics.Ensure(ctx, cl, topics.Config{Names: s.cfg.Codec.Topics()}); err != nil {
			return 0, fmt.Errorf("sink: %w", err)
		}
		// A topic just created may not be in every broker's metadata
		// yet (seen on Apache Kafka): that is waited for, up to
		// topicWait.
		md, err = topics.Await(ctx, adm, topicWait, s.cfg.RetryTopic)
	}
	if err != nil {
		return 0, fmt.Errorf("sink: %w", err)
	}
	return len(md.Topics[s.cfg.RetryTopic].Partitions), nil
}

// topicWait bounds the wait for a topic just created to show in metadata.
const topicWait = 30 * time.Second

// PublishedName is the archive marker saying an envelope version's
// finalized record was committed.
func PublishedName(envelopeID string, version int64) string {
	return fmt.Sprintf("manifests/%s/%d.published", envelopeID, version)
}

// Ready reports whether the sink can do its work now: nil when its
// archive, if it is a Checker, can be written. For a /readyz endpoint; safe
// for concurrent use, and valid before and during Run.
func (s *Sink) Ready(ctx context.Context) error {
	if c, ok := s.cfg.Archive.(Checker); ok {
		return c.Check(ctx)
	}
	return nil
}

// batchState is what one loop's batch in flight did, applied once its
// transaction commits and forgotten if it aborts. Batches of one loop run
// one at a time; finalisations within a batch run concurrently, hence
// the lock.
type batchState struct {
	mu        sync.Mutex
	published []published // the envelope versions published
	letters   []string    // reasons of the dead letters
	retries   []string    // reasons of the failed attempts parked again
	parked    []string    // keys parked (again)
	resolved  []string    // keys no longer parked: finalised, dead-lettered or found done
	repeated  int         // changes of a version already published
	// superseded are the statuses of the changes a later version of
	// their envelope superseded.
	superseded []string
}

// published is an envelope version whose finalized record the batch
// emits.
type published struct {
	envelopeID string
	version    int64
	status     string
}

func (b *batchState) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.published, b.letters, b.retries, b.parked, b.resolved, b.repeated, b.superseded = nil, nil, nil, nil, nil, 0, nil
}

func (b *batchState) add(list *[]string, v string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	*list = append(*list, v)
}

func (b *batchState) publish(p published) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.published = append(b.published, p)
}

// committed applies the batch that just committed: publish markers (so a
// repeated status change finds the version done), counters, the parked
// set.
func (s *Sink) committed(ctx context.Context, b *batchState) {
	b.mu.Lock()
	published, letters, retries, parked, resolved, repeated, superseded := b.published, b.letters, b.retries, b.parked, b.resolved, b.repeated, b.superseded
	b.mu.Unlock()
	b.reset()
	s.markPublished(ctx, published)
	for _, p := range published {
		s.m.finalized.WithLabelValues(p.status).Inc()
	}
	s.m.repeated.Add(float64(repeated))
	for _, status := range superseded {
		s.m.superseded.WithLabelValues(status).Inc()
	}
	for _, reason := range letters {
		s.m.loop.DeadLettered("sink", reason)
	}
	for _, reason := range retries {
		s.m.retries.WithLabelValues(reason).Inc()
	}
	now := time.Now()
	s.parked.touch(now, parked...)
	s.parked.remove(resolved...)
}

// markPublished records, after the commit, which envelopes were published,
// so that a repeated status change finds them done, and raises each
// envelope's latest marker (LatestName). A crash between the commit and
// this write leaves a narrow window in which a repeated change is
// published again; EnvelopeFinalized carries (envelope_id, version) for
// downstream to recognise it.
func (s *Sink) markPublished(ctx context.Context, done []published) {
	ctx = context.WithoutCancel(ctx)
	for _, p := range done {
		name := PublishedName(p.envelopeID, p.version)
		if _, err := s.cfg.Archive.Put(ctx, name, []byte("published\n")); err != nil {
			s.log.Warn("publish marker not written", "name", name, "err", err)
		}
		if err := s.raiseVersion(ctx, LatestName(p.envelopeID), p.version); err != nil {
			s.log.Warn("latest marker not written", "envelope_id", p.envelopeID, "version", p.version, "err", err)
		}
	}
}

// Finalizes reports whether a change is one the sink finalises: it makes
// its envelope terminal, or a poll settles it on another terminal. Later
// changes of a terminal envelope (a late recipient update) are not.
func Finalizes(ch schemas.EnvelopeStatusChanged) bool {
	if !envelope.Terminal(ch.Status) {
		return false
	}
	return ch.PreviousStatus == nil || *ch.PreviousStatus != ch.Status
}

// job is one status change to finalise: fresh from the status topic, or
// parked on the retry topic.
type job struct {
	rec    *kgo.Record // as consumed
	ch     schemas.EnvelopeStatusChanged
	park   parkState
	marker string
	// behind means an earlier version of the envelope may be parked: the
	// status loop parks this one behind it, on the same retry partition.
	behind bool
	// parkKey is its key on the retry topic (see key).
	parkKey []byte
	out     []*kgo.Record // what the batch emits for it
}

// handle is both loops' handler. run is the Run context: once it ends, the
// batch starts no new attempt (shutdown waits for the batch in flight).
func (s *Sink) handle(run, ctx context.Context, b *batchState, fromRetry bool, recs []*kgo.Record, emit func(*kgo.Record)) error {
	b.reset() // a batch that ended in a crash left its own
	var cands, jobs []*job
	var direct []*kgo.Record // dead letters and tombstones that need no attempt
	seen := map[string]bool{}
	for _, r := range recs {
		if fromRetry && r.Value == nil {
			continue // a tombstone: an envelope version done
		}
		j := &job{rec: r, park: freshPark(r, time.Now())}
		if fromRetry {
			j.park, j.parkKey = readPark(r), r.Key
		}
		if err := s.cfg.Codec.Decode(ctx, r.Value, &j.ch); err != nil {
			if !schemas.IsPoison(err) {
				// The registry is unreachable: the whole batch waits
				// (aborted, consumed again after a backoff).
				return fmt.Errorf("decode %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			dl, err := s.deadLetter(j, reasonUndecodable, err)
			if err != nil {
				return err
			}
			b.add(&b.letters, reasonUndecodable)
			direct = append(direct, dl)
			if fromRetry {
				direct = append(direct, s.tombstone(r))
				b.add(&b.resolved, string(r.Key))
			}
			continue
		}
		if !Finalizes(j.ch) {
			if fromRetry { // not ours: nothing to wait for
				direct = append(direct, s.tombstone(r))
				b.add(&b.resolved, string(r.Key))
			}
			continue
		}
		j.marker = PublishedName(j.ch.EnvelopeID, j.ch.Version)
		if seen[j.marker] {
			continue // the same change twice in one batch: the first decides
		}
		seen[j.marker] = true
		cands = append(cands, j)
	}
	// No version older than one claimed or published is tried (see
	// order.go), nor, of the versions of an envelope parked in a batch,
	// any but the newest. (The status loop tries an envelope's versions
	// of one batch together: it emits them in order, in one transaction.)
	newest := map[string]int64{}
	for _, j := range cands {
		newest[j.ch.EnvelopeID] = max(newest[j.ch.EnvelopeID], j.ch.Version)
	}
	// claimed and latest are the envelope's markers as the batch found
	// them; claims is the claimed marker as the batch left it. The
	// status loop is the claimed marker's one writer, so what it read
	// once stays true but for its own writes: each envelope's markers
	// are read once per batch and a claim is written without reading
	// the marker again.
	type marks struct{ claimed, latest, claims int64 }
	before := map[string]*marks{}
	for _, j := range cands {
		id, v := j.ch.EnvelopeID, j.ch.Version
		if n := newest[id]; fromRetry && v < n {
			s.supersede(j, b, fromRetry, n)
			direct = append(direct, j.out...)
			continue
		}
		m, ok := before[id]
		if !ok {
			m = &marks{}
			var err error
			if m.claimed, m.latest, err = s.versions(ctx, id); err != nil {
				return err
			}
			m.claims = m.claimed
			before[id] = m
		}
		claimed, latest := m.claimed, m.latest
		if n := max(claimed, latest); n > v {
			s.supersede(j, b, fromRetry, n)
			direct = append(direct, j.out...)
			continue
		}
		done := latest >= v
		if !done {
			var err error
			if done, err = s.cfg.Archive.Exists(ctx, j.marker); err != nil {
				return err
			}
		}
		if done {
			b.mu.Lock()
			b.repeated++
			b.mu.Unlock()
			if fromRetry {
				direct = append(direct, s.tombstone(j.rec))
				b.add(&b.resolved, string(j.rec.Key))
			}
			continue
		}
		if !fromRetry {
			// A claimed version not published yet may be parked, or
			// being tried by the retry loop.
			j.behind = claimed > 0 && latest < claimed
			if v > m.claims {
				if err := s.writeVersion(ctx, ClaimedName(id), v); err != nil {
					return err
				}
				m.claims = v
			}
		}
		jobs = append(jobs, j)
	}

	// Attempts start until the budget is spent or Run ends; the rest are
	// parked untried.
	budget := time.Now().Add(s.cfg.AttemptTimeout)
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// The status loop does not wait on a provider that is down:
			// the retry loop's attempts tell when it is back, or, once the
			// flag expires, the status loop's next attempt.
			// A parked record polled before it is due (its hold is capped at
			// RetryMax; a provider may ask for longer) waits again, untried.
			now := time.Now()
			if run.Err() != nil || now.After(budget) || (fromRetry && j.park.NotBefore.After(now)) ||
				(!fromRetry && (j.behind || s.health.down(j.ch.State.Provider))) {
				s.parkUntried(j, b, fromRetry)
				return
			}
			errs[i] = s.attempt(ctx, j, b, fromRetry)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	b.mu.Lock()
	crash := s.cfg.Crash != nil && len(b.published) > 0
	b.mu.Unlock()
	if crash && s.cfg.Crash() {
		return &txloop.Stop{Err: ErrCrashed}
	}
	for _, r := range direct {
		emit(r)
	}
	for _, j := range jobs {
		for _, r := range j.out {
			emit(r)
		}
	}
	return nil
}

// key is the job's key on the retry topic: the parked record's own, or
// ParkKey for a fresh status change.
func (j *job) key() []byte {
	if j.parkKey == nil {
		j.parkKey = ParkKey(j.ch.EnvelopeID, j.ch.Version)
	}
	return j.parkKey
}

// ParkKey is the retry topic's key of an envelope version: the topic is
// compacted, so each version's last park (or its tombstone) is kept.
func ParkKey(envelopeID string, version int64) []byte {
	return fmt.Appendf(nil, "%s@%d", envelopeID, version)
}

// attempt tries to finalise one envelope and plans what the batch emits
// for it: its EnvelopeFinalized, a dead letter, or its next park. Only an
// archive failure is returned: it aborts the batch.
func (s *Sink) attempt(ctx context.Context, j *job, b *batchState, fromRetry bool) error {
	actx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
	fin, err := s.finalize(actx, j.ch)
	// The archive failing because the attempt ran out of time (slow
	// downloads before it, or a slow archive) is an attempt timeout: the
	// envelope is parked, not the batch aborted and consumed again into
	// the same timeout.
	timedOut := errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	cancel()
	var ae *archiveError
	archiveFailed := errors.As(err, &ae)
	switch {
	case archiveFailed && !timedOut:
		return err
	case err == nil:
		s.health.answered(j.ch.State.Provider, true)
		if fromRetry {
			// A later version claimed while this one was being tried
			// (the status loop parked it behind this one): publishing
			// this one would only be superseded.
			claimed, latest, err := s.versions(ctx, j.ch.EnvelopeID)
			if err != nil {
				return err
			}
			if n := max(claimed, latest); n > j.ch.Version {
				s.supersede(j, b, fromRetry, n)
				return nil
			}
		}
		j.out = append(j.out, fin)
		b.publish(published{envelopeID: j.ch.EnvelopeID, version: j.ch.Version, status: string(j.ch.Status)})
		if fromRetry {
			j.out = append(j.out, s.tombstone(j.rec))
			b.add(&b.resolved, string(j.key()))
			s.log.Info("parked envelope finalised", "envelope_id", j.ch.EnvelopeID, "version", j.ch.Version,
				"attempts", j.park.Attempts+1, "parked_for", time.Since(j.park.ParkedAt).Round(time.Second))
		}
		return nil
	}
	now := time.Now()
	reason, permanent := s.classify(err, &j.park, now)
	if permanent {
		dl, derr := s.deadLetter(j, reason, err)
		if derr != nil {
			return derr
		}
		j.out = append(j.out, dl)
		b.add(&b.letters, reason)
		if fromRetry {
			j.out = append(j.out, s.tombstone(j.rec))
			b.add(&b.resolved, string(j.key()))
		}
		return nil
	}
	if !archiveFailed && (reason == reasonUnavailable || reason == reasonRateLimited) {
		s.health.answered(j.ch.State.Provider, false)
	}
	j.park.Attempts++
	j.park.Reason = reason
	wait := s.backoff(j.park.Attempts, err)
	j.park.NotBefore = now.Add(wait)
	j.out = append(j.out, s.parkRecord(j))
	b.add(&b.retries, reason)
	b.add(&b.parked, string(j.key()))
	s.logParked(j, wait, err)
	return nil
}

// parkUntried parks j without an attempt (the batch's budget is spent, or Run
// is ending): due at once, its attempts unchanged.
func (s *Sink) parkUntried(j *job, b *batchState, fromRetry bool) {
	if !fromRetry {
		j.park.NotBefore = time.Now()
	}
	j.out = append(j.out, s.parkRecord(j))
	b.add(&b.parked, string(j.key()))
	s.log.Debug("envelope parked untried", "envelope_id", j.ch.EnvelopeID, "version", j.ch.Version)
}

// logParked says that an envelope waits for its provider: at warn level
// (info for a provider still preparing the files) on its 1st, 2nd, 4th,
// 8th… failed attempt, so that the log grows with the logarithm of the
// wait, and at debug level otherwise.
func (s *Sink) logParked(j *job, wait time.Duration, err error) {
	level := slog.LevelDebug
	if n := j.park.Attempts; n&(n-1) == 0 {
		level = slog.LevelWarn
		if j.park.Reason == reasonNotReady {
			level = slog.LevelInfo
		}
	}
	s.log.Log(context.Background(), level, "envelope waits for its provider; parked", "envelope_id", j.ch.EnvelopeID, "version", j.ch.Version,
		"provider", j.ch.State.Provider, "reason", j.park.Reason, "attempts", j.park.Attempts,
		"parked_for", time.Since(j.park.ParkedAt).Round(time.Second), "next_in", wait.Round(time.Millisecond), "err", err)
}

// tombstone deletes a parked envelope version, r, from the compacted
// retry topic: on r's partition, where compaction meets it.
func (s *Sink) tombstone(r *kgo.Record) *kgo.Record {
	return &kgo.Record{Topic: s.cfg.RetryTopic, Partition: r.Partition, Key: r.Key}
}

func (s *Sink) deadLetter(j *job, reason string, cause error) (*kgo.Record, error) {
	r := j.rec
	origin := j.park.origin // freshPark and readPark always set it
	key := []byte(j.ch.EnvelopeID)
	if j.ch.EnvelopeID == "" {
		key = j.park.key // undecodable: the status record's key
	}
	msg := cause.Error()
	if j.park.Attempts > 0 {
		msg = fmt.Sprintf("%s (after %d failed attempts over %s)", msg, j.park.Attempts, time.Since(j.park.ParkedAt).Round(time.Second))
	}
	s.log.Error("envelope could not be finalised; dead-lettered", "envelope_id", j.ch.EnvelopeID, "version", j.ch.Version,
		"reason", reason, "origin", origin.String(), "err", msg)
	dl := schemas.DeadLetter{Topic: origin.topic, Partition: origin.partition, Offset: origin.offset, Key: key, Value: r.Value,
		Headers: []schemas.Header{}, Error: msg, Component: "sink", FailedAt: time.Now()}
	for _, h := range ownHeaders(r.Headers) {
		dl.Headers = append(dl.Headers, schemas.Header{Key: h.Key, Value: h.Value})
	}
	val, err := s.cfg.Codec.Encode(&dl)
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: s.cfg.Codec.Topics().DLQ, Key: key, Value: val}, nil
}

// health is what the last attempts said of each provider: down from a
// failed attempt (unavailable or rate limited) until an attempt succeeds
// or for ttl (RetryMax), whichever comes first. It is per replica, and
// only the attempts of this replica clear it: one that holds status
// partitions but no retry partitions makes no attempt of its own while
// the flag is up, so the flag expires and the status loop probes the
// provider with the next envelope. An envelope whose files are not ready
// or not found says nothing of the others.
type health struct {
	ttl   time.Duration
	mu    sync.Mutex
	until map[string]time.Time
}

func newHealth(ttl time.Duration) *health { return &health{ttl: ttl, until: map[string]time.Time{}} }

func (h *health) answered(provider string, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ok {
		delete(h.until, provider)
		return
	}
	h.until[provider] = time.Now().Add(h.ttl)
}

func (h *health) down(provider string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return time.Now().Before(h.until[provider])
}
