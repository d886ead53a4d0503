package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/schemas"
)

// TestMemoryPerEnvelope measures, with MEMORY USAGE on a real Redis (it
// skips on miniredis, which has no MEMORY command), what one envelope
// costs over its lifecycle: its state, its dedup records, and its share of
// the partition's active index and dedup log. n envelopes in flight
// (created, sent to two recipients, the first has viewed it) and n
// finished ones (both signed, completed, a confirming poll) go through
// the store as the processor applies them, one batch per lifecycle step
// holding every envelope's event of that step.
//
//	ESIGNFLOW_TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test ./internal/store -run TestMemoryPerEnvelope -v
func TestMemoryPerEnvelope(t *testing.T) {
	if !redistest.Real() || redistest.Cluster() {
		t.Skip("MEMORY USAGE needs a real single Redis (ESIGNFLOW_TEST_REDIS_URL)")
	}
	const n = 1000
	s, r := newStore(t)
	o := claim(t, s, 0, 1)
	ctx := context.Background()
	rcp := func(id string, st schemas.RecipientStatus) []schemas.RecipientUpdate {
		return []schemas.RecipientUpdate{{RecipientID: id, Email: id + "@example.com", Name: "Signer " + id, Status: st}}
	}
	type step struct {
		status     schemas.Status // "" for a recipient update
		recipients []schemas.RecipientUpdate
		source     schemas.Source
		finished   bool // only the finished envelopes take this step
	}
	steps := []step{
		{status: schemas.StatusCreated, source: schemas.SourceAPI},
		{status: schemas.StatusSent, source: schemas.SourceAPI},
		{recipients: append(rcp("r1", schemas.RecipientSent), rcp("r2", schemas.RecipientSent)...), source: schemas.SourceWebhook},
		{recipients: rcp("r1", schemas.RecipientDelivered), source: schemas.SourceWebhook},
		{recipients: rcp("r1", schemas.RecipientViewed), source: schemas.SourceWebhook},
		{recipients: rcp("r1", schemas.RecipientSigned), source: schemas.SourceWebhook, finished: true},
		{recipients: rcp("r2", schemas.RecipientSigned), source: schemas.SourceWebhook, finished: true},
		{status: schemas.StatusCompleted, source: schemas.SourceWebhook, finished: true},
		{status: schemas.StatusCompleted, source: schemas.SourcePoll, finished: true},
	}
	id := func(kind string, i int) string { return fmt.Sprintf("env-%s-%06d", kind, i) }
	var offset int64
	for si, st := range steps {
		var evs []schemas.EnvelopeEvent
		for _, kind := range []string{"inflight", "finished"} {
			if st.finished && kind == "inflight" {
				continue
			}
			for i := range n {
				e := ev(id(kind, i), fmt.Sprintf("%s-ev%d", id(kind, i), si), st.status)
				if st.status == "" {
					e.Status = nil
				}
				tenant := "tenant-a"
				e.Tenant, e.Source, e.Recipients = &tenant, st.source, st.recipients
				e.OccurredAt = t0.Add(time.Duration(si) * time.Minute)
				e.ReceivedAt = e.OccurredAt.Add(50 * time.Millisecond)
				evs = append(evs, e)
			}
		}
		o.apply(o.inputs(offset, evs...))
		offset += int64(len(evs))
	}

	usage := func(k string) int64 {
		v, err := r.Client.Do(ctx, "memory", "usage", k, "samples", "0").Int64()
		if err != nil && err != redis.Nil {
			t.Fatalf("MEMORY USAGE %s: %v", k, err)
		}
		return v
	}
	// Every key, attributed to its envelope or to the partition.
	perEnv := map[string]map[string]int64{} // envelope → key kind → bytes
	var active, dedupLog, other int64
	iter := r.Client.Scan(ctx, 0, r.Prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		rest := strings.TrimPrefix(k, r.Prefix)
		b := usage(k)
		var env, kind string
		switch {
		case strings.HasSuffix(rest, ":active"):
			active += b
			continue
		case strings.HasSuffix(rest, ":dedup-log"):
			dedupLog += b
			continue
		case strings.Contains(rest, ":env:"):
			env, kind = rest[strings.Index(rest, ":env:")+5:], "env"
		case strings.Contains(rest, ":dedup:"):
			kind = "dedup"
			if i := strings.Index(rest, "env-"); i >= 0 {
				env = rest[i : i+len("env-inflight-000000")]
				if strings.Contains(rest, "env-finished-") {
					env = rest[i : i+len("env-finished-000000")]
				}
			}
		case strings.Contains(rest, "req:"):
			kind = "request"
			if i := strings.Index(rest, "req-"); i >= 0 {
				env = rest[i+4:]
			}
		}
		if env == "" {
			other += b
			continue
		}
		if perEnv[env] == nil {
			perEnv[env] = map[string]int64{}
		}
		perEnv[env][kind] += b
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"inflight", "finished"} {
		var env, dedup, req int64
		for i := range n {
			m := perEnv[id(kind, i)]
			env, dedup, req = env+m["env"], dedup+m["dedup"], req+m["request"]
		}
		env, dedup, req = env/n, dedup/n, req/n
		// The active index holds the in-flight envelopes only; the dedup
		// log has an entry per dedup record, shared by record count.
		var activeShare int64
		if kind == "inflight" {
			activeShare = active / n
		}
		records := int64(5) // in flight: created, sent, 3 recipient steps
		if kind == "finished" {
			records = int64(len(steps))
		}
		logShare := dedupLog * records / int64(n*5+n*len(steps))
		total := env + dedup + req + activeShare + logShare
		t.Logf("%-8s envelope: %5d bytes = state %d + %d dedup records %d + request index %d + active index share %d + dedup log share %d",
			kind, total, env, records, dedup, req, activeShare, logShare)
		if env <= 0 || dedup <= 0 {
			t.Errorf("%s: state %d bytes, dedup %d bytes: want both measured", kind, env, dedup)
		}
	}
	t.Logf("partition keys not attributed: %d bytes (ckpt, owner, …)", other)
}
