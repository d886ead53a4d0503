// Package processor is the heart of esignflow: it turns signing requests
// into envelopes at the provider, and events (webhooks, polls, create
// results) into exactly one status change each, following the processing
// protocol of DESIGN.md.
//
// Two transactional consumer-group sessions run side by side, so a provider
// outage that stalls envelope creation never stalls status changes:
//
//   - requests: esignflow.requests.v1 → create at the provider (idempotency
//     key = request id) → an API event on esignflow.events.v1;
//   - events: esignflow.events.v1 → one Redis round trip to read, one to
//     apply with a compare-and-set → status changes on esignflow.status.v1.
//
// Each batch is consumed, processed, produced and its offsets committed in
// one Kafka transaction. Redis is written before the transaction commits;
// a crash in between is recognised on the re-read (the dedup record names
// the same record) and the stored result is emitted again, so every status
// change reaches a read_committed consumer exactly once.
package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/schemas"
)

// Processor runs the requests and events sessions. Create it with New and
// start it with Run.
type Processor struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	known map[string]bool

	restoreMu sync.Mutex // one restore at a time
}

// New returns a Processor for cfg. It connects to nothing until Run.
func New(cfg Config) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("processor: metrics: %w", err)
	}
	known := make(map[string]bool)
	for _, n := range cfg.KnownProviders {
		known[n] = true
	}
	return &Processor{cfg: cfg, log: cfg.Logger.With("component", "processor", "instance", cfg.InstanceID), m: m, known: known}, nil
}

// Run creates missing topics, restores Redis from the status topic if it
// lost its data, and processes until ctx ends. On cancellation it finishes
// the batch in flight, commits or aborts it, and returns nil after both
// sessions have closed. It returns ErrCrashed when Config.Crash fired.
func (p *Processor) Run(ctx context.Context) error {
	admin, err := kgo.NewClient(append(p.baseOpts(), p.cfg.KafkaOpts...)...)
	if err != nil {
		return fmt.Errorf("processor: kafka client: %w", err)
	}
	err = topics.Ensure(ctx, admin, p.cfg.Topics)
	admin.Close()
	if err != nil {
		return fmt.Errorf("processor: %w", err)
	}
	if err := p.ensureRestored(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loops := []loop{
		{name: "requests", topic: schemas.TopicRequests, group: p.cfg.Group + "-requests", handle: p.handleRequests},
		{name: "events", topic: schemas.TopicEvents, group: p.cfg.Group + "-events", handle: p.handleEvents},
	}
	errs := make(chan error, len(loops))
	for _, l := range loops {
		go func() {
			err := p.runLoop(ctx, l)
			if err != nil {
				cancel() // one session failing stops the other
			}
			errs <- err
		}()
	}
	var first error
	for range loops {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (p *Processor) baseOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(p.cfg.Brokers...),
		kgo.WithLogger(kslog.New(p.log)),
	}
}

// batchFunc processes one batch of consumed records, handing every record
// to produce in the same transaction to emit as soon as it is ready (emit
// produces asynchronously, so producing overlaps the rest of the work). An
// error aborts the transaction and the batch is consumed again after a
// backoff.
type batchFunc func(ctx context.Context, recs []*kgo.Record, emit func(*kgo.Record)) error

// loop is one consume → process → produce → commit session.
type loop struct {
	name, topic, group string
	handle             batchFunc
}

// runLoop runs l until ctx ends, recreating the session after an error the
// session cannot recover from.
func (p *Processor) runLoop(ctx context.Context, l loop) error {
	log := p.log.With("session", l.name)
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		err := p.session(ctx, l, log)
		if err == nil || errors.Is(err, ErrCrashed) {
			return err
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), p.cfg.RetryMax)
		log.Error("session failed; starting a new one", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
	return nil
}

// session runs one transactional (or, with AtLeastOnce, plain) session
// until ctx ends (nil) or it fails.
func (p *Processor) session(ctx context.Context, l loop, log *slog.Logger) error {
	opts := append(p.baseOpts(),
		kgo.ConsumerGroup(l.group),
		kgo.ConsumeTopics(l.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	)
	if p.cfg.AtLeastOnce {
		opts = append(opts, kgo.DisableAutoCommit())
	} else {
		opts = append(opts, kgo.TransactionalID(p.cfg.Group+"-"+l.name+"-"+p.cfg.InstanceID))
	}
	opts = append(opts, p.cfg.KafkaOpts...)
	var tx txn
	if p.cfg.AtLeastOnce {
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return fmt.Errorf("kafka client: %w", err)
		}
		tx = &plainTxn{cl: cl}
	} else {
		sess, err := kgo.NewGroupTransactSession(opts...)
		if err != nil {
			return fmt.Errorf("kafka session: %w", err)
		}
		tx = &groupTxn{sess: sess}
	}
	defer tx.close()

	backoff := time.Duration(0)
	for {
		fetches := tx.poll(ctx, p.cfg.MaxBatch)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, part int32, err error) {
			log.Warn("fetch error", "topic", t, "partition", part, "err", err)
		})
		recs := fetches.Records()
		if len(recs) == 0 {
			continue
		}
		start := time.Now()
		// The batch in flight finishes even when ctx ends: shutdown waits
		// for it, bounded.
		work, done := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		committed, err := p.batch(work, tx, l, recs)
		done()
		if errors.Is(err, ErrCrashed) {
			return err
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return fatal.err
		}
		if err != nil || !committed {
			backoff = min(max(2*backoff, 50*time.Millisecond), p.cfg.RetryMax)
			if err != nil {
				log.Warn("batch aborted; retrying", "records", len(recs), "err", err, "backoff", backoff)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		p.m.batchSeconds.WithLabelValues(l.name).Observe(time.Since(start).Seconds())
	}
}

// fatalError ends the session: the transactional state is unusable.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// batch processes one batch in one transaction and reports whether it
// committed.
func (p *Processor) batch(ctx context.Context, tx txn, l loop, recs []*kgo.Record) (bool, error) {
	if err := tx.begin(); err != nil {
		return false, &fatalError{fmt.Errorf("begin transaction: %w", err)}
	}
	for _, r := range recs {
		p.m.recordsIn.WithLabelValues(r.Topic).Inc()
	}
	pr := newProducing(ctx, tx)
	err := l.handle(ctx, recs, pr.emit)
	produceErr := pr.wait()
	if errors.Is(err, ErrCrashed) {
		return false, err
	}
	if err != nil {
		p.m.aborts.WithLabelValues("handler").Inc()
		if _, endErr := tx.end(ctx, false); endErr != nil {
			return false, &fatalError{fmt.Errorf("abort after %w: %w", err, endErr)}
		}
		return false, err
	}
	if p.crash(AfterProduce) {
		return false, ErrCrashed
	}
	committed, err := tx.end(ctx, produceErr == nil)
	if err != nil {
		return false, &fatalError{fmt.Errorf("end transaction: %w", err)}
	}
	if !committed {
		reason := "rebalance"
		if produceErr != nil {
			reason = "produce"
			p.log.Warn("produce failed; transaction aborted", "err", produceErr)
		}
		p.m.aborts.WithLabelValues(reason).Inc()
		return false, nil
	}
	p.m.commits.Inc()
	for topic, n := range pr.counts {
		p.m.recordsOut.WithLabelValues(topic).Add(float64(n))
	}
	return true, nil
}

func (p *Processor) crash(at Point) bool { return p.cfg.Crash != nil && p.cfg.Crash(at) }

// txn is a transactional session, or the at-least-once stand-in for one.
type txn interface {
	poll(ctx context.Context, max int) kgo.Fetches
	begin() error
	produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	end(ctx context.Context, commit bool) (bool, error)
	close()
}

type groupTxn struct{ sess *kgo.GroupTransactSession }

func (g *groupTxn) poll(ctx context.Context, max int) kgo.Fetches {
	return g.sess.PollRecords(ctx, max)
}
func (g *groupTxn) begin() error { return g.sess.Begin() }
func (g *groupTxn) produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	g.sess.Produce(ctx, r, promise)
}
func (g *groupTxn) end(ctx context.Context, commit bool) (bool, error) {
	return g.sess.End(ctx, kgo.TransactionEndTry(commit))
}
func (g *groupTxn) close() { g.sess.Close() }

