package processor

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/topicread"
	"github.com/esignflow/esignflow/schemas"
)

// ensureRestored restores Redis from the status topic when its marker is
// missing (a new or emptied Redis).
func (p *Processor) ensureRestored(ctx context.Context) error {
	ok, err := p.cfg.Store.HasMarker(ctx)
	if err != nil {
		return fmt.Errorf("processor: %w", err)
	}
	if ok {
		return nil
	}
	return p.restore(ctx)
}

// restore reads esignflow.status.v1 (read_committed) up to its last stable
// offsets, keeps the last state per envelope, writes them to Redis where
// Redis has nothing newer, and sets the marker. Dedup records are not
// restored; the monotonic state machine makes a redelivered event change
// nothing.
func (p *Processor) restore(ctx context.Context) error {
	p.restoreMu.Lock()
	defer p.restoreMu.Unlock()
	if ok, err := p.cfg.Store.HasMarker(ctx); err == nil && ok {
		return nil // another session restored meanwhile
	}
	start := time.Now()
	p.log.Info("restoring envelope state from the status topic")
	latest := map[string]schemas.EnvelopeState{}
	var read int64
	lastLog := time.Now()
	err := topicread.All(ctx, append(p.baseOpts(), p.cfg.KafkaOpts...), p.cfg.Codec.Topics().Status, func(r *kgo.Record) error {
		read++
		if time.Since(lastLog) > 2*time.Second {
			lastLog = time.Now()
			p.log.Info("restoring", "read", read, "envelopes", len(latest))
		}
		var ch schemas.EnvelopeStatusChanged
		if err := p.cfg.Codec.Decode(ctx, r.Value, &ch); err != nil {
			if schemas.IsPoison(err) {
				return nil
			}
			return err
		}
		if cur, ok := latest[ch.EnvelopeID]; !ok || ch.State.AuditSeq > cur.AuditSeq {
			latest[ch.EnvelopeID] = ch.State
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	batch := make([]schemas.EnvelopeState, 0, 500)
	for _, st := range latest {
		batch = append(batch, st)
		if len(batch) == cap(batch) {
			if err := p.cfg.Store.Restore(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := p.cfg.Store.Restore(ctx, batch); err != nil {
		return err
	}
	if err := p.cfg.Store.SetMarker(ctx); err != nil {
		return err
	}
	p.m.restores.Inc()
	p.log.Info("restored envelope state", "records", read, "envelopes", len(latest), "took", time.Since(start).Round(time.Millisecond))
	return nil
}
