package sink_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/esignflow/esignflow/internal/topicread"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
	"github.com/esignflow/esignflow/sink"
)

// gate is a Downloader in front of the simulator's client whose answers a
// test decides: fail returns the error of the n-th download of an
// envelope (nil lets it through).
type gate struct {
	inner sink.Downloader
	mu    sync.Mutex
	calls map[string]int
	fail  func(id string, n int) error
}

func newGate(inner sink.Downloader, fail func(id string, n int) error) *gate {
	return &gate{inner: inner, calls: map[string]int{}, fail: fail}
}

func (g *gate) Download(ctx context.Context, id string, kind provider.Artifact) (provider.Download, error) {
	g.mu.Lock()
	g.calls[id]++
	n, fail := g.calls[id], g.fail
	g.mu.Unlock()
	if fail != nil {
		if err := fail(id, n); err != nil {
			return provider.Download{}, err
		}
	}
	return g.inner.Download(ctx, id, kind)
}

func (g *gate) set(fail func(id string, n int) error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fail = fail
}

func (g *gate) callsOf(id string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[id]
}

// unavailable fails the downloads of one envelope as a provider that is
// down does.
func unavailable(envelopeID string) func(string, int) error {
	return func(id string, _ int) error {
		if id == envelopeID {
			return &provider.TransientError{Err: errors.New("HTTP 503: down for maintenance")}
		}
		return nil
	}
}

