package processor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// An upgrade from an esignflow whose stored values had the first layout
// (the schemas before recipients could bounce or be replaced; their Avro
// bodies do not decode with today's) restores each partition from the
// changelog instead of reading them: the checkpoints that version wrote
// name no layout. Redis is made to hold exactly what it wrote — its
// checkpoints and its envelope values, encoded with the schemas of then
// (schemas/testdata/v1) — and the new version, started on it, goes on
// exactly once.
func TestUpgradeFromFirstLayoutRestores(t *testing.T) {
	h := newHarness(t)
	sr := h.readStatus()
	w := newWorkload(5, 12)
	first, rest := w.events[:len(w.events)/2], w.events[len(w.events)/2:]
	a := h.start(h.config("a"))
	for _, ev := range first {
		h.produce(h.eventRecord(ev))
	}
	h.waitConsumed(int64(len(first)), 60*time.Second)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}

	old := firstLayout(t)
	ctx := context.Background()
	rc, prefix := h.redis.Client, h.redis.Prefix
	// Keys named, not listed: KEYS on a Redis Cluster asks one node.
	var ckpts []string
	for p := range 4 {
		k := fmt.Sprintf("%s{p%d}:ckpt", prefix, p)
		hist, err := rc.HGet(ctx, k, "history").Result()
		if errors.Is(err, redis.Nil) {
			continue // no event of the first half went to p
		}
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.LastIndex(hist, "/layout"); i >= 0 {
			hist = hist[:i] // cluster id/topic id, as the first layout wrote it
		}
		if err := rc.HSet(ctx, k, "history", hist).Err(); err != nil {
			t.Fatal(err)
		}
		ckpts = append(ckpts, k)
	}
	var ids []string
	for id := range w.final {
		ids = append(ids, id)
	}
	stored, err := h.stored(ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(ckpts) == 0 || len(stored) == 0 {
		t.Fatalf("%d checkpoints and %d envelopes stored by the first half", len(ckpts), len(stored))
	}
	for id, e := range stored {
		b, err := avro.Marshal(old, &e)
		if err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("%s{p%d}:env:%s", prefix, partitionOf(id), id)
		if err := rc.Set(ctx, k, append([]byte{1}, b...), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}

	reg := prometheus.NewRegistry()
	cfg := h.config("b")
	cfg.Metrics = reg
	h.start(cfg)
	for _, ev := range rest {
		h.produce(h.eventRecord(ev))
	}
	waitFinal(t, sr, w, 60*time.Second)
	checkExactlyOnce(t, sr.snapshot(), w.final)
	if n, _ := counter(t, reg, "esignflow_processor_restores_total", nil); n < float64(len(ckpts)) {
		t.Fatalf("%v partitions restored, want each of the %d the first layout wrote", n, len(ckpts))
	}
}

// firstLayout is the schema the store wrote envelopes with before layout
// 2: its stored-envelope record over the status schema of then.
func firstLayout(t *testing.T) avro.Schema {
	t.Helper()
	text, err := os.ReadFile("../schemas/testdata/v1/EnvelopeStatusChanged.avsc")
	if err != nil {
		t.Fatal(err)
	}
	cache := &avro.SchemaCache{}
	if _, err := avro.ParseWithCache(string(text), "", cache); err != nil {
		t.Fatal(err)
	}
	s, err := avro.ParseWithCache(`{"type":"record","name":"StoredEnvelope","namespace":"esignflow.store","fields":[
		{"name":"state","type":"esignflow.EnvelopeState"},
		{"name":"pending","type":{"type":"array","items":"esignflow.AuditEntry"}}]}`, "", cache)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
