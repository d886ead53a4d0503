package processor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/internal/txloop"
	"github.com/esignflow/esignflow/schemas"
)

// checkEvery is how often the checkpoints of the partitions a member owns
// are compared with what it committed while no batch shows a difference:
// a Redis flushed or rolled back under an idle partition is restored
// within this time.
const checkEvery = 5 * time.Second

// topicWait bounds the wait for a topic just created to show in metadata.
const topicWait = 30 * time.Second

// owned is what the events session knows of the partitions it owns: the
// protocol's per-partition state (DESIGN.md, processing protocol).
type owned struct {
	mu        sync.Mutex
	parts     map[int32]*part
	history   string // the Kafka history, once known
	lastCheck time.Time
	// paused are the partitions whose fetching is paused because their
	// verification failed, until it succeeds; unpause are revoked ones to
	// resume (a partition stays paused in the client across rebalances).
	paused  map[int32]*retry
	unpause []int32
}

// retry is when a failed verification is tried again.
type retry struct {
	at   time.Time
	wait time.Duration
}

// part is one owned partition.
type part struct {
	// token is our fencing token in the partition's checkpoint; "" until
	// the partition is claimed and verified, and again once a batch or a
	// check finds the checkpoint untrustworthy.
	token string
	// floor is the offset we last committed for the partition (or found
	// committed at assignment): Redis must hold at least everything
	// before it.
	floor int64
	// ahead is the highest checkpoint seen or written: records below it
	// and at or above floor may have been applied by an attempt that did
	// not commit.
	ahead int64
	// restore forces a restore at the next verification.
	restore bool
}

func (o *owned) assigned(ps []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.parts == nil {
		o.parts = map[int32]*part{}
	}
	for _, p := range ps {
		o.parts[p] = &part{}
	}
}

func (o *owned) revoked(ps []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range ps {
		delete(o.parts, p)
		if _, ok := o.paused[p]; ok {
			delete(o.paused, p)
			o.unpause = append(o.unpause, p)
		}
	}
}

// get returns a copy of p's state; false when p is not owned.
func (o *owned) get(p int32) (part, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st, ok := o.parts[p]
	if !ok {
		return part{}, false
	}
	return *st, true
}

// update changes p's state, if p is still owned.
func (o *owned) update(p int32, fn func(*part)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if st, ok := o.parts[p]; ok {
		fn(st)
	}
}

// distrust makes p be verified again before its next batch, restored if
// force.
func (o *owned) distrust(p int32, force bool) {
	o.update(p, func(st *part) {
		st.token = ""
		st.restore = st.restore || force
	})
}

