package processor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/internal/txloop"
	"github.com/esignflow/esignflow/schemas"
)

// handleEvents applies a batch of events: decode (poison to the DLQ), one
// store.Apply per chunk, and a status record for every change, new or
// replayed. Partitions are applied concurrently (up to ApplyConcurrency),
// each partition's chunks in order: an envelope's events all come from one
// partition, so they are applied and emitted in the order consumed.
func (p *Processor) handleEvents(ctx context.Context, recs []*kgo.Record, emit func(*kgo.Record)) error {
	p.m.recordsIn.WithLabelValues(p.cfg.Codec.Topics().Events).Add(float64(len(recs)))
	p.resetChanges() // a batch that ended in a crash left its own
	p.lettersEnded(p.cfg.Codec.Topics().Events, false)
	p.resetEnds()
	parts := byPartition(recs)
	ends := txloop.Ends(ctx)
	// A partition of which the batch holds only transaction markers still
	// moves its checkpoint: the commit moves its offset past them.
	markersOnly := map[int32]bool{}
	for n := range ends {
		markersOnly[n] = true
	}
	for _, part := range parts {
		delete(markersOnly, part[0].Partition)
	}
	for n := range markersOnly {
		parts = append(parts, []*kgo.Record{{Partition: n, Offset: -1}})
	}
	work, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, p.cfg.ApplyConcurrency)
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, part := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-work.Done():
				return
			}
			defer func() { <-sem }()
			if err := p.applyPartition(work, part, ends, emit); err != nil {
				errs[i] = err
				cancel() // the transaction aborts: stop the others
			}
		}()
	}
	wg.Wait()
	err := firstError(errs)
	if err == nil {
		err = ctx.Err() // cancelled from outside: the batch is incomplete
	}
	return err
}

// applyPartition applies one partition's records of the batch, chunk
// after chunk, each chunk moving the partition's checkpoint to where the
// batch would leave the group's offset.
func (p *Processor) applyPartition(ctx context.Context, recs []*kgo.Record, ends map[int32]int64, emit func(*kgo.Record)) error {
	n := recs[0].Partition
	if recs[0].Offset < 0 {
		recs = nil // markers only
	}
	st, ok := p.owned.get(n)
	if !ok {
		return fmt.Errorf("partition %d is not owned any more", n)
	}
	if st.token == "" {
		return fmt.Errorf("partition %d is not verified", n)
	}
	b := store.Batch{Partition: n, Token: st.token, History: p.owned.history, Floor: st.floor}
	for first := true; (first || len(recs) > 0) && ctx.Err() == nil; first = false {
		k := min(len(recs), p.cfg.ApplyChunk)
		b.Next = st.floor
		if k > 0 {
			b.Next = recs[k-1].Offset + 1
		}
		if k == len(recs) && ends[n] > b.Next {
			b.Next = ends[n] // transaction markers after the last record
		}
		if err := p.applyEvents(ctx, b, st.ahead, recs[:k], emit); err != nil {
			switch {
			case errors.Is(err, store.ErrBehind):
				p.log.Warn("redis does not hold what was committed; the partition is verified again before its next batch", "partition", n, "err", err)
				p.owned.distrust(n, false)
			case errors.Is(err, store.ErrFenced):
				p.m.fenced.Inc()
				p.log.Warn("another member claimed the partition: this batch is refused", "partition", n, "err", err)
				if p.crash(Fenced) {
					return &txloop.Stop{Err: ErrCrashed}
				}
			}
			return err
		}
		b.Floor = b.Next
		p.owned.update(n, func(st *part) { st.ahead = max(st.ahead, b.Next) })
		recs = recs[k:]
	}
	p.batchEnds(n, b.Next)
	return nil
}

// byPartition splits recs by partition, keeping each partition's order.
func byPartition(recs []*kgo.Record) [][]*kgo.Record {
	index := map[int32]int{}
	var parts [][]*kgo.Record
	for _, r := range recs {
		i, ok := index[r.Partition]
		if !ok {
			i = len(parts)
			index[r.Partition] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], r)
	}
	return parts
}

// firstError returns the error that matters most among the partitions':
// an injected crash (*txloop.Stop) before any other, and among the others
// not one that only reports the cancellation another caused.
func firstError(errs []error) error {
	var first error
	for _, err := range errs {
		var stop *txloop.Stop
		switch {
		case err == nil:
		case errors.As(err, &stop):
			return err
		case first == nil, errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled):
			first = err
		}
	}
	return first
}

// errUnreadableApplied means a record that an attempt which did not commit
// may have applied cannot be decoded now: dead-lettering it would leave its
// change in Redis and never on the status topic, so the partition is
// restored from its changelog first (which holds only committed changes).
var errUnreadableApplied = errors.New("a record applied by an uncommitted attempt cannot be decoded now")

