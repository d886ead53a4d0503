package sink_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/promread"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
	"github.com/esignflow/esignflow/sink"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestArchiveConformance is what every Archive must pass.
func TestArchiveConformance(t *testing.T) {
	for name, a := range map[string]sink.Archive{"dir": sink.Dir{Root: t.TempDir()}} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if ok, err := a.Exists(ctx, "sha256/abc"); err != nil || ok {
				t.Fatalf("Exists before Put: %v %v", ok, err)
			}
			if _, err := a.Get(ctx, "sha256/abc"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Get before Put: %v, want fs.ErrNotExist", err)
			}
			loc, err := a.Put(ctx, "sha256/abc", []byte("hello"))
			if err != nil || loc == "" {
				t.Fatalf("Put: %q %v", loc, err)
			}
			if loc2, err := a.Put(ctx, "sha256/abc", []byte("hello")); err != nil || loc2 != loc {
				t.Fatalf("Put again: %q %v", loc2, err)
			}
			got, err := a.Get(ctx, "sha256/abc")
			if err != nil || string(got) != "hello" {
				t.Fatalf("Get: %q %v", got, err)
			}
			if ok, err := a.Exists(ctx, "sha256/abc"); err != nil || !ok {
				t.Fatalf("Exists after Put: %v %v", ok, err)
			}
			for _, bad := range []string{"../escape", "/etc/passwd", ""} {
				if _, err := a.Put(ctx, bad, []byte("x")); err == nil {
					t.Errorf("Put(%q) accepted", bad)
				}
			}
		})
	}
}

type harness struct {
	t        *testing.T
	kafka    *fakes.Kafka
	brokers  []string
	registry *srfake.Registry
	codec    *schemas.Codec
	sim      *sim.Simulator
	client   *sim.Client
	prod     *kgo.Client
	archive  sink.Dir
}

func newHarness(t *testing.T) *harness { return newHarnessN(t, 2) }