// prepare runs before every events batch and while idle, outside any
// transaction (and, the session blocking rebalances from a poll to the
// next, never while partitions are assigned or revoked): it verifies
// (claims, compares, restores) every partition of recs not verified yet,
// and every checkEvery compares the checkpoints of all owned partitions
// with what this member committed. A partition whose verification fails
// is paused (not fetched) and tried again with backoff; the batch is
// consumed again without it, so the other partitions go on.
func (p *Processor) prepare(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	if err := p.ensureHistory(ctx, cl); err != nil {
		return err
	}
	p.retryPaused(ctx, cl)
	o := &p.owned
	o.mu.Lock()
	periodic := recs == nil || time.Since(o.lastCheck) >= checkEvery
	var verified []int32
	if periodic {
		o.lastCheck = time.Now()
		for n, st := range o.parts {
			if st.token != "" {
				verified = append(verified, n)
			}
		}
	}
	o.mu.Unlock()
	if len(verified) > 0 {
		if err := p.checkOwned(ctx, verified); err != nil {
			return err
		}
	}
	var todo []int32
	seen := map[int32]bool{}
	o.mu.Lock()
	consider := func(n int32) {
		if st, ok := o.parts[n]; ok && st.token == "" && !seen[n] {
			seen[n] = true
			todo = append(todo, n)
		}
	}
	if recs == nil {
		for n := range o.parts {
			consider(n)
		}
	}
	for _, r := range recs {
		consider(r.Partition)
	}
	o.mu.Unlock()
	sort.Slice(todo, func(i, j int) bool { return todo[i] < todo[j] })
	// Partitions are verified (and restored) concurrently, up to
	// ApplyConcurrency at once: after a Redis loss every partition is
	// restored, and one at a time leaves Redis and the decoder idle in
	// turns.
	var (
		mu     sync.Mutex
		failed []error
		wg     sync.WaitGroup
	)
	sem := make(chan struct{}, p.cfg.ApplyConcurrency)
	for _, n := range todo {
		if p.isPaused(n) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := p.verify(ctx, cl, n); err != nil && ctx.Err() == nil {
				// Only this partition waits: it is not fetched until a
				// verification succeeds, and the batch is consumed again
				// without it.
				p.pause(cl, n)
				mu.Lock()
				failed = append(failed, fmt.Errorf("partition %d: %w", n, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(failed...)
}

// pause stops fetching partition n after its verification failed.
func (p *Processor) pause(cl *kgo.Client, n int32) {
	o := &p.owned
	o.mu.Lock()
	if o.paused == nil {
		o.paused = map[int32]*retry{}
	}
	r := o.paused[n]
	if r == nil {
		r = &retry{}
		o.paused[n] = r
	}
	r.wait = min(max(2*r.wait, 500*time.Millisecond), 30*time.Second)
	r.at = time.Now().Add(r.wait)
	o.mu.Unlock()
	cl.PauseFetchPartitions(map[string][]int32{p.cfg.Codec.Topics().Events: {n}})
	p.log.Warn("partition paused until its verification succeeds", "partition", n, "retry_in", r.wait)
}

func (p *Processor) isPaused(n int32) bool {
	p.owned.mu.Lock()
	defer p.owned.mu.Unlock()
	_, ok := p.owned.paused[n]
	return ok
}

// retryPaused verifies again the paused partitions that are due, and
// resumes those that pass (and those revoked while paused).
func (p *Processor) retryPaused(ctx context.Context, cl *kgo.Client) {
	o := &p.owned
	topic := p.cfg.Codec.Topics().Events
	o.mu.Lock()
	unpause := o.unpause
	o.unpause = nil
	var due []int32
	now := time.Now()
	for n, r := range o.paused {
		if _, owned := o.parts[n]; !owned {
			// Never claim a partition we do not own: that would fence
			// its owner.
			delete(o.paused, n)
			unpause = append(unpause, n)
		} else if !now.Before(r.at) {
			due = append(due, n)
		}
	}
	o.mu.Unlock()
	if len(unpause) > 0 {
		cl.ResumeFetchPartitions(map[string][]int32{topic: unpause})
	}
	for _, n := range due {
		if err := p.verify(ctx, cl, n); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.pause(cl, n)
			continue
		}
		o.mu.Lock()
		delete(o.paused, n)
		o.mu.Unlock()
		cl.ResumeFetchPartitions(map[string][]int32{topic: {n}})
		p.log.Info("partition resumed", "partition", n)
	}
}

// ensureHistory learns the Kafka history (cluster id and the events
// topic's id) once, and checks that the changelog is co-partitioned with
// the events topic.
func (p *Processor) ensureHistory(ctx context.Context, cl *kgo.Client) error {
	p.owned.mu.Lock()
	known := p.owned.history != ""
	p.owned.mu.Unlock()
	if known {
		return nil
	}
	h, err := p.history(ctx, kadm.NewClient(cl))
	if err != nil {
		return err
	}
	p.owned.mu.Lock()
	p.owned.history = h
	p.owned.mu.Unlock()
	return nil
}

// ErrPartitionMismatch means the changelog does not have the events
// topic's partition count, so partition p of one does not hold the
// envelopes of partition p of the other.
var ErrPartitionMismatch = errors.New("processor: the changelog and the events topic must have the same partition count")

// history returns the Kafka history, having checked the partition counts.
// A topic just created may not be in every broker's metadata yet: that is
// waited for, up to topicWait.
func (p *Processor) history(ctx context.Context, adm *kadm.Client) (string, error) {
	names := p.cfg.Codec.Topics()
	md, err := topics.Await(ctx, adm, topicWait, names.Events, names.Envelopes)
	if err != nil {
		return "", fmt.Errorf("processor: %w", err)
	}
	ev, cl := md.Topics[names.Events], md.Topics[names.Envelopes]
	if len(ev.Partitions) != len(cl.Partitions) {
		return "", fmt.Errorf("%w: %s has %d partitions, %s has %d; re-create %s with %d partitions (compacted)",
			ErrPartitionMismatch, names.Events, len(ev.Partitions), names.Envelopes, len(cl.Partitions), names.Envelopes, len(ev.Partitions))
	}
	return store.History(md.Cluster, ev.ID.String()), nil
}

// checkOwned compares the checkpoints of verified partitions with what
// this member committed, and makes every one that does not hold up be
// verified again.
func (p *Processor) checkOwned(ctx context.Context, ps []int32) error {
	ckpts, err := p.cfg.Store.Checkpoints(ctx, ps)
	if err != nil {
		return err
	}
	for i, n := range ps {
		st, ok := p.owned.get(n)
		if !ok || st.token == "" {
			continue
		}
		b := store.Batch{Partition: n, Token: st.token, History: p.owned.history, Floor: st.floor}
		if err := b.Check(ckpts[i]); err != nil {
			p.log.Warn("redis does not hold what was committed; verifying the partition again", "partition", n, "err", err)
			p.owned.distrust(n, false)
		}
	}
	return nil
}

// verify claims partition n (fencing every earlier owner), compares its
// checkpoint with the group's committed offset, fetched stable, and
// restores it from its changelog when Redis is behind or foreign.
func (p *Processor) verify(ctx context.Context, cl *kgo.Client, n int32) error {
	_, gen := cl.GroupMetadata()
	token := store.Token(gen)
	old, err := p.cfg.Store.Claim(ctx, n, token)
	if err != nil {
		return err
	}
	committed, err := p.committed(ctx, cl, n)
	if err != nil {
		return err
	}
	st, ok := p.owned.get(n)
	if !ok {
		return nil // revoked meanwhile
	}
	floor := max(committed, 0)
	history := p.owned.history
	var why string
	switch {
	case st.restore:
		why = "a record applied by an attempt that did not commit cannot be read any more"
	case old == nil:
		empty, err := p.changelogEmpty(ctx, cl, n)
		if err != nil {
			return err
		}
		if !empty {
			why = "no checkpoint while the changelog holds envelopes (Redis lost the partition)"
		} else if err := p.cfg.Store.SetCheckpoint(ctx, n, token, floor, history); err != nil {
			return err
		}
	case old.History != history:
		why = fmt.Sprintf("checkpoint of another Kafka history (%s, not %s)", old.History, history)
	case committed >= 0 && old.Next < committed:
		why = fmt.Sprintf("checkpoint at offset %d, behind the committed %d (Redis lost writes)", old.Next, committed)
	}
	ahead := floor
	if why != "" {
		if err := p.restorePartition(ctx, n, token, floor, why); err != nil {
			p.m.restoreFailures.Inc()
			p.log.Error("restoring a partition failed; it is not processed until a restore succeeds", "partition", n, "err", err)
			return err
		}
	} else if old != nil {
		ahead = max(ahead, old.Next)
	}
	p.owned.update(n, func(st *part) {
		st.token, st.floor, st.ahead, st.restore = token, floor, ahead, false
	})
	return nil
}

// committed returns the group's committed offset for events partition n,
// -1 when there is none, fetched stable: it waits while a transaction
// that committed offsets for n is open.
func (p *Processor) committed(ctx context.Context, cl *kgo.Client, n int32) (int64, error) {
	adm := kadm.NewClient(cl)
	group := p.cfg.Group + "-events"
	topic := p.cfg.Codec.Topics().Events
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		resp, err := adm.FetchOffsets(kadm.RequireStable(ctx), group)
		if err == nil {
			err = resp.Error()
		}
		if err == nil {
			if o, ok := resp.Lookup(topic, n); ok {
				if o.Err != nil {
					err = o.Err
				} else {
					return o.At, nil
				}
			} else {
				return -1, nil
			}
		}
		if !errors.Is(err, kerr.UnstableOffsetCommit) {
			return 0, fmt.Errorf("committed offset of %s/%d: %w", topic, n, err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// changelogEnds returns changelog partition n's start and end offsets.
func (p *Processor) changelogEnds(ctx context.Context, cl *kgo.Client, n int32) (start, end int64, err error) {
	adm := kadm.NewClient(cl)
	topic := p.cfg.Codec.Topics().Envelopes
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	s, ok1 := starts.Lookup(topic, n)
	e, ok2 := ends.Lookup(topic, n)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("%s has no partition %d", topic, n)
	}
	return s.Offset, e.Offset, nil
}

func (p *Processor) changelogEmpty(ctx context.Context, cl *kgo.Client, n int32) (bool, error) {
	start, end, err := p.changelogEnds(ctx, cl, n)
	return start >= end, err
}

// restorePartition replaces partition n's keys with the states of
// changelog partition n, read until its last stable offset is its high
// watermark (no transaction open on it), and sets the checkpoint to
// (next, token). Records are streamed into Redis: memory does not grow
// with the partition. A partition that cannot be read or a record that
// cannot be decoded fails the restore, which leaves no checkpoint and is
// tried again.
func (p *Processor) restorePartition(ctx context.Context, n int32, token string, next int64, why string) error {
	start := time.Now()
	topic := p.cfg.Codec.Topics().Envelopes
	p.log.Warn("restoring a partition from its changelog", "partition", n, "why", why)
	rs, err := p.cfg.Store.BeginRestore(ctx, n, token)
	if err != nil {
		return err
	}
	if p.crash(Restoring) {
		return &txloop.Stop{Err: ErrCrashed}
	}
	cl, err := kgo.NewClient(append(p.baseOpts(),
		append(p.cfg.KafkaOpts,
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {n: kgo.NewOffset().AtStart()}}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.KeepControlRecords(),
		)...)...)
	if err != nil {
		return fmt.Errorf("restore partition %d: %w", n, err)
	}
	defer cl.Close()
	end, err := settledEnd(ctx, kadm.NewClient(cl), topic, n)
	if err != nil {
		return fmt.Errorf("restore partition %d: %w", n, err)
	}
	// The changelog is read and decoded while the previous chunk is
	// written: decoding and Redis's work overlap instead of adding up.
	// The writer goroutine ends when chunks is closed or ctx is done, and
	// restorePartition waits for it before it returns.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan []envelope.Envelope, 1)
	written := make(chan error, 1)
	go func() {
		var err error
		for chunk := range chunks {
			for i := 0; err == nil && i < len(chunk); i++ {
				err = rs.Put(wctx, &chunk[i])
			}
			if err != nil {
				cancel() // stops the reader; drain what it sent
			}
		}
		written <- err
	}()
	read, err := p.readChangelog(wctx, cl, topic, n, end, chunks)
	close(chunks)
	if werr := <-written; werr != nil {
		return fmt.Errorf("restore partition %d: %w", n, werr)
	}
	if err != nil {
		return fmt.Errorf("restore partition %d: %w", n, err)
	}
	envs, err := rs.Finish(ctx, next, p.owned.history)
	if err != nil {
		return err
	}
	p.m.restores.Inc()
	p.log.Info("restored a partition", "partition", n, "records", read, "envelopes", envs, "next", next, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// restoreChunk is how many decoded envelopes the changelog reader hands
// to the writer at once.
const restoreChunk = 1000

// readChangelog reads changelog partition n of topic up to end, decodes
// every record's state and sends them to out in chunks; it returns how
// many records it read. A record that cannot be read or decoded fails it.
func (p *Processor) readChangelog(ctx context.Context, cl *kgo.Client, topic string, n int32, end int64, out chan<- []envelope.Envelope) (int64, error) {
	var read int64
	lastLog := time.Now()
	chunk := make([]envelope.Envelope, 0, restoreChunk)
	send := func() error {
		if len(chunk) == 0 {
			return nil
		}
		select {
		case out <- chunk:
		case <-ctx.Done():
			return ctx.Err()
		}
		chunk = make([]envelope.Envelope, 0, restoreChunk)
		return nil
	}
	for pos := int64(0); pos < end; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return read, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("read %s/%d: %w", topic, n, err)
			}
		})
		if ferr != nil {
			return read, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			pos = max(pos, r.Offset+1)
			if ferr != nil || r.Attrs.IsControl() || r.Offset >= end {
				return
			}
			read++
			if r.Value == nil {
				return // a tombstone
			}
			var e schemas.Envelope
			if err := p.cfg.Codec.Decode(ctx, r.Value, &e); err != nil {
				ferr = fmt.Errorf("decode %s/%d@%d: %w", topic, n, r.Offset, err)
				return
			}
			if chunk = append(chunk, envelope.Envelope{State: e.State, Pending: e.Pending}); len(chunk) == restoreChunk {
				ferr = send()
			}
		})
		if ferr != nil {
			return read, ferr
		}
		if time.Since(lastLog) > 2*time.Second {
			lastLog = time.Now()
			p.log.Info("restoring", "partition", n, "records", read, "of_about", end)
		}
	}
	return read, send()
}

// settledEnd returns where partition n of topic ends once no transaction
// is open on it (its last stable offset equals its high watermark): only
// the partition's owner writes it, and we are the owner, so an open one
// belongs to a fenced zombie and will abort or time out.
func settledEnd(ctx context.Context, adm *kadm.Client, topic string, n int32) (int64, error) {
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		stable, err := adm.ListCommittedOffsets(ctx, topic)
		if err == nil {
			err = stable.Error()
		}
		var hw kadm.ListedOffsets
		if err == nil {
			hw, err = adm.ListEndOffsets(ctx, topic)
			if err == nil {
				err = hw.Error()
			}
		}
		if err != nil {
			return 0, fmt.Errorf("end offsets of %s: %w", topic, err)
		}
		s, ok1 := stable.Lookup(topic, n)
		h, ok2 := hw.Lookup(topic, n)
		if !ok1 || !ok2 {
			return 0, fmt.Errorf("%s has no partition %d", topic, n)
		}
		if s.Offset >= h.Offset {
			return h.Offset, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(wait):
		}
	}
}