// until waits for cond, failing the test with what after a minute.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// all returns every committed record of topic, read up to its end: the
// sink that wrote it must have stopped.
func (h *harness) all(topic string) []*kgo.Record {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	err := topicread.AllSettled(ctx, []kgo.Opt{kgo.SeedBrokers(h.brokers...)}, topic, func(r *kgo.Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		h.t.Fatalf("%s: not read to its end: %v", topic, err)
	}
	return out
}

// settled stops the sink and checks what it left: exactly one finalized
// record for each envelope of once, an empty DLQ, and nothing parked on
// the retry topic (each envelope version's last record there is a
// tombstone).
func (h *harness) settled(run *running, once ...string) {
	h.t.Helper()
	if err := run.stop(); err != nil {
		h.t.Fatalf("Run: %v", err)
	}
	n := map[string]int{}
	for _, r := range h.all(h.codec.Topics().Finalized) {
		n[string(r.Key)]++
	}
	for _, id := range once {
		if n[id] != 1 {
			h.t.Errorf("%s finalised %d times, want once", id, n[id])
		}
	}
	if dls := h.all(h.codec.Topics().DLQ); len(dls) != 0 {
		h.t.Errorf("%d dead letters, want none: first key %q", len(dls), dls[0].Key)
	}
	last := map[string]*kgo.Record{}
	for _, r := range h.all(topics.SinkRetry(h.kafka.Names)) {
		last[string(r.Key)] = r
	}
	for k, r := range last {
		if r.Value != nil {
			h.t.Errorf("%s is still parked", k)
		}
	}
}

// dlqEmpty reports whether nothing was ever written to the DLQ.
func (h *harness) dlqEmpty() bool {
	h.t.Helper()
	ends, err := kadm.NewClient(h.prod).ListEndOffsets(context.Background(), h.codec.Topics().DLQ)
	if err != nil {
		h.t.Fatal(err)
	}
	empty := true
	ends.Each(func(o kadm.ListedOffset) { empty = empty && o.Offset == 0 })
	return empty
}

func series(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	v, _ := labelled(t, reg, name, labels)
	return v
}

// The provider answers 503 to every download, for many more attempts
// than the old five: the envelope waits, parked, and is finalised once
// when the provider is back; nothing is dead-lettered.
func TestSinkWaitsOutProviderOutage(t *testing.T) {
	h := newHarness(t)
	ch := h.finished("req-outage")
	if err := h.sim.SetFaults(sim.Faults{APIError: 1}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	logs := newLogCount()
	run := h.start(sink.Config{Metrics: reg, Logger: slog.New(logs), RetryBase: 5 * time.Millisecond, RetryMax: 40 * time.Millisecond})
	until(t, "8 failed downloads", func() bool {
		if !h.dlqEmpty() {
			t.Fatalf("dead-lettered after %v failed downloads", metric(t, reg, "esignflow_sink_download_failures_total"))
		}
		return metric(t, reg, "esignflow_sink_download_failures_total") >= 8
	})
	if got := series(t, reg, "esignflow_sink_retries_total", map[string]string{"reason": "unavailable"}); got < 7 {
		t.Errorf("retries{unavailable} = %v after 8 failed downloads", got)
	}
	if got := metric(t, reg, "esignflow_sink_parked"); got != 1 {
		t.Errorf("esignflow_sink_parked = %v during the outage, want 1", got)
	}
	if err := h.sim.SetFaults(sim.Faults{}); err != nil {
		t.Fatal(err)
	}
	if f := h.finalized(1)[0]; f.EnvelopeID != ch.EnvelopeID {
		t.Fatalf("finalized %+v", f)
	}
	until(t, "the parked gauge back to 0", func() bool { return metric(t, reg, "esignflow_sink_parked") == 0 })
	h.settled(run, ch.EnvelopeID)
	// A warning on the 1st, 2nd, 4th, 8th… failed attempt, not on each.
	retries := int(metric(t, reg, "esignflow_sink_retries_total"))
	t.Logf("%d failed attempts, %d warnings", retries, logs.waits.Load())
	if w := int(logs.waits.Load()); w < 1 || w > bits.Len(uint(retries))+1 {
		t.Errorf("%d warnings that the envelope waits for %d failed attempts, want about log2 of it", w, retries)
	}
}

// One envelope's downloads keep failing; the envelopes after it on the
// same partition are finalised meanwhile, and it is when its provider
// answers.
func TestParkedEnvelopeDoesNotHoldOthers(t *testing.T) {
	h := newHarnessN(t, 1) // one partition: every envelope behind the stuck one
	stuck := h.completed("req-stuck")
	g := newGate(h.client, unavailable(stuck.EnvelopeID))
	h.publish(stuck)
	var others []string
	for i := range 3 {
		others = append(others, h.finished(fmt.Sprintf("req-next-%d", i)).EnvelopeID)
	}
	run := h.start(sink.Config{Downloaders: map[string]sink.Downloader{"sim": g}, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	for _, f := range h.finalized(3) {
		if f.EnvelopeID == stuck.EnvelopeID {
			t.Fatalf("%s finalised while its downloads fail", f.EnvelopeID)
		}
	}
	if !h.dlqEmpty() {
		t.Fatal("the stuck envelope was dead-lettered")
	}
	if n := g.callsOf(stuck.EnvelopeID); n < 1 {
		t.Fatalf("the stuck envelope was never tried")
	}
	g.set(nil)
	fins := h.finalized(4)
	if fins[3].EnvelopeID != stuck.EnvelopeID {
		t.Fatalf("4th finalised %s, want the stuck %s", fins[3].EnvelopeID, stuck.EnvelopeID)
	}
	h.settled(run, append(others, stuck.EnvelopeID)...)
}

// A parked envelope is in Kafka, not in the sink's memory: a new sink
// finalises it once the provider answers, exactly once.
func TestParkedEnvelopeSurvivesRestart(t *testing.T) {
	h := newHarness(t)
	ch := h.completed("req-restart")
	g := newGate(h.client, unavailable(ch.EnvelopeID))
	h.publish(ch)
	reg1 := prometheus.NewRegistry()
	cfg := sink.Config{Downloaders: map[string]sink.Downloader{"sim": g}, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond}
	first := cfg
	first.Metrics = reg1
	run1 := h.start(first)
	// Parked twice: once by the status loop, once by the retry loop.
	until(t, "two retries", func() bool { return metric(t, reg1, "esignflow_sink_retries_total") >= 2 })
	if err := run1.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	parked := false
	for _, r := range h.all(topics.SinkRetry(h.kafka.Names)) {
		parked = r.Value != nil && string(r.Key) == string(sink.ParkKey(ch.EnvelopeID, ch.Version))
	}
	if !parked {
		t.Fatal("after the stop, the envelope's last record on the retry topic is not a park")
	}
	g.set(nil)
	reg2 := prometheus.NewRegistry()
	second := cfg
	second.Metrics, second.InstanceID = reg2, "s2"
	run2 := h.start(second)
	if f := h.finalized(1)[0]; f.EnvelopeID != ch.EnvelopeID {
		t.Fatalf("finalized %+v", f)
	}
	h.settled(run2, ch.EnvelopeID)
	if d := metric(t, reg2, "esignflow_sink_downloads_total"); d != 3 {
		t.Errorf("the new sink downloaded %v artefacts, want 3", d)
	}
}

// logCount counts log records at error level or above, and the warnings
// that an envelope waits.
type logCount struct {
	errors, waits *atomic.Int64
}

func newLogCount() logCount { return logCount{errors: &atomic.Int64{}, waits: &atomic.Int64{}} }

func (c logCount) Enabled(context.Context, slog.Level) bool { return true }
func (c logCount) Handle(_ context.Context, r slog.Record) error {
	switch {
	case r.Level >= slog.LevelError:
		c.errors.Add(1)
	case r.Level == slog.LevelWarn && strings.HasPrefix(r.Message, "envelope waits"):
		c.waits.Add(1)
	}
	return nil
}
func (c logCount) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c logCount) WithGroup(string) slog.Handler      { return c }

// A provider that answers "not ready" (Dropbox Sign's 409 while it
// prepares the files) a few times is waited for: finalised, no dead
// letter, not one error in the log.
func TestNotReadyIsNotAnError(t *testing.T) {
	h := newHarness(t)
	ch := h.completed("req-409")
	g := newGate(h.client, func(id string, n int) error {
		if id == ch.EnvelopeID && n <= 3 {
			return fmt.Errorf("files of %s: HTTP 409: %w", id, provider.ErrNotReady)
		}
		return nil
	})
	h.publish(ch)
	reg := prometheus.NewRegistry()
	logs := newLogCount()
	run := h.start(sink.Config{Downloaders: map[string]sink.Downloader{"sim": g}, Metrics: reg, Logger: slog.New(logs),
		RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	if f := h.finalized(1)[0]; f.EnvelopeID != ch.EnvelopeID {
		t.Fatalf("finalized %+v", f)
	}
	h.settled(run, ch.EnvelopeID)
	if n := logs.errors.Load(); n != 0 {
		t.Errorf("%d error-level log records", n)
	}
	if got := series(t, reg, "esignflow_sink_retries_total", map[string]string{"reason": "not_ready"}); got != 3 {
		t.Errorf("retries{not_ready} = %v, want 3", got)
	}
}

// A refusal that retrying cannot change goes to the DLQ at once, tried
// once, and is not finalised.
func TestPermanentRefusalIsDeadLettered(t *testing.T) {
	h := newHarness(t)
	ch := h.completed("req-403")
	g := newGate(h.client, func(id string, _ int) error {
		return &provider.PermanentError{Status: http.StatusForbidden, Reason: "this API key may not download these files"}
	})
	h.publish(ch)
	reg := prometheus.NewRegistry()
	run := h.start(sink.Config{Downloaders: map[string]sink.Downloader{"sim": g}, Metrics: reg, RetryBase: 5 * time.Millisecond})
	var dl schemas.DeadLetter
	r := h.read(h.codec.Topics().DLQ, 1)[0]
	if err := h.codec.Decode(context.Background(), r.Value, &dl); err != nil {
		t.Fatal(err)
	}
	if string(dl.Key) != ch.EnvelopeID || dl.Component != "sink" || dl.Topic != h.codec.Topics().Status || !strings.Contains(dl.Error, "refused (403)") {
		t.Fatalf("dead letter: %+v", dl)
	}
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(h.all(h.codec.Topics().Finalized)); n != 0 {
		t.Errorf("%d finalized records for a refused envelope", n)
	}
	if n := g.callsOf(ch.EnvelopeID); n != 1 {
		t.Errorf("%d downloads of a refused envelope, want 1", n)
	}
	if got := metric(t, reg, "esignflow_sink_retries_total"); got != 0 {
		t.Errorf("%v retries of a refusal", got)
	}
	if got := series(t, reg, "esignflow_dead_letters_total", map[string]string{"component": "sink", "reason": "download_failed"}); got != 1 {
		t.Errorf("dead_letters{sink,download_failed} = %v, want 1", got)
	}
}

// A status record written with a schema the registry cannot serve right
// now (503) is waited for, then finalised: not skipped, not dead-lettered.
func TestUndecodableWhileRegistryDownIsRetried(t *testing.T) {
	h := newHarness(t)
	// The same schema under an id the sink's codec has never resolved,
	// as a record written by another producer would carry.
	text, err := schemas.Text(schemas.TopicStatus)
	if err != nil {
		t.Fatal(err)
	}
	const id = 9999
	h.registry.SeedSchema(schemas.Subject(h.codec.Topics().Status), 1000, id, sr.Schema{Schema: text, Type: sr.TypeAvro})
	var down atomic.Bool
	var refused atomic.Int64
	var first atomic.Pointer[time.Time]
	down.Store(true)
	h.registry.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if down.Load() && strings.Contains(r.URL.Path, fmt.Sprintf("/schemas/ids/%d", id)) {
			now := time.Now()
			first.CompareAndSwap(nil, &now)
			refused.Add(1)
			http.Error(w, `{"error_code":50301,"message":"the registry is starting"}`, http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	ch := h.completed("req-registry")
	val, err := h.codec.Encode(&ch)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(val[1:5], id)
	h.publishRaw(ch.EnvelopeID, val)
	run := h.start(sink.Config{})
	// Down for longer than the codec's grace for an unknown schema (a
	// quarter of a second here): a registry that does not answer is
	// never a reason to call the record poison.
	until(t, "the sink refused by the registry three times over a second", func() bool {
		f := first.Load()
		return refused.Load() >= 3 && f != nil && time.Since(*f) > time.Second
	})
	down.Store(false)
	if f := h.finalized(1)[0]; f.EnvelopeID != ch.EnvelopeID {
		t.Fatalf("finalized %+v", f)
	}
	h.settled(run, ch.EnvelopeID)
}

// A status record that is not Avro at all is dead-lettered with its
// bytes (it used to be skipped: an envelope never finalised, silently).
func TestPoisonStatusIsDeadLettered(t *testing.T) {
	h := newHarness(t)
	h.publishRaw("env-poison", []byte("not avro"))
	h.start(sink.Config{})
	var dl schemas.DeadLetter
	if err := h.codec.Decode(context.Background(), h.read(h.codec.Topics().DLQ, 1)[0].Value, &dl); err != nil {
		t.Fatal(err)
	}
	if string(dl.Key) != "env-poison" || string(dl.Value) != "not avro" || dl.Component != "sink" || dl.Topic != h.codec.Topics().Status {
		t.Fatalf("dead letter: %+v", dl)
	}
}

// Replaying a sink dead letter (ReplayRecord, what `esignflow dlq replay`
// produces) finalises the envelope again through the retry topic.
func TestReplayRecordFinalises(t *testing.T) {
	h := newHarness(t)
	ch := h.completed("req-replay")
	refuse := newGate(h.client, func(string, int) error { return &provider.PermanentError{Status: 403, Reason: "no"} })
	h.publish(ch)
	run := h.start(sink.Config{Downloaders: map[string]sink.Downloader{"sim": refuse}})
	var dl schemas.DeadLetter
	if err := h.codec.Decode(context.Background(), h.read(h.codec.Topics().DLQ, 1)[0].Value, &dl); err != nil {
		t.Fatal(err)
	}
	refuse.set(nil)
	for range 2 { // twice: finalised once
		rec := sink.ReplayRecord(context.Background(), h.codec, topics.SinkRetry(h.kafka.Names), dl, time.Now())
		if err := h.prod.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if f := h.finalized(1)[0]; f.EnvelopeID != ch.EnvelopeID {
		t.Fatalf("finalized %+v", f)
	}
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(h.all(h.codec.Topics().Finalized)); n != 1 {
		t.Errorf("%d finalized records, want 1", n)
	}
	if n := len(h.all(h.codec.Topics().Status)); n != 1 {
		t.Errorf("status topic has %d records, want the 1 published", n)
	}
}

// A provider that keeps saying it does not know a finished envelope is
// believed only after NotFoundAfter: retried until then, dead-lettered
// (not_found) after.
func TestNotFoundIsRetriedThenDeadLettered(t *testing.T) {
	h := newHarness(t)
	ch := h.completed("req-404")
	g := newGate(h.client, func(id string, _ int) error { return fmt.Errorf("files of %s: %w", id, provider.ErrNotFound) })
	h.publish(ch)
	reg := prometheus.NewRegistry()
	h.start(sink.Config{Downloaders: map[string]sink.Downloader{"sim": g}, Metrics: reg,
		RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, NotFoundAfter: 200 * time.Millisecond})
	var dl schemas.DeadLetter
	if err := h.codec.Decode(context.Background(), h.read(h.codec.Topics().DLQ, 1)[0].Value, &dl); err != nil {
		t.Fatal(err)
	}
	if string(dl.Key) != ch.EnvelopeID || !strings.Contains(dl.Error, "not found") || !strings.Contains(dl.Error, "failed attempts") {
		t.Fatalf("dead letter: %+v", dl)
	}
	if got := series(t, reg, "esignflow_sink_retries_total", map[string]string{"reason": "not_found"}); got < 2 {
		t.Errorf("retries{not_found} = %v before the dead letter, want several", got)
	}
	until(t, "the dead letter counted", func() bool {
		return series(t, reg, "esignflow_dead_letters_total", map[string]string{"component": "sink", "reason": "not_found"}) == 1
	})
}

// A provider that asks to wait longer than RetryMax (Retry-After) is not
// asked again before that: the retry loop's hold is capped at RetryMax,
// and a record polled before it is due is parked again, untried.
func TestRetryAfterBeyondRetryMaxIsHonoured(t *testing.T) {
	h := newHarnessN(t, 1)
	ch := h.completed("req-retry-after")
	const after = 500 * time.Millisecond
	var mu sync.Mutex
	var calls []time.Time
	g := newGate(h.client, func(id string, n int) error {
		mu.Lock()
		calls = append(calls, time.Now())
		mu.Unlock()
		if n == 1 {
			return &provider.RateLimitedError{RetryAfter: after}
		}
		return nil
	})
	h.publish(ch)
	run := h.start(sink.Config{Downloaders: map[string]sink.Downloader{"sim": g}, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	if f := h.finalized(1)[0]; f.EnvelopeID != ch.EnvelopeID {
		t.Fatalf("finalized %+v", f)
	}
	h.settled(run, ch.EnvelopeID)
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 4 {
		t.Errorf("%d downloads, want 4: the refused one, then the three artefacts", len(calls))
	}
	if len(calls) >= 2 {
		if gap := calls[1].Sub(calls[0]); gap < after {
			t.Errorf("asked again %v after the provider said to wait %v", gap, after)
		}
	}
}

// parks waits until key has been parked n times on the retry topic (n
// records of it that are not tombstones).
func (h *harness) parks(key []byte, n int) {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(topics.SinkRetry(h.kafka.Names)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := 0
	for seen < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			h.t.Fatalf("%s parked %d times, want %d", key, seen, n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) == string(key) && r.Value != nil {
				seen++
			}
		})
	}
}

// The status loop stops calling a provider whose last attempt failed,
// but not for ever: on a replica whose retry loop makes no attempt (here
// the one envelope it holds is not due for an hour; in production, a
// replica with status partitions and no retry partitions) the flag
// expires after RetryMax and the next envelope is tried by the status
// loop itself, never parked.
func TestProviderDownFlagExpires(t *testing.T) {
	h := newHarnessN(t, 1)
	limited := h.completed("req-limited")
	g := newGate(h.client, func(id string, _ int) error {
		if id == limited.EnvelopeID {
			return &provider.RateLimitedError{RetryAfter: time.Hour}
		}
		return nil
	})
	h.publish(limited)
	run := h.start(sink.Config{Downloaders: map[string]sink.Downloader{"sim": g}, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	// Parked by the status loop, then again by the retry loop after a
	// hold of RetryMax: the flag the failure raised has expired.
	h.parks(sink.ParkKey(limited.EnvelopeID, limited.Version), 2)
	next := h.finished("req-after-expiry")
	if f := h.finalized(1)[0]; f.EnvelopeID != next.EnvelopeID {
		t.Fatalf("finalized %+v", f)
	}
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	for _, r := range h.all(topics.SinkRetry(h.kafka.Names)) {
		if string(r.Key) == string(sink.ParkKey(next.EnvelopeID, next.Version)) {
			t.Fatalf("%s was parked: the status loop did not try it", r.Key)
		}
	}
	if n := g.callsOf(limited.EnvelopeID); n != 1 {
		t.Errorf("the rate-limited envelope was asked %d times, want once", n)
	}
}

// A batch that does not commit (here a crash after archiving) finalised
// nothing: esignflow_sink_finalized_total counts committed records.
func TestFinalizedCountedOnCommit(t *testing.T) {
	h := newHarness(t)
	ch := h.finished("req-count")
	reg1 := prometheus.NewRegistry()
	var crashed atomic.Bool
	run := h.start(sink.Config{Metrics: reg1, Crash: func() bool { return crashed.CompareAndSwap(false, true) }})
	if err := <-run.done; !errors.Is(err, sink.ErrCrashed) {
		t.Fatalf("Run: %v", err)
	}
	run.done <- nil // for the cleanup's stop
	if n := metric(t, reg1, "esignflow_sink_finalized_total"); n != 0 {
		t.Errorf("finalized_total = %v after a batch that did not commit, want 0", n)
	}
	reg2 := prometheus.NewRegistry()
	run = h.start(sink.Config{Metrics: reg2, InstanceID: "s2"})
	if f := h.finalized(1)[0]; f.EnvelopeID != ch.EnvelopeID {
		t.Fatalf("finalized %+v", f)
	}
	h.settled(run, ch.EnvelopeID)
	if n := series(t, reg2, "esignflow_sink_finalized_total", map[string]string{"status": "COMPLETED"}); n != 1 {
		t.Errorf("finalized_total{COMPLETED} = %v after the commit, want 1", n)
	}
}

// slowArchive is an archive whose Put of one name waits until its
// context ends, until released.
type slowArchive struct {
	sink.Dir
	name    string
	release chan struct{}
}

func (a *slowArchive) Put(ctx context.Context, name string, data []byte) (string, error) {
	if name == a.name {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("archive: put %s: %w", name, ctx.Err())
		case <-a.release:
		}
	}
	return a.Dir.Put(ctx, name, data)
}

// An archive write cut short by the attempt's deadline is an attempt
// timeout: the envelope is parked and tried again, and the envelopes
// behind it are finalised meanwhile (it used to abort the batch, which
// was consumed again into the same timeout, for as long as it lasted).
func TestArchiveTimeoutParksEnvelope(t *testing.T) {
	h := newHarnessN(t, 1)
	slow := h.finished("req-slow-archive")
	next := h.finished("req-behind")
	a := &slowArchive{Dir: h.archive, name: sink.ManifestName(slow.EnvelopeID, slow.Version), release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	run := h.start(sink.Config{Archive: a, Metrics: reg, AttemptTimeout: 200 * time.Millisecond, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	if f := h.finalized(1)[0]; f.EnvelopeID != next.EnvelopeID {
		t.Fatalf("finalized %+v, want %s first", f, next.EnvelopeID)
	}
	until(t, "the timed-out attempt counted as a retry", func() bool {
		return series(t, reg, "esignflow_sink_retries_total", map[string]string{"reason": "unavailable"}) >= 1
	})
	close(a.release)
	if f := h.finalized(2)[1]; f.EnvelopeID != slow.EnvelopeID {
		t.Fatalf("finalized %+v, want %s", f, slow.EnvelopeID)
	}
	h.settled(run, slow.EnvelopeID, next.EnvelopeID)
}

// TestMissingRetryTopicIsCreated: a sink started where its retry topic
// does not exist (upgraded before its topics were) creates it, with the
// status topic's partition count, and parks on it.
func TestMissingRetryTopicIsCreated(t *testing.T) {
	h := newHarness(t)
	retry := topics.SinkRetry(h.kafka.Names)
	adm := kadm.NewClient(h.prod)
	if _, err := adm.DeleteTopics(context.Background(), retry); err != nil {
		t.Fatal(err)
	}
	partitions := func() int {
		d, err := adm.ListTopics(context.Background(), retry)
		if err != nil {
			t.Fatal(err)
		}
		if td, ok := d[retry]; ok && td.Err == nil {
			return len(td.Partitions)
		}
		return 0
	}
	until(t, "the retry topic deleted", func() bool { return partitions() == 0 })
	ch := h.finished("req-missing-retry")
	if err := h.sim.SetFaults(sim.Faults{APIError: 1}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	run := h.start(sink.Config{Metrics: reg, RetryBase: 5 * time.Millisecond, RetryMax: 40 * time.Millisecond})
	until(t, "the envelope parked", func() bool { return metric(t, reg, "esignflow_sink_parked") == 1 })
	if n := partitions(); n != 2 {
		t.Fatalf("the retry topic has %d partitions, want the status topic's 2", n)
	}
	if err := h.sim.SetFaults(sim.Faults{}); err != nil {
		t.Fatal(err)
	}
	if f := h.finalized(1)[0]; f.EnvelopeID != ch.EnvelopeID {
		t.Fatalf("finalized %+v", f)
	}
	h.settled(run, ch.EnvelopeID)
}
