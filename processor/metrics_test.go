package processor_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/promread"
	"github.com/esignflow/esignflow/schemas"
)

// matching calls f with each series of name in reg whose labels include
// labels, and returns how many there were.
func matching(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string, f func(counter float64, count uint64, buckets map[float64]uint64)) int {
	t.Helper()
	ss, err := promread.Find(reg, name, labels)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		f(s.Value, s.Count, s.Buckets)
	}
	return len(ss)
}

// counter returns the value of the one counter of name with labels; false
// when it is not exported.
func counter(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	var v float64
	n := matching(t, reg, name, labels, func(c float64, _ uint64, _ map[float64]uint64) { v = c })
	return v, n == 1
}

// Status changes are counted by status once committed, each with the time
// from its event's received_at; poison records by reason.
func TestStatusAndDeadLetterMetrics(t *testing.T) {
	h := newHarness(t)
	sr := h.readStatus()
	reg := prometheus.NewRegistry()
	cfg := h.config("a")
	cfg.Metrics = reg
	h.start(cfg)

	const age = 1500 * time.Millisecond
	w := newWorkload(7, 5)
	received := time.Now().Add(-age)
	for _, ev := range w.events {
		ev.ReceivedAt = received
		h.produce(h.eventRecord(ev))
	}
	sent := schemas.StatusSent
	unknown := schemas.EnvelopeEvent{EventID: "x", Provider: "nobody", EnvelopeID: "env-x", Source: schemas.SourceWebhook,
		Status: &sent, Recipients: []schemas.RecipientUpdate{}, Metadata: map[string]string{}}
	events := h.codec.Topics().Events
	h.produce(
		&kgo.Record{Topic: events, Key: []byte("env-junk"), Value: []byte("not in the wire format")},
		&kgo.Record{Topic: events, Key: []byte("env-unknown-schema"), Value: []byte{0, 0, 0, 0x27, 0x0f, 2, 'x'}},
		h.eventRecord(unknown),
	)
	h.waitConsumed(int64(len(w.events)+3), 60*time.Second)
	h.waitStored(sr, w, 60*time.Second)

	changes := sr.snapshot()
	byStatus := map[string]float64{}
	for _, c := range changes {
		byStatus[string(c.Status)]++
	}
	waitFor(t, 10*time.Second, "every committed change counted", func() bool {
		var n float64
		matching(t, reg, "esignflow_status_changes_total", nil, func(c float64, _ uint64, _ map[float64]uint64) { n += c })
		return n >= float64(len(changes))
	})
	for _, st := range []string{"CREATED", "SENT", "DELIVERED", "VIEWED", "PARTIALLY_SIGNED", "COMPLETED", "DECLINED", "FAILED"} {
		got, ok := counter(t, reg, "esignflow_status_changes_total", map[string]string{"status": st})
		if !ok || got != byStatus[st] {
			t.Errorf("esignflow_status_changes_total{status=%s} = %v (exported %v), the status topic has %v", st, got, ok, byStatus[st])
		}
	}

	var count uint64
	var under1s, under60s uint64
	matching(t, reg, "esignflow_event_to_status_seconds", nil, func(_ float64, n uint64, buckets map[float64]uint64) {
		count += n
		under1s += buckets[1]
		under60s += buckets[60]
	})
	if count != uint64(len(changes)) {
		t.Errorf("esignflow_event_to_status_seconds has %d observations, want one per committed change (%d)", count, len(changes))
	}
	if under1s != 0 {
		t.Errorf("%d observations under 1s: events were received %s before they were produced", under1s, age)
	}
	if under60s != count {
		t.Errorf("%d of %d observations under 60s: measured from something older than received_at", under60s, count)
	}
	for _, src := range []string{"API", "WEBHOOK"} {
		if matching(t, reg, "esignflow_event_to_status_seconds", map[string]string{"source": src}, func(float64, uint64, map[float64]uint64) {}) != 1 {
			t.Errorf("no esignflow_event_to_status_seconds{source=%s}", src)
		}
	}

	for reason, want := range map[string]float64{"undecodable": 1, "unknown_schema": 1, "invalid": 1, "incompatible_schema": 0} {
		got, ok := counter(t, reg, "esignflow_dead_letters_total", map[string]string{"component": "processor", "reason": reason})
		if !ok || got != want {
			t.Errorf("esignflow_dead_letters_total{component=processor,reason=%s} = %v (exported %v), want %v", reason, got, ok, want)
		}
	}
	for _, loop := range []string{"events", "requests"} {
		if _, ok := counter(t, reg, "esignflow_transactions_aborted_total", map[string]string{"loop": loop, "reason": "handler"}); !ok {
			t.Errorf("esignflow_transactions_aborted_total{loop=%s,reason=handler} not exported", loop)
		}
	}
}
