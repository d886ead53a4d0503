package processor

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

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
	cl, err := kgo.NewClient(append(p.baseOpts(),
		append([]kgo.Opt{
			kgo.ConsumeTopics(schemas.TopicStatus),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			// The last offset below the stable end is often a transaction
			// marker: keep them, to see the end.
			kgo.KeepControlRecords(),
		}, p.cfg.KafkaOpts...)...)...)
	if err != nil {
		return fmt.Errorf("restore: kafka client: %w", err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, schemas.TopicStatus)
	if err != nil {
		return fmt.Errorf("restore: list offsets of %s: %w", schemas.TopicStatus, err)
	}
	remaining := map[int32]int64{}
	var total int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			remaining[o.Partition] = o.Offset
			total += o.Offset
		}
	})
	p.log.Info("restoring envelope state from the status topic", "records", total)
	latest := map[string]schemas.EnvelopeState{}
	var read int64
	lastLog := time.Now()
	for len(remaining) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fetches.Err0(); err != nil && !fetches.IsClientClosed() {
			p.log.Warn("restore fetch error", "err", err)
		}
		var decodeErr error
		fetches.EachRecord(func(r *kgo.Record) {
			read++
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			var ch schemas.EnvelopeStatusChanged
			if err := p.cfg.Codec.Decode(ctx, r.Value, &ch); err != nil {
				if !schemas.IsPoison(err) {
					decodeErr = err
				}
				return
			}
			if cur, ok := latest[ch.EnvelopeID]; !ok || ch.State.AuditSeq > cur.AuditSeq {
				latest[ch.EnvelopeID] = ch.State
			}
		})
		if decodeErr != nil {
			return fmt.Errorf("restore: %w", decodeErr)
		}
		if time.Since(lastLog) > 2*time.Second {
			lastLog = time.Now()
			p.log.Info("restoring", "read", read, "of", total, "envelopes", len(latest))
		}
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
