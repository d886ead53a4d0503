// Package sink finalises envelopes: when a status change makes an envelope
// terminal, it downloads the signed document, the certificate of completion
// and the provider's audit trail, checks each against the SHA-256 the
// provider declares, stores them in the archive under content-addressed
// names with a per-envelope manifest, and publishes EnvelopeFinalized to
// esignflow.finalized.v1 — exactly once: the publish and the consumed
// offset commit in one transaction, and a manifest already in the archive
// (a crash between archiving and publishing) is published again without
// downloading anything.
package sink

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/envelope"
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
	// Group is the consumer group, default "esignflow-sink".
	Group string
	// InstanceID names this replica's transactional id, default random.
	InstanceID string
	// Attempts per download before the status change goes to the DLQ,
	// default 5; backoff doubles from RetryBase (default 200ms).
	Attempts  int
	RetryBase time.Duration
	// Concurrency bounds envelopes finalised at once, default 8.
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
	cfg Config
	log *slog.Logger
	// published are the markers of the batch in flight, written once its
	// transaction commits. Batches of one session run one at a time.
	published []string
	// letters are the reasons of the batch's dead letters, counted once
	// it commits (finalisations run concurrently, hence the lock).
	lettersMu sync.Mutex
	letters   []string
	m         struct {
		finalized        *prometheus.CounterVec
		downloads        prometheus.Counter
		downloadFailures *prometheus.CounterVec
		loop             *txloop.Metrics // lag, aborts and dead letters, shared with the processor
		recovered        prometheus.Counter
		repeated         prometheus.Counter
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
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 200 * time.Millisecond
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
	s := &Sink{cfg: cfg, log: cfg.Logger.With("component", "sink")}
	s.m.finalized = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_sink_finalized_total", Help: "Envelopes finalised, by terminal status."}, []string{"status"})
	s.m.downloads = prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_sink_downloads_total", Help: "Artefacts downloaded and verified."})
	s.m.downloadFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "esignflow_sink_download_failures_total", Help: "Failed download attempts, by reason (digest, provider)."}, []string{"reason"})
	s.m.recovered = prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_sink_recovered_total", Help: "Envelopes already archived whose manifest was published again (a crash before publishing)."})
	s.m.repeated = prometheus.NewCounter(prometheus.CounterOpts{Name: "esignflow_sink_repeated_total", Help: "Status changes of an envelope version already published: skipped."})
	for _, c := range []prometheus.Collector{s.m.finalized, s.m.downloads, s.m.downloadFailures, s.m.recovered, s.m.repeated} {
		if err := cfg.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("sink: metrics: %w", err)
		}
	}
	loop, err := txloop.NewMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("sink: metrics: %w", err)
	}
	loop.DeadLetterReasons("sink", reasonDownloadFailed, reasonDigest, reasonNoDownloader)
	s.m.loop = loop
	return s, nil
}

// Run consumes esignflow.status.v1 until ctx ends.
func (s *Sink) Run(ctx context.Context) error {
	return txloop.Run(ctx, txloop.Config{
		Name: "sink", Brokers: s.cfg.Brokers, Topic: s.cfg.Codec.Topics().Status, Group: s.cfg.Group,
		TransactionalID: s.cfg.Group + "-" + s.cfg.InstanceID, MaxBatch: 500, KafkaOpts: s.cfg.KafkaOpts,
		Handler: s.handle, Logger: s.log, Metrics: s.m.loop,
		Hooks: txloop.Hooks{
			Committed: func(map[string]int, time.Duration) { s.markPublished(ctx); s.lettersEnded(true) },
			Aborted:   func(string) { s.published = nil; s.lettersEnded(false) },
		},
	})
}

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

