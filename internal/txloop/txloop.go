// Package txloop runs esignflow's consume → process → produce → commit
// loops: a franz-go transactional consumer-group session (read_committed)
// in which each batch's output records and input offsets commit together,
// or abort together and are consumed again. The processor and the sink run
// on it.
package txloop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/esignflow/esignflow/internal/compression"
	"github.com/esignflow/esignflow/internal/kafkalog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Handler processes one batch, handing each record to produce in the same
// transaction to emit as soon as it is ready (emit produces asynchronously,
// so producing overlaps the rest of the work). An error aborts the
// transaction and the batch is consumed again after a backoff; a *Stop
// error ends Run with the error it wraps.
type Handler func(ctx context.Context, recs []*kgo.Record, emit func(*kgo.Record)) error

// Stop wraps an error that must end Run at once, without committing (an
// injected crash in tests).
type Stop struct{ Err error }

func (s *Stop) Error() string { return s.Err.Error() }
func (s *Stop) Unwrap() error { return s.Err }

// Hooks observe the loop; all optional.
type Hooks struct {
	// Committed is called after a commit with the records produced per
	// topic and the batch's duration.
	Committed func(produced map[string]int, took time.Duration)
	// Aborted is called after an abort with its reason: handler, produce
	// or rebalance.
	Aborted func(reason string)
	// AfterProduce runs once the batch is produced, before the commit; a
	// non-nil error ends Run there with that error (tests crash here).
	AfterProduce func() error
	// Prepare runs before every batch with its records, and after every
	// idle IdleEvery with none, outside any transaction and the batch
	// deadline, on the session's client: where work that must precede a
	// batch but may take long (a restore) belongs. An error abandons the
	// polled records, which are consumed again after a backoff.
	Prepare func(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error
	// Assigned and Revoked are told which partitions of Topic the session
	// gained and lost (revoked or lost). Assigned runs before the new
	// partitions are fetched.
	Assigned, Revoked func(partitions []int32)
}

// Config configures a loop. Brokers, Topic, Group and Handler are
// required; TransactionalID too unless AtLeastOnce.
type Config struct {
	Name            string // for logs
	Brokers         []string
	Topic           string
	Group           string
	TransactionalID string
	// MaxBatch bounds the records of one transaction, default 2000.
	MaxBatch int
	// AtLeastOnce uses a plain consumer that commits offsets after the
	// produce instead of a transaction: a baseline, never for production.
	AtLeastOnce bool
	KafkaOpts   []kgo.Opt
	// RetryMax caps the backoff after a failed batch or session, default 5s.
	RetryMax time.Duration
	// BatchTimeout bounds one batch's work, which shutdown waits for,
	// default 2m.
	BatchTimeout time.Duration
	// IdleEvery is how long a poll waits for records before Hooks.Prepare
	// runs without any, default 2s (only with a Prepare hook).
	IdleEvery time.Duration
	// ExplicitPartitions are topics whose records are produced to the
	// partition the handler sets on them (kgo.Record.Partition) instead
	// of by their key's hash.
	ExplicitPartitions []string
	Handler            Handler
	Hooks              Hooks
	// Metrics, when set, receive the loop's consumer lag and aborted
	// transactions (under the loop label Name); nil exports nothing.
	Metrics *Metrics
	Logger  *slog.Logger
}

// Run runs the loop until ctx ends (nil, after the batch in flight has
// committed or aborted and the session closed), recreating the session
// after an error it cannot recover from. It returns a *Stop's error.
func Run(ctx context.Context, cfg Config) error {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 2000
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Second
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = 2 * time.Minute
	}
	if cfg.IdleEvery <= 0 {
		cfg.IdleEvery = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("session", cfg.Name)
	cfg.Metrics.abortedInit(cfg.Name)
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		err := session(ctx, cfg, log)
		var stop *Stop
		if err == nil || errors.As(err, &stop) {
			if stop != nil {
				return stop.Err
			}
			return nil
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), cfg.RetryMax)
		log.Error("session failed; starting a new one", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
	return nil
}

// session runs one session until ctx ends (nil) or it fails.
func session(ctx context.Context, cfg Config, log *slog.Logger) error {
	lag := newLag(cfg.Metrics, cfg.Group, cfg.Topic)
	defer lag.close()
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.WithLogger(kafkalog.New(log)),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.RecordPartitioner(explicitFor(cfg.ExplicitPartitions, kgo.StickyKeyPartitioner(nil))),
		// Transaction markers are returned, never handled: the loop sees
		// where they are, so its lag does not count them, and commits
		// past them with the next batch.
		kgo.KeepControlRecords(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, added map[string][]int32) {
			if cfg.Hooks.Assigned != nil && len(added[cfg.Topic]) > 0 {
				cfg.Hooks.Assigned(added[cfg.Topic])
			}
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, rev map[string][]int32) { lag.drop(rev); revoked(cfg, rev) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) { lag.drop(lost); revoked(cfg, lost) }),
		compression.DefaultOpt(),
	}
	if cfg.AtLeastOnce {
		opts = append(opts, kgo.DisableAutoCommit())
	} else {
		opts = append(opts, kgo.TransactionalID(cfg.TransactionalID))
	}
	opts = append(opts, cfg.KafkaOpts...)
	var tx txn
	if cfg.AtLeastOnce {
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
		fetches := poll(ctx, cfg, tx)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		if fetches.Empty() && cfg.Hooks.Prepare != nil {
			if err := cfg.Hooks.Prepare(ctx, tx.client(), nil); err != nil && ctx.Err() == nil {
				log.Warn("preparing failed; trying again", "err", err)
			}
			continue
		}
		fetches.EachError(func(t string, part int32, err error) {
			log.Warn("fetch error", "topic", t, "partition", part, "err", err)
		})
		lag.fetched(fetches)
		all := fetches.Records()
		recs := dataRecords(all)
		if len(recs) == 0 {
			lag.processed(all) // markers only: nothing to process
			continue
		}
		if cfg.Hooks.Prepare != nil {
			if err := cfg.Hooks.Prepare(ctx, tx.client(), recs); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				// Give the records back: an aborted transaction rewinds
				// the session to the committed offsets.
				if rerr := rewind(ctx, tx); rerr != nil {
					return rerr
				}
				backoff = min(max(2*backoff, 50*time.Millisecond), cfg.RetryMax)
				log.Warn("preparing the batch failed; consuming it again", "records", len(recs), "err", err, "backoff", backoff)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(backoff):
				}
				continue
			}
		}
		// The batch in flight finishes even when ctx ends: shutdown waits
		// for it, bounded.
		work, done := context.WithTimeout(context.WithoutCancel(ctx), cfg.BatchTimeout)
		work = context.WithValue(work, endsKey{}, ends(all))
		committed, err := batch(work, cfg, tx, recs)
		done()
		var stop *Stop
		var fatal *fatalError
		switch {
		case errors.As(err, &stop):
			return err
		case errors.As(err, &fatal):
			return fatal.err
		case err != nil || !committed:
			backoff = min(max(2*backoff, 50*time.Millisecond), cfg.RetryMax)
			if err != nil {
				log.Warn("batch aborted; retrying", "records", len(recs), "err", err, "backoff", backoff)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
		default:
			lag.processed(all)
			backoff = 0
		}
	}
}

