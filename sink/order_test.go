package sink_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
	"github.com/esignflow/esignflow/sink"
)

// byKind is a Downloader in front of the simulator's client whose answer
// for one envelope a test decides per artefact: fail returns the error of
// the n-th download of kind (nil lets it through).
type byKind struct {
	inner sink.Downloader
	id    string
	mu    sync.Mutex
	calls map[provider.Artifact]int
	fail  func(ctx context.Context, kind provider.Artifact, n int) error
}

func (d *byKind) Download(ctx context.Context, id string, kind provider.Artifact) (provider.Download, error) {
	if id == d.id {
		d.mu.Lock()
		d.calls[kind]++
		n, fail := d.calls[kind], d.fail
		d.mu.Unlock()
		if fail != nil {
			if err := fail(ctx, kind, n); err != nil {
				return provider.Download{}, err
			}
		}
	}
	return d.inner.Download(ctx, id, kind)
}

func (d *byKind) callsOf(kind provider.Artifact) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[kind]
}

// declinedLater is the change of a poll that settles ch's envelope on
// DECLINED, two versions later.
func declinedLater(ch schemas.EnvelopeStatusChanged) schemas.EnvelopeStatusChanged {
	prev, st := ch.Status, schemas.StatusDeclined
	ch.Version, ch.PreviousStatus, ch.Status = ch.Version+2, &prev, st
	ch.State.Status, ch.State.Version = &st, ch.Version
	return ch
}

// retryWatch reads a topic (the retry topic unless said otherwise) as
// the sink commits it.
type retryWatch struct {
	t  *testing.T
	cl *kgo.Client
	// last is each key's last record so far: true for a park, false for
	// a tombstone.
	last map[string]bool
	recs []*kgo.Record
}

func (h *harness) watchRetry() *retryWatch { return h.watch(topics.SinkRetry(h.kafka.Names)) }

func (h *harness) watch(topic string) *retryWatch {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(20*time.Millisecond))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(cl.Close)
	return &retryWatch{t: h.t, cl: cl, last: map[string]bool{}}
}

// poll reads what has been committed since the last poll, waiting for
// it at most briefly.
func (w *retryWatch) poll() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	w.cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
		w.last[string(r.Key)] = r.Value != nil
		w.recs = append(w.recs, r)
	})
}

// finalizedOf returns the finalized records of envelope id, in the order
// of the topic: the sink must have stopped.
func (h *harness) finalizedOf(id string) []schemas.EnvelopeFinalized {
	h.t.Helper()
	var out []schemas.EnvelopeFinalized
	for _, r := range h.all(h.codec.Topics().Finalized) {
		var f schemas.EnvelopeFinalized
		if err := h.codec.Decode(context.Background(), r.Value, &f); err != nil {
			h.t.Fatal(err)
		}
		if f.EnvelopeID == id {
			out = append(out, f)
		}
	}
	return out
}

func versionsOf(fins []schemas.EnvelopeFinalized) string {
	var s []string
	for _, f := range fins {
		s = append(s, fmt.Sprintf("v%d %s", f.Version, f.Status))
	}
	return strings.Join(s, ", ")
}