// markPublished records, after the commit, which envelopes were published,
// so that a repeated status change finds them done. A crash between the
// commit and this write leaves a narrow window in which a repeated change
// is published again; EnvelopeFinalized carries (envelope_id, version) for
// downstream to recognise it.
func (s *Sink) markPublished(ctx context.Context) {
	for _, name := range s.published {
		if _, err := s.cfg.Archive.Put(context.WithoutCancel(ctx), name, []byte("published\n")); err != nil {
			s.log.Warn("publish marker not written", "name", name, "err", err)
		}
	}
	s.published = nil
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

func (s *Sink) handle(ctx context.Context, recs []*kgo.Record, emit func(*kgo.Record)) error {
	out := make([]*kgo.Record, len(recs))
	errs := make([]error, len(recs))
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	seen := map[string]bool{}
	markers := make([]string, len(recs))
	s.published = nil
	s.lettersEnded(false) // a batch that ended in a crash left its own
	for i, r := range recs {
		var ch schemas.EnvelopeStatusChanged
		if err := s.cfg.Codec.Decode(ctx, r.Value, &ch); err != nil {
			if !schemas.IsPoison(err) {
				return err
			}
			continue // not ours to judge: the processor wrote it
		}
		if !Finalizes(ch) {
			continue
		}
		marker := PublishedName(ch.EnvelopeID, ch.Version)
		if seen[marker] {
			continue // the same change twice in one batch
		}
		seen[marker] = true
		if done, err := s.cfg.Archive.Exists(ctx, marker); err != nil {
			return err
		} else if done {
			s.m.repeated.Inc()
			continue
		}
		markers[i] = marker
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = s.finalize(ctx, r, ch)
		}()
	}
	wg.Wait()
	for i := range recs {
		if errs[i] != nil {
			return errs[i]
		}
	}
	if s.cfg.Crash != nil && s.cfg.Crash() {
		return &txloop.Stop{Err: ErrCrashed}
	}
	for i, r := range out {
		if r == nil {
			continue
		}
		if r.Topic == s.cfg.Codec.Topics().Finalized {
			s.published = append(s.published, markers[i]) // not for dead letters
		}
		emit(r)
	}
	return nil
}

// Manifest is the per-envelope JSON written beside the files.
type Manifest struct {
	EnvelopeID  string                 `json:"envelope_id"`
	RequestID   *string                `json:"request_id,omitempty"`
	Tenant      *string                `json:"tenant,omitempty"`
	Provider    string                 `json:"provider"`
	Status      schemas.Status         `json:"status"`
	Version     int64                  `json:"version"`
	Files       []schemas.ArchivedFile `json:"files"`
	AuditHead   string                 `json:"audit_head"`
	AuditSeq    int64                  `json:"audit_seq"`
	FinalizedAt time.Time              `json:"finalized_at"`
}

// ManifestName is where an envelope's manifest for a version is archived.
func ManifestName(envelopeID string, version int64) string {
	return fmt.Sprintf("manifests/%s/%d.json", envelopeID, version)
}

// artefacts are what a terminal status has to download: everything for a
// completed envelope, the audit trail for one that ended otherwise, nothing
// for one the provider never created.
func artefacts(st schemas.Status) []provider.Artifact {
	switch st {
	case schemas.StatusCompleted:
		return []provider.Artifact{provider.ArtifactSigned, provider.ArtifactCertificate, provider.ArtifactAudit}
	case schemas.StatusFailed:
		return nil
	default:
		return []provider.Artifact{provider.ArtifactAudit}
	}
}

// finalize archives one envelope and returns the record to publish: its
// EnvelopeFinalized, or a dead letter when downloads keep failing.
func (s *Sink) finalize(ctx context.Context, r *kgo.Record, ch schemas.EnvelopeStatusChanged) (*kgo.Record, error) {
	name := ManifestName(ch.EnvelopeID, ch.Version)
	var m Manifest
	raw, err := s.cfg.Archive.Get(ctx, name)
	if err == nil {
		// Archived before a crash kept it from being published.
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", name, err)
		}
		s.m.recovered.Inc()
	} else {
		m, err = s.archive(ctx, ch)
		if errors.Is(err, errGaveUp) {
			return s.deadLetter(r, err)
		}
		if err != nil {
			return nil, err
		}
		if raw, err = json.MarshalIndent(m, "", "  "); err != nil {
			return nil, err
		}
	}
	// The first write of the manifest, or an idempotent rewrite of the same
	// bytes that yields its location.
	loc, err := s.cfg.Archive.Put(ctx, name, raw)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	m.Files = append(m.Files, schemas.ArchivedFile{Kind: "manifest", Location: loc, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(raw))})
	fin := schemas.EnvelopeFinalized{EnvelopeID: m.EnvelopeID, RequestID: m.RequestID, Tenant: m.Tenant, Status: string(m.Status),
		Version: m.Version, Files: m.Files, AuditHead: m.AuditHead, AuditSeq: m.AuditSeq, FinalizedAt: m.FinalizedAt}
	val, err := s.cfg.Codec.Encode(&fin)
	if err != nil {
		return nil, err
	}
	s.m.finalized.WithLabelValues(string(m.Status)).Inc()
	return &kgo.Record{Topic: s.cfg.Codec.Topics().Finalized, Key: []byte(m.EnvelopeID), Value: val}, nil
}

var (
	errGaveUp       = errors.New("sink: every download attempt failed")
	errNoDownloader = errors.New("sink: no downloader for the provider")
)