// newHarnessN is a harness whose topics have partitions partitions.
func newHarnessN(t *testing.T, partitions int32) *harness {
	t.Helper()
	// On a shared broker, fakes deletes every topic of the test's names
	// (topics.All), the sink's retry topic with them.
	k := fakes.NewKafka(t, partitions)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	srcl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	codec, err := schemas.NewCodec(context.Background(), srcl, schemas.WithNames(k.Names), schemas.WithUnknownSchemaGrace(250*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	s := fakes.Sim(t, sim.Config{Step: time.Millisecond, Logger: quiet()})
	// Few, quick retries inside the client: the sink's own are what the
	// tests watch.
	cl, err := sim.NewClient(sim.ClientConfig{BaseURL: s.URL(), MaxAttempts: 2, BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, kafka: k, brokers: k.Brokers, registry: reg, codec: codec, sim: s, client: cl, prod: prod, archive: sink.Dir{Root: t.TempDir()}}
}

// finished creates an envelope at the simulator and waits until it is
// terminal, then publishes the status change that says so.
func (h *harness) finished(id string) schemas.EnvelopeStatusChanged {
	h.t.Helper()
	ch := h.completed(id)
	h.publish(ch)
	return ch
}

// completed creates an envelope at the simulator, waits until it is
// terminal and returns the status change that says so, unpublished.
func (h *harness) completed(id string) schemas.EnvelopeStatusChanged {
	h.t.Helper()
	uri := "s3://d/" + id
	env, err := h.client.Create(context.Background(), id, schemas.SigningRequest{RequestID: id, Tenant: "acme",
		Documents:  []schemas.Document{{Name: "a.pdf", URI: &uri}},
		Recipients: []schemas.Recipient{{ID: "r1", Name: "A", Email: "a@example.com", RoutingOrder: 1}}})
	if err != nil {
		h.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := h.client.Get(context.Background(), env.ID)
		if err == nil && got.Status == schemas.StatusCompleted {
			break
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s never completed", env.ID)
		}
		time.Sleep(5 * time.Millisecond)
	}
	prev, st := schemas.StatusSent, schemas.StatusCompleted
	rid := id
	return schemas.EnvelopeStatusChanged{EnvelopeID: env.ID, Version: 4, PreviousStatus: &prev, Status: st, EventID: "e", ChangedAt: time.Now().UTC().Truncate(time.Millisecond),
		State: schemas.EnvelopeState{EnvelopeID: env.ID, Provider: "sim", RequestID: &rid, Status: &st, Version: 4, Recipients: []schemas.RecipientState{}, AuditSeq: 5, AuditHead: strings.Repeat("ab", 32)},
		Audit: []schemas.AuditEntry{}}
}

func (h *harness) publish(ch schemas.EnvelopeStatusChanged) {
	h.t.Helper()
	b, err := h.codec.Encode(&ch)
	if err != nil {
		h.t.Fatal(err)
	}
	h.publishRaw(ch.EnvelopeID, b)
}

func (h *harness) publishRaw(key string, value []byte) {
	h.t.Helper()
	if err := h.prod.ProduceSync(context.Background(), &kgo.Record{Topic: h.codec.Topics().Status, Key: []byte(key), Value: value}).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

// running is a sink started by a test.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// stop ends the sink and returns what Run returned; it may be called
// again, and by the test's cleanup.
func (r *running) stop() error {
	r.once.Do(func() { r.cancel(); r.err = <-r.done })
	return r.err
}

func (h *harness) start(cfg sink.Config) *running {
	h.t.Helper()
	cfg.Brokers, cfg.Codec = h.brokers, h.codec
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	cfg.Group = h.kafka.Group("esignflow-sink")
	if cfg.Archive == nil {
		cfg.Archive = h.archive
	}
	if cfg.Downloaders == nil {
		cfg.Downloaders = map[string]sink.Downloader{"sim": h.client}
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = "s1"
	}
	cfg.KafkaOpts = []kgo.Opt{kgo.FetchMaxWait(50 * time.Millisecond), kgo.TransactionTimeout(5 * time.Second)}
	s, err := sink.New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	h.t.Cleanup(func() { _ = r.stop() })
	return r
}

// read returns the committed records of topic, waiting until there are at
// least n.
func (h *harness) read(topic string, n int) []*kgo.Record {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			h.t.Fatalf("%d of %d records on %s", len(out), n, topic)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func (h *harness) finalized(n int) []schemas.EnvelopeFinalized {
	h.t.Helper()
	var out []schemas.EnvelopeFinalized
	for _, r := range h.read(h.codec.Topics().Finalized, n) {
		var f schemas.EnvelopeFinalized
		if err := h.codec.Decode(context.Background(), r.Value, &f); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

func TestCompletedEnvelopeFinalizedOnce(t *testing.T) {
	h := newHarness(t)
	reg := prometheus.NewRegistry()
	ch := h.finished("req-1")
	h.publish(ch) // a repeated status change
	h.start(sink.Config{Metrics: reg})
	fins := h.finalized(1)
	f := fins[0]
	if f.EnvelopeID != ch.EnvelopeID || f.Status != "COMPLETED" || f.AuditHead != ch.State.AuditHead || *f.RequestID != "req-1" {
		t.Fatalf("finalized: %+v", f)
	}
	kinds := map[string]schemas.ArchivedFile{}
	for _, file := range f.Files {
		kinds[file.Kind] = file
		raw, err := h.archive.Get(context.Background(), strings.TrimPrefix(file.Location, "file://"+h.archive.Root+"/"))
		if err != nil {
			t.Fatalf("%s not in the archive: %v", file.Location, err)
		}
		sum := sha256.Sum256(raw)
		if hex.EncodeToString(sum[:]) != file.SHA256 || int64(len(raw)) != file.Size {
			t.Fatalf("%s: archived bytes hash to %x, record says %s", file.Kind, sum, file.SHA256)
		}
	}
	for _, k := range []string{"signed", "certificate", "audit", "manifest"} {
		if _, ok := kinds[k]; !ok {
			t.Fatalf("no %s file in %+v", k, f.Files)
		}
	}
	// Wait for the repeated change to be consumed too: a later record
	// proves it was handled, and no second finalized record came.
	h.finished("req-2")
	if got := h.finalized(2); got[1].EnvelopeID == ch.EnvelopeID {
		t.Fatalf("the repeated status change was finalised twice: %+v", got)
	}
	if n := metric(t, reg, "esignflow_sink_downloads_total"); n != 6 {
		t.Fatalf("%v downloads for two envelopes, want 6", n)
	}
}

// metric sums a counter's series in reg.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	total, _, err := promread.Sum(reg, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return total
}

func TestCorruptedDownloadRetriedNeverArchived(t *testing.T) {
	h := newHarness(t)
	if err := h.sim.SetFaults(sim.Faults{CorruptDownload: 1}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ch := h.finished("req-c")
	h.start(sink.Config{Metrics: reg, RetryBase: 20 * time.Millisecond, DigestAttempts: 100})
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, reg, "esignflow_sink_download_failures_total") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no digest failure seen")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := h.sim.SetFaults(sim.Faults{}); err != nil {
		t.Fatal(err)
	}
	f := h.finalized(1)[0]
	if f.EnvelopeID != ch.EnvelopeID {
		t.Fatalf("finalized %+v", f)
	}
	for _, file := range f.Files {
		if file.Kind == "signed" {
			d, err := h.client.Download(context.Background(), ch.EnvelopeID, "signed")
			if err != nil {
				t.Fatal(err)
			}
			if d.DeclaredHash != file.SHA256 {
				t.Fatalf("archived %s, the true document is %s", file.SHA256, d.DeclaredHash)
			}
		}
	}
}

func TestDownloadsKeepFailingGoToDLQ(t *testing.T) {
	h := newHarness(t)
	if err := h.sim.SetFaults(sim.Faults{CorruptDownload: 1}); err != nil {
		t.Fatal(err)
	}
	ch := h.finished("req-d")
	reg := prometheus.NewRegistry()
	h.start(sink.Config{RetryBase: time.Millisecond, DigestAttempts: 2, Metrics: reg})
	var dl schemas.DeadLetter
	if err := h.codec.Decode(context.Background(), h.read(h.codec.Topics().DLQ, 1)[0].Value, &dl); err != nil {
		t.Fatal(err)
	}
	if string(dl.Key) != ch.EnvelopeID || !strings.Contains(dl.Error, "SHA-256") || dl.Component != "sink" {
		t.Fatalf("dead letter: %+v", dl)
	}
	for reason, want := range map[string]float64{"digest_mismatch": 1, "download_failed": 0, "no_downloader": 0} {
		got, ok := labelled(t, reg, "esignflow_dead_letters_total", map[string]string{"component": "sink", "reason": reason})
		if !ok || got != want {
			t.Errorf("esignflow_dead_letters_total{component=sink,reason=%s} = %v (exported %v), want %v", reason, got, ok, want)
		}
	}
}

// labelled returns the one series of name in reg with exactly labels;
// false when it is not exported.
func labelled(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	ss, err := promread.Find(reg, name, labels)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if len(s.Labels) == len(labels) {
			return s.Value, true
		}
	}
	return 0, false
}

// A crash after the archive was written and before the record was
// published: the restarted sink publishes from the manifest, downloading
// nothing again, and exactly one finalized record appears.
func TestCrashBetweenArchiveAndPublish(t *testing.T) {
	h := newHarness(t)
	ch := h.finished("req-x")
	reg1 := prometheus.NewRegistry()
	crashed := false
	run := h.start(sink.Config{Metrics: reg1, Crash: func() bool {
		if crashed {
			return false
		}
		crashed = true
		return true
	}})
	if err := <-run.done; !errors.Is(err, sink.ErrCrashed) {
		t.Fatalf("Run: %v", err)
	}
	run.done <- nil
	if ok, _ := h.archive.Exists(context.Background(), sink.ManifestName(ch.EnvelopeID, ch.Version)); !ok {
		t.Fatal("the crash came before the manifest was archived")
	}
	reg2 := prometheus.NewRegistry()
	h.start(sink.Config{Metrics: reg2})
	fins := h.finalized(1)
	h.finished("req-y")
	fins = h.finalized(2)
	n := 0
	for _, f := range fins {
		if f.EnvelopeID == ch.EnvelopeID {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d finalized records for %s", n, ch.EnvelopeID)
	}
	if r := metric(t, reg2, "esignflow_sink_recovered_total"); r != 1 {
		t.Fatalf("recovered = %v, want 1", r)
	}
	if d := metric(t, reg2, "esignflow_sink_downloads_total"); d != 3 {
		t.Fatalf("downloads after restart = %v, want 3 (only req-y's)", d)
	}
}

func TestDeclinedHasAuditOnly(t *testing.T) {
	h := newHarness(t)
	ch := h.finished("req-z")
	st := schemas.StatusDeclined
	ch.Status, ch.State.Status, ch.Version = st, &st, 9
	// The simulator serves the audit trail for any terminal envelope.
	h.publish(ch)
	h.start(sink.Config{})
	fins := h.finalized(2)
	var got *schemas.EnvelopeFinalized
	for i := range fins {
		if fins[i].Status == "DECLINED" {
			got = &fins[i]
		}
	}
	if got == nil {
		t.Fatalf("no DECLINED finalized record: %+v", fins)
	}
	var kinds []string
	for _, f := range got.Files {
		kinds = append(kinds, f.Kind)
	}
	if fmt.Sprint(kinds) != "[audit manifest]" {
		t.Fatalf("files %v, want [audit manifest]", kinds)
	}
}

// A sink whose archive cannot be written is not ready, and is again once
// it can. (Tests run as root, which a chmod does not stop: the archive's
// root is made a regular file instead, which stops everyone.)
func TestNotReadyWhileArchiveUnwritable(t *testing.T) {
	h := newHarness(t)
	root := t.TempDir() + "/archive"
	s, err := sink.New(sink.Config{Brokers: h.brokers, Codec: h.codec, Archive: sink.Dir{Root: root},
		Downloaders: map[string]sink.Downloader{"sim": h.client}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("writable archive: not ready: %v", err)
	}
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); err == nil || !strings.Contains(err.Error(), root) {
		t.Fatalf("archive root replaced by a file: Ready = %v, want an error naming %s", err, root)
	}
	under, err := sink.New(sink.Config{Brokers: h.brokers, Codec: h.codec, Archive: sink.Dir{Root: root + "/below"},
		Downloaders: map[string]sink.Downloader{"sim": h.client}, Metrics: prometheus.NewRegistry(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := under.Ready(ctx); err == nil {
		t.Fatal("archive under a regular file: ready")
	}
	if err := os.Remove(root); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("archive writable again: %v", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("the probe left %d files in the archive", len(entries))
	}
}

// deleting is a provider that deletes what its sender canceled: every
// download of a voided envelope is refused with 410 Gone, and it says so
// (sink.Keeper). It counts the downloads asked of the voided envelope.
type deleting struct {
	inner  sink.Downloader
	voided string
	mu     sync.Mutex
	asked  int
}

func (d *deleting) Download(ctx context.Context, id string, kind provider.Artifact) (provider.Download, error) {
	if id == d.voided {
		d.mu.Lock()
		d.asked++
		d.mu.Unlock()
		return provider.Download{}, &provider.PermanentError{Status: http.StatusGone, Reason: "deleted: This resource has been deleted"}
	}
	return d.inner.Download(ctx, id, kind)
}

func (d *deleting) Keeps(status schemas.Status, _ provider.Artifact) bool {
	return status != schemas.StatusVoided
}

// A voided envelope of a provider that keeps nothing of it is finalised
// without files, its manifest naming the audit trail as not kept: not
// dead-lettered for a refusal no retry changes, and nothing is asked of
// the provider. Its completed envelopes still get all their files.
func TestArtifactNotKeptIsNotAskedFor(t *testing.T) {
	h := newHarness(t)
	voided := h.completed("req-canceled")
	st := schemas.StatusVoided
	voided.Status, voided.State.Status = st, &st
	dl := &deleting{inner: h.client, voided: voided.EnvelopeID}
	h.publish(voided)
	done := h.finished("req-done")
	run := h.start(sink.Config{Downloaders: map[string]sink.Downloader{"sim": dl}})
	byID := map[string]schemas.EnvelopeFinalized{}
	for _, f := range h.finalized(2) {
		byID[f.EnvelopeID] = f
	}
	h.settled(run, voided.EnvelopeID, done.EnvelopeID)
	var kinds []string
	for _, f := range byID[voided.EnvelopeID].Files {
		kinds = append(kinds, f.Kind)
	}
	if got := byID[voided.EnvelopeID]; got.Status != "VOIDED" || fmt.Sprint(kinds) != "[manifest]" {
		t.Fatalf("voided envelope finalised as %s with files %v, want VOIDED with [manifest]", got.Status, kinds)
	}
	raw, err := h.archive.Get(context.Background(), sink.ManifestName(voided.EnvelopeID, voided.Version))
	if err != nil {
		t.Fatal(err)
	}
	var m sink.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(m.NotKept) != "[audit]" || len(m.Files) != 0 {
		t.Fatalf("manifest: files %v, not kept %v; want none and [audit]", m.Files, m.NotKept)
	}
	if dl.asked != 0 {
		t.Errorf("%d downloads asked of the voided envelope, want none", dl.asked)
	}
	if n := len(byID[done.EnvelopeID].Files); n != 4 {
		t.Errorf("completed envelope finalised with %d files, want 4", n)
	}
}