func (p *Processor) applyEvents(ctx context.Context, b store.Batch, ahead int64, recs []*kgo.Record, emit func(*kgo.Record)) error {
	inputs := make([]store.Input, 0, len(recs))
	for _, r := range recs {
		var ev schemas.EnvelopeEvent
		err := p.cfg.Codec.Decode(ctx, r.Value, &ev)
		if err == nil {
			err = p.validateEvent(ev, r)
		}
		if err != nil {
			if !schemas.IsPoison(err) && !errors.Is(err, errInvalid) {
				return fmt.Errorf("decode %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			if r.Offset < ahead && schemas.IsPoison(err) {
				p.owned.distrust(r.Partition, true)
				return fmt.Errorf("%s/%d@%d: %w: %w", r.Topic, r.Partition, r.Offset, errUnreadableApplied, err)
			}
			dl, err := p.deadLetter(r, err)
			if err != nil {
				return err
			}
			emit(dl)
			continue
		}
		inputs = append(inputs, store.Input{Event: ev, From: coord(r)})
	}
	inputs, err := p.screenForeign(ctx, b.Partition, inputs)
	if err != nil {
		return err
	}
	out, err := p.cfg.Store.Apply(ctx, b, inputs)
	p.m.roundTrips.Add(float64(out.Stats.RoundTrips))
	p.m.conflicts.Add(float64(out.Stats.Conflicts))
	if err != nil {
		// ErrBehind included: the transaction aborts, the partition is
		// verified (restored) before the batch is consumed again.
		return err
	}
	results := out.Results
	if p.crash(AfterStore) {
		return &txloop.Stop{Err: ErrCrashed}
	}
	for i, res := range results {
		switch res.Kind {
		case store.Duplicate:
			p.m.duplicates.Inc()
			continue
		case store.Replay:
			p.m.replays.Inc()
		}
		if !res.Changed() {
			if res.Kind == store.Applied {
				p.m.unchanged.Inc()
			}
			continue
		}
		val, err := p.cfg.Codec.Wrap(p.cfg.Codec.Topics().Status, res.Body)
		if err != nil {
			return fmt.Errorf("encode status of %s: %w", inputs[i].Event.EnvelopeID, err)
		}
		status := res.Status
		if status == "" { // a replay: the store did not decode its change
			var st struct {
				Status schemas.Status `avro:"status"` // the rest is skipped
			}
			if err := avro.Unmarshal(p.statusSchema, res.Body, &st); err != nil {
				return fmt.Errorf("status of the change of %s: %w", inputs[i].Event.EnvelopeID, err)
			}
			status = st.Status
		}
		ev := inputs[i].Event
		p.emitted(change{status: status, source: ev.Source, receivedAt: ev.ReceivedAt})
		emit(&kgo.Record{Topic: p.cfg.Codec.Topics().Status, Key: []byte(inputs[i].Event.EnvelopeID), Value: val})
	}
	// The changelog: each changed envelope's new state, to the partition
	// with the input partition's number.
	for _, c := range out.Envelopes {
		val, err := p.cfg.Codec.Wrap(p.cfg.Codec.Topics().Envelopes, c.Body)
		if err != nil {
			return fmt.Errorf("encode state of %s: %w", c.EnvelopeID, err)
		}
		emit(&kgo.Record{Topic: p.cfg.Codec.Topics().Envelopes, Partition: b.Partition, Key: []byte(c.EnvelopeID), Value: val})
	}
	return nil
}

var errInvalid = errors.New("invalid event")

// validateEvent rejects events the state machine cannot place: they are
// poison, not transient.
func (p *Processor) validateEvent(ev schemas.EnvelopeEvent, r *kgo.Record) error {
	switch {
	case ev.EnvelopeID == "":
		return fmt.Errorf("%w: no envelope_id", errInvalid)
	case !p.known[ev.Provider]:
		return fmt.Errorf("%w: unknown provider %q", errInvalid, ev.Provider)
	case ev.Status != nil && !envelope.Valid(*ev.Status):
		return fmt.Errorf("%w: unknown status %q", errInvalid, *ev.Status)
	case ev.Status == nil && len(ev.Recipients) == 0:
		return fmt.Errorf("%w: neither a status nor a recipient update", errInvalid)
	case string(r.Key) != ev.EnvelopeID:
		return fmt.Errorf("%w: key %q is not the envelope id %q", errInvalid, r.Key, ev.EnvelopeID)
	}
	for _, u := range ev.Recipients {
		if u.RecipientID == "" || !envelope.ValidRecipient(u.Status) {
			return fmt.Errorf("%w: recipient %q status %q", errInvalid, u.RecipientID, u.Status)
		}
	}
	return nil
}

// deadLetter wraps a record that cannot be processed, with why, its bytes,
// headers and coordinates, for the DLQ (keyed by the original key).
func (p *Processor) deadLetter(r *kgo.Record, cause error) (*kgo.Record, error) {
	p.letterPending(r.Topic, deadLetterReason(cause))
	p.log.Warn("record dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", cause)
	dl := schemas.DeadLetter{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value,
		Headers: make([]schemas.Header, len(r.Headers)), Error: cause.Error(), Component: "processor", FailedAt: time.Now()}
	for i, h := range r.Headers {
		dl.Headers[i] = schemas.Header{Key: h.Key, Value: h.Value}
	}
	val, err := p.cfg.Codec.Encode(&dl)
	if err != nil {
		return nil, fmt.Errorf("encode dead letter: %w", err)
	}
	return &kgo.Record{Topic: p.cfg.Codec.Topics().DLQ, Key: r.Key, Value: val}, nil
}