// plainTxn is at-least-once: produce, flush, then commit the offsets.
type plainTxn struct{ cl *kgo.Client }

func (c *plainTxn) poll(ctx context.Context, max int) kgo.Fetches { return c.cl.PollRecords(ctx, max) }
func (c *plainTxn) begin() error                                  { return nil }
func (c *plainTxn) produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	c.cl.Produce(ctx, r, promise)
}
func (c *plainTxn) end(ctx context.Context, commit bool) (bool, error) {
	if !commit {
		// Without a transaction there is nothing to abort, and the
		// client has moved past the batch: restart the session, which
		// resumes from the committed offsets.
		return false, errors.New("at-least-once batch failed: restarting from the committed offsets")
	}
	if err := c.cl.CommitUncommittedOffsets(ctx); err != nil {
		return false, fmt.Errorf("commit offsets: %w", err)
	}
	return true, nil
}
func (c *plainTxn) close() { c.cl.Close() }

// producing tracks the records one batch produced: how many per topic, and
// the first error.
type producing struct {
	ctx    context.Context
	tx     txn
	wg     sync.WaitGroup
	mu     sync.Mutex
	first  error
	counts map[string]int
}

func newProducing(ctx context.Context, tx txn) *producing {
	return &producing{ctx: ctx, tx: tx, counts: map[string]int{}}
}

// emit produces r asynchronously in the open transaction.
func (p *producing) emit(r *kgo.Record) {
	p.wg.Add(1)
	p.counts[r.Topic]++
	p.tx.produce(p.ctx, r, func(r *kgo.Record, err error) {
		defer p.wg.Done()
		if err != nil {
			p.mu.Lock()
			if p.first == nil {
				p.first = fmt.Errorf("produce to %s: %w", r.Topic, err)
			}
			p.mu.Unlock()
		}
	})
}

// wait returns once every emitted record is acknowledged, with the first
// error.
func (p *producing) wait() error {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first
}

// coord returns a record's coordinates.
func coord(r *kgo.Record) store.Coord {
	return store.Coord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
}