// poll waits for the next records, at most IdleEvery when there is a
// Prepare hook to run while idle.
func poll(ctx context.Context, cfg Config, tx txn) kgo.Fetches {
	if cfg.Hooks.Prepare == nil {
		return tx.poll(ctx, cfg.MaxBatch)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.IdleEvery)
	defer cancel()
	f := tx.poll(pctx, cfg.MaxBatch)
	if ctx.Err() == nil && pctx.Err() != nil {
		// The wait ended, not the session: drop the deadline's error.
		var out kgo.Fetches
		for _, fetch := range f {
			for _, t := range fetch.Topics {
				for _, p := range t.Partitions {
					if len(p.Records) > 0 || (p.Err != nil && !errors.Is(p.Err, context.DeadlineExceeded)) {
						out = append(out, kgo.Fetch{Topics: []kgo.FetchTopic{{Topic: t.Topic, Partitions: []kgo.FetchPartition{p}}}})
					}
				}
			}
		}
		return out
	}
	return f
}

// revoked tells Hooks.Revoked which partitions of Topic went.
func revoked(cfg Config, parts map[string][]int32) {
	if cfg.Hooks.Revoked != nil && len(parts[cfg.Topic]) > 0 {
		cfg.Hooks.Revoked(parts[cfg.Topic])
	}
}

// rewind gives back what the session polled and did not process: an
// empty transaction, aborted, resets it to the committed offsets.
func rewind(ctx context.Context, tx txn) error {
	if err := tx.begin(); err != nil {
		return &fatalError{fmt.Errorf("begin transaction: %w", err)}
	}
	if _, err := tx.end(ctx, false); err != nil {
		return &fatalError{fmt.Errorf("abort transaction: %w", err)}
	}
	return nil
}

type endsKey struct{}

// ends returns, per partition, the offset after the last of recs (control
// records included): where the group's offset lands if they commit.
func ends(recs []*kgo.Record) map[int32]int64 {
	out := map[int32]int64{}
	for _, r := range recs {
		if r.Offset+1 > out[r.Partition] {
			out[r.Partition] = r.Offset + 1
		}
	}
	return out
}

// Ends returns, inside a Handler, the offset each partition of the batch
// commits to if the batch commits: after its last record, transaction
// markers included (the handler sees only data records). Nil outside a
// Handler.
func Ends(ctx context.Context) map[int32]int64 {
	m, _ := ctx.Value(endsKey{}).(map[int32]int64)
	return m
}