// COMPLETED v4 waits on the retry topic (the signed document's download
// answers 503); a poll then settles the envelope on DECLINED, v6, which
// needs only the audit trail. v6 is finalised, and v4, when the provider
// is back, is dropped as superseded: esignflow.finalized.v1 read as a
// table, and the archive's latest marker, say DECLINED. (It used to read
// "v6 DECLINED, then v4 COMPLETED".)
func TestSupersededParkedVersionIsNotFinalised(t *testing.T) {
	h := newHarnessN(t, 1)
	v4 := h.completed("req-superseded")
	var down atomic.Bool
	down.Store(true)
	d := &byKind{inner: h.client, id: v4.EnvelopeID, calls: map[provider.Artifact]int{},
		fail: func(_ context.Context, kind provider.Artifact, _ int) error {
			if kind == provider.ArtifactSigned && down.Load() {
				return &provider.TransientError{Err: errors.New("HTTP 503")}
			}
			return nil
		}}
	h.publish(v4)
	reg := prometheus.NewRegistry()
	w := h.watchRetry()
	run := h.start(sink.Config{Downloaders: map[string]sink.Downloader{"sim": d}, Metrics: reg, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	key4 := string(sink.ParkKey(v4.EnvelopeID, v4.Version))
	until(t, "v4 parked", func() bool { w.poll(); return w.last[key4] })
	v6 := declinedLater(v4)
	h.publish(v6)
	if f := h.finalized(1)[0]; f.Version != v6.Version || f.Status != "DECLINED" {
		t.Fatalf("first finalized: v%d %s, want v6 DECLINED", f.Version, f.Status)
	}
	down.Store(false)
	until(t, "v4 no longer parked", func() bool { w.poll(); return !w.last[key4] })
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	if fins := h.finalizedOf(v4.EnvelopeID); len(fins) != 1 || fins[0].Version != v6.Version {
		t.Fatalf("finalized.v1 for %s: %s; want v6 DECLINED alone", v4.EnvelopeID, versionsOf(fins))
	}
	if raw, err := h.archive.Get(context.Background(), sink.LatestName(v4.EnvelopeID)); err != nil || strings.TrimSpace(string(raw)) != "6" {
		t.Errorf("latest marker: %q %v, want 6", raw, err)
	}
	if got := series(t, reg, "esignflow_sink_superseded_total", map[string]string{"status": "COMPLETED"}); got != 1 {
		t.Errorf("superseded_total{COMPLETED} = %v, want 1", got)
	}
	if !h.dlqEmpty() {
		t.Error("something was dead-lettered")
	}
}

// The retry loop is trying COMPLETED v4 (its signed document downloading;
// the files were not ready at its first attempt) when DECLINED v6
// arrives: the status loop does not finalise v6 beside it (v6 could be
// committed first), it parks v6 behind v4, on v4's retry partition, whose
// batches run one at a time. The finalized topic never ends on v4.
func TestNewerVersionWaitsForParkedAttemptInFlight(t *testing.T) {
	h := newHarnessN(t, 2)
	v4 := h.completed("req-in-flight")
	held, release := make(chan struct{}), make(chan struct{})
	d := &byKind{inner: h.client, id: v4.EnvelopeID, calls: map[provider.Artifact]int{},
		fail: func(ctx context.Context, kind provider.Artifact, n int) error {
			if kind != provider.ArtifactSigned {
				return nil
			}
			switch n {
			case 1: // the status loop's attempt: not ready, which says
				// nothing of the provider's other envelopes
				return fmt.Errorf("HTTP 409: %w", provider.ErrNotReady)
			case 2: // the retry loop's: held until v6 was handled
				close(held)
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		}}
	h.publish(v4)
	w, fw := h.watchRetry(), h.watch(h.codec.Topics().Finalized)
	run := h.start(sink.Config{Downloaders: map[string]sink.Downloader{"sim": d}, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	<-held
	v6 := declinedLater(v4)
	h.publish(v6)
	key6 := string(sink.ParkKey(v6.EnvelopeID, v6.Version))
	// v6 handled: parked, or finalised at once.
	until(t, "v6 parked or finalised", func() bool {
		w.poll()
		fw.poll()
		return w.last[key6] || len(fw.recs) > 0
	})
	close(release)
	until(t, "v6 finalised", func() bool {
		for _, f := range h.finalized(1) {
			if f.Version == v6.Version {
				return true
			}
		}
		return false
	})
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	fins := h.finalizedOf(v4.EnvelopeID)
	if len(fins) == 0 || fins[len(fins)-1].Version != v6.Version {
		t.Fatalf("finalized.v1 for %s: %s; want it to end with v6 DECLINED", v4.EnvelopeID, versionsOf(fins))
	}
	for i := 1; i < len(fins); i++ {
		if fins[i].Version < fins[i-1].Version {
			t.Fatalf("finalized.v1 for %s: %s: v%d after v%d", v4.EnvelopeID, versionsOf(fins), fins[i].Version, fins[i-1].Version)
		}
	}
}