// Dead-letter reasons, the values of esignflow_dead_letters_total's reason
// label for component="sink".
const (
	reasonDownloadFailed = "download_failed" // the provider kept failing the download
	reasonDigest         = "digest_mismatch" // the last attempt downloaded bytes that do not match their SHA-256
	reasonNoDownloader   = "no_downloader"   // no downloader for the envelope's provider
)

// deadLetterReason classifies why an envelope could not be finalised.
func deadLetterReason(err error) string {
	switch {
	case errors.Is(err, errNoDownloader):
		return reasonNoDownloader
	case errors.Is(err, ErrDigest):
		return reasonDigest
	}
	return reasonDownloadFailed
}

// archive downloads, verifies and stores the artefacts of ch.
func (s *Sink) archive(ctx context.Context, ch schemas.EnvelopeStatusChanged) (Manifest, error) {
	m := Manifest{EnvelopeID: ch.EnvelopeID, RequestID: ch.State.RequestID, Tenant: ch.State.Tenant, Provider: ch.State.Provider,
		Status: ch.Status, Version: ch.Version, AuditHead: ch.State.AuditHead, AuditSeq: ch.State.AuditSeq,
		FinalizedAt: ch.ChangedAt.UTC(), Files: []schemas.ArchivedFile{}}
	kinds := artefacts(ch.Status)
	dl := s.cfg.Downloaders[ch.State.Provider]
	if len(kinds) > 0 && dl == nil {
		return m, fmt.Errorf("%w: %w %q", errGaveUp, errNoDownloader, ch.State.Provider)
	}
	for _, kind := range kinds {
		body, sum, err := s.download(ctx, dl, ch.EnvelopeID, kind)
		if err != nil {
			return m, err
		}
		// Content-addressed: the same bytes under the same name, so a
		// repeated put is harmless.
		loc, err := s.cfg.Archive.Put(ctx, "sha256/"+sum, body)
		if err != nil {
			return m, err
		}
		m.Files = append(m.Files, schemas.ArchivedFile{Kind: string(kind), Location: loc, SHA256: sum, Size: int64(len(body))})
	}
	return m, nil
}

// download fetches one artefact and checks its hash, retrying with backoff;
// a corrupted download is never returned.
func (s *Sink) download(ctx context.Context, dl Downloader, id string, kind provider.Artifact) ([]byte, string, error) {
	wait := s.cfg.RetryBase
	var last error
	for attempt := 1; attempt <= s.cfg.Attempts; attempt++ {
		d, err := dl.Download(ctx, id, kind)
		if err == nil {
			sum := sha256.Sum256(d.Body)
			got := hex.EncodeToString(sum[:])
			if d.DeclaredHash == "" || d.DeclaredHash == got {
				s.m.downloads.Inc()
				return d.Body, got, nil
			}
			err = fmt.Errorf("%w: %s of %s declared %s, got %s", ErrDigest, kind, id, d.DeclaredHash, got)
			s.m.downloadFailures.WithLabelValues("digest").Inc()
		} else {
			s.m.downloadFailures.WithLabelValues("provider").Inc()
		}
		last = err
		s.log.Warn("download failed", "envelope_id", id, "kind", kind, "attempt", attempt, "err", err)
		if attempt == s.cfg.Attempts {
			break
		}
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
	return nil, "", fmt.Errorf("%w: %w", errGaveUp, last)
}

// lettersEnded counts (committed) or forgets (aborted) the dead letters of
// the batch that just ended: a batch consumed again letters again.
func (s *Sink) lettersEnded(committed bool) {
	s.lettersMu.Lock()
	defer s.lettersMu.Unlock()
	if committed {
		for _, reason := range s.letters {
			s.m.loop.DeadLettered("sink", reason)
		}
	}
	s.letters = nil
}

func (s *Sink) deadLetter(r *kgo.Record, cause error) (*kgo.Record, error) {
	s.lettersMu.Lock()
	s.letters = append(s.letters, deadLetterReason(cause))
	s.lettersMu.Unlock()
	s.log.Error("envelope could not be finalised; dead-lettered", "envelope_id", string(r.Key), "err", cause)
	dl := schemas.DeadLetter{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value,
		Headers: []schemas.Header{}, Error: cause.Error(), Component: "sink", FailedAt: time.Now()}
	for _, h := range r.Headers {
		dl.Headers = append(dl.Headers, schemas.Header{Key: h.Key, Value: h.Value})
	}
	val, err := s.cfg.Codec.Encode(&dl)
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: s.cfg.Codec.Topics().DLQ, Key: r.Key, Value: val}, nil
}