// explicitFor partitions the records of topics by the partition set on
// them, and the rest with fallback.
func explicitFor(topics []string, fallback kgo.Partitioner) kgo.Partitioner {
	if len(topics) == 0 {
		return fallback
	}
	set := map[string]bool{}
	for _, t := range topics {
		set[t] = true
	}
	return explicit{set: set, fallback: fallback}
}

type explicit struct {
	set      map[string]bool
	fallback kgo.Partitioner
}

func (e explicit) ForTopic(t string) kgo.TopicPartitioner {
	if e.set[t] {
		return kgo.ManualPartitioner().ForTopic(t)
	}
	return e.fallback.ForTopic(t)
}

// dataRecords returns recs without their control records (transaction
// markers), in a new slice when there are any.
func dataRecords(recs []*kgo.Record) []*kgo.Record {
	for i, r := range recs {
		if !r.Attrs.IsControl() {
			continue
		}
		out := append(make([]*kgo.Record, 0, len(recs)-1), recs[:i]...)
		for _, r := range recs[i+1:] {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		}
		return out
	}
	return recs
}

// fatalError ends the session: its transactional state is unusable.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// batch processes one batch in one transaction and reports whether it
// committed.
func batch(ctx context.Context, cfg Config, tx txn, recs []*kgo.Record) (bool, error) {
	start := time.Now()
	if err := tx.begin(); err != nil {
		return false, &fatalError{fmt.Errorf("begin transaction: %w", err)}
	}
	pr := &producing{ctx: ctx, tx: tx, counts: map[string]int{}}
	err := cfg.Handler(ctx, recs, pr.emit)
	// Send what lingers now rather than after the producer's linger: the
	// commit waits for every record, and nothing more is coming.
	produceErr := tx.flush(ctx)
	if werr := pr.wait(); werr != nil {
		produceErr = werr
	}
	var stop *Stop
	if errors.As(err, &stop) {
		return false, err
	}
	aborted := func(reason string) {
		cfg.Metrics.abort(cfg.Name, reason)
		if cfg.Hooks.Aborted != nil {
			cfg.Hooks.Aborted(reason)
		}
	}
	if err != nil {
		aborted(AbortHandler)
		if _, endErr := tx.end(ctx, false); endErr != nil {
			return false, &fatalError{fmt.Errorf("abort after %w: %w", err, endErr)}
		}
		return false, err
	}
	if cfg.Hooks.AfterProduce != nil {
		if err := cfg.Hooks.AfterProduce(); err != nil {
			return false, &Stop{err}
		}
	}
	committed, err := tx.end(ctx, produceErr == nil)
	if err != nil {
		return false, &fatalError{fmt.Errorf("end transaction: %w", err)}
	}
	if !committed {
		if produceErr != nil {
			aborted(AbortProduce)
			cfg.Logger.Warn("produce failed; transaction aborted", "session", cfg.Name, "err", produceErr)
		} else {
			aborted(AbortRebalance)
		}
		return false, nil
	}
	if cfg.Hooks.Committed != nil {
		cfg.Hooks.Committed(pr.counts, time.Since(start))
	}
	return true, nil
}

// txn is a transactional session, or the at-least-once stand-in for one.
type txn interface {
	poll(ctx context.Context, max int) kgo.Fetches
	begin() error
	produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	flush(ctx context.Context) error
	end(ctx context.Context, commit bool) (bool, error)
	close()
	client() *kgo.Client
}

type groupTxn struct{ sess *kgo.GroupTransactSession }

func (g *groupTxn) client() *kgo.Client { return g.sess.Client() }

func (g *groupTxn) poll(ctx context.Context, max int) kgo.Fetches {
	return g.sess.PollRecords(ctx, max)
}
func (g *groupTxn) begin() error { return g.sess.Begin() }
func (g *groupTxn) produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	g.sess.Produce(ctx, r, promise)
}
func (g *groupTxn) flush(ctx context.Context) error { return g.sess.Client().Flush(ctx) }
func (g *groupTxn) end(ctx context.Context, commit bool) (bool, error) {
	return g.sess.End(ctx, kgo.TransactionEndTry(commit))
}
func (g *groupTxn) close() { g.sess.Close() }

// plainTxn is at-least-once: produce, flush, then commit the offsets.
type plainTxn struct{ cl *kgo.Client }

func (c *plainTxn) client() *kgo.Client { return c.cl }

func (c *plainTxn) poll(ctx context.Context, max int) kgo.Fetches { return c.cl.PollRecords(ctx, max) }
func (c *plainTxn) begin() error                                  { return nil }
func (c *plainTxn) produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	c.cl.Produce(ctx, r, promise)
}
func (c *plainTxn) flush(ctx context.Context) error { return c.cl.Flush(ctx) }
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

// emit produces r asynchronously in the open transaction.
func (p *producing) emit(r *kgo.Record) {
	p.wg.Add(1)
	p.mu.Lock()
	p.counts[r.Topic]++
	p.mu.Unlock()
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
