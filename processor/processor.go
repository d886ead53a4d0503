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
// one Kafka transaction, with each changed envelope's new state on the
// compacted changelog. Redis is written before the transaction commits;
// a crash in between is recognised on the re-read (the dedup record names
// the same record) and the stored result is emitted again, so every status
// change reaches a read_committed consumer exactly once. Redis is trusted
// per partition only once its checkpoint proves it holds what Kafka
// committed (restore.go): on assignment, before every batch and while
// idle; a partition it does not hold is restored from its changelog.
package processor

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/esignflow/esignflow/internal/kafkalog"
	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/internal/txloop"
	"github.com/esignflow/esignflow/schemas"
)

// Processor runs the requests and events sessions. Create it with New and
// start it with Run.
type Processor struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	known map[string]bool

	// owned is the events session's partitions and their protocol state.
	owned owned
	// ends are where the events batch in flight leaves each partition's
	// offset, applied to owned once it commits.
	endsMu sync.Mutex
	ends   map[int32]int64

	// statusSchema decodes the status of a change the store made.
	statusSchema avro.Schema
	// changes are the status changes of the events batch in flight,
	// counted once its transaction commits. Batches of one session run one
	// at a time; the partitions of a batch add to it concurrently.
	changesMu sync.Mutex
	changes   []change
	// foreign are the outcomes of the events batch's events of envelopes
	// esignflow did not create, counted once it commits.
	foreign []string
	// deadLettered are the reasons of the dead letters of each loop's
	// batch in flight (by input topic), counted once it commits: a batch
	// that aborts and is consumed again letters its poison again.
	deadLettered map[string][]string
}

// change is one status change emitted, for the metrics of its commit.
type change struct {
	status     schemas.Status
	source     schemas.Source
	receivedAt time.Time
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
	statusSchema, err := schemas.Parse(schemas.TopicStatus)
	if err != nil {
		return nil, fmt.Errorf("processor: %w", err)
	}
	known := make(map[string]bool)
	for _, n := range cfg.KnownProviders {
		known[n] = true
	}
	return &Processor{cfg: cfg, log: cfg.Logger.With("component", "processor", "instance", cfg.InstanceID), m: m, known: known, statusSchema: statusSchema}, nil
}

// Run checks Redis (store.CheckServer: a server that may evict keys or is
// a read-only replica is refused, one that cannot be checked is logged),
// creates missing topics, refuses a changelog with another partition count
// than the events topic's (ErrPartitionMismatch), and processes until ctx
// ends, verifying each events partition it is assigned (and restoring it
// from its changelog where Redis is behind) before its first batch. On cancellation it finishes
// the batch in flight, commits or aborts it, and returns nil after both
// sessions have closed. It returns ErrCrashed when Config.Crash fired.
func (p *Processor) Run(ctx context.Context) error {
	if err := p.cfg.Store.CheckAtStart(ctx, p.log); err != nil {
		if ctx.Err() != nil {
			return nil // cancelled while starting: a clean exit
		}
		return fmt.Errorf("processor: %w", err)
	}
	admin, err := kgo.NewClient(append(p.baseOpts(), p.cfg.KafkaOpts...)...)
	if err != nil {
		return fmt.Errorf("processor: kafka client: %w", err)
	}
	tc := p.cfg.Topics
	tc.Names = p.cfg.Codec.Topics()
	err = topics.Ensure(ctx, admin, tc)
	if ctx.Err() != nil {
		admin.Close()
		return nil // cancelled while starting: a clean exit
	}
	if err != nil {
		admin.Close()
		return fmt.Errorf("processor: %w", err)
	}
	// A changelog that is not co-partitioned with the events topic stops
	// the processor here, with both counts.
	if _, err := p.history(ctx, kadm.NewClient(admin)); err != nil {
		admin.Close()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	admin.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	requests := p.loop("requests", p.cfg.Codec.Topics().Requests, p.handleRequests)
	requests.MaxBatch = p.cfg.RequestBatch
	events := p.loop("events", p.cfg.Codec.Topics().Events, p.handleEvents)
	events.Hooks.Prepare = p.prepare
	events.Hooks.Assigned = p.owned.assigned
	events.Hooks.Revoked = p.owned.revoked
	events.ExplicitPartitions = []string{p.cfg.Codec.Topics().Envelopes}
	loops := []txloop.Config{requests, events}
	errs := make(chan error, len(loops))
	for _, l := range loops {
		go func() {
			err := txloop.Run(ctx, l)
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

// loop configures one of the two sessions.
func (p *Processor) loop(name, topic string, h txloop.Handler) txloop.Config {
	group := p.cfg.Group + "-" + name
	return txloop.Config{
		Name: name, Brokers: p.cfg.Brokers, Topic: topic, Group: group,
		TransactionalID: group + "-" + p.cfg.InstanceID,
		MaxBatch:        p.cfg.MaxBatch, AtLeastOnce: p.cfg.AtLeastOnce, KafkaOpts: p.cfg.KafkaOpts,
		RetryMax: p.cfg.RetryMax, BatchTimeout: p.cfg.BatchTimeout, Handler: h, Logger: p.log, Metrics: p.m.loop,
		Hooks: txloop.Hooks{
			Committed: func(produced map[string]int, took time.Duration) {
				if name == "events" {
					p.committedChanges()
					p.committedEnds()
				}
				p.lettersEnded(topic, true)
				p.m.commits.Inc()
				p.m.batchSeconds.WithLabelValues(name).Observe(took.Seconds())
				for topic, n := range produced {
					p.m.recordsOut.WithLabelValues(topic).Add(float64(n))
				}
			},
			Aborted: func(string) {
				if name == "events" {
					p.resetChanges()
					p.resetEnds()
				}
				p.lettersEnded(topic, false)
			},
			AfterProduce: func() error {
				if p.crash(AfterProduce) {
					return ErrCrashed
				}
				return nil
			},
		},
	}
}

// batchEnds notes where the events batch in flight leaves partition n.
func (p *Processor) batchEnds(n int32, next int64) {
	p.endsMu.Lock()
	defer p.endsMu.Unlock()
	if p.ends == nil {
		p.ends = map[int32]int64{}
	}
	p.ends[n] = next
}

// committedEnds moves the floors of the partitions the batch just
// committed: Redis must hold at least that much from now on.
func (p *Processor) committedEnds() {
	p.endsMu.Lock()
	defer p.endsMu.Unlock()
	for n, next := range p.ends {
		p.owned.update(n, func(st *part) { st.floor = max(st.floor, next) })
	}
	clear(p.ends)
}

func (p *Processor) resetEnds() {
	p.endsMu.Lock()
	clear(p.ends)
	p.endsMu.Unlock()
}

// emitted notes a status change emitted in the events batch in flight.
func (p *Processor) emitted(c change) {
	p.changesMu.Lock()
	p.changes = append(p.changes, c)
	p.changesMu.Unlock()
}

// resetChanges forgets the changes of a batch that will not commit.
func (p *Processor) resetChanges() {
	p.changesMu.Lock()
	p.changes = p.changes[:0]
	p.foreign = p.foreign[:0]
	p.changesMu.Unlock()
}

// foreignEvent notes the outcome of an event of an envelope esignflow did
// not create, in the events batch in flight.
func (p *Processor) foreignEvent(outcome string) {
	p.changesMu.Lock()
	p.foreign = append(p.foreign, outcome)
	p.changesMu.Unlock()
}

// letterPending notes a dead letter of the batch in flight on topic.
func (p *Processor) letterPending(topic, reason string) {
	p.changesMu.Lock()
	if p.deadLettered == nil {
		p.deadLettered = map[string][]string{}
	}
	p.deadLettered[topic] = append(p.deadLettered[topic], reason)
	p.changesMu.Unlock()
}

// lettersEnded counts (committed) or forgets (aborted) the dead letters of
// the batch on topic that just ended.
func (p *Processor) lettersEnded(topic string, committed bool) {
	p.changesMu.Lock()
	defer p.changesMu.Unlock()
	if committed {
		for _, reason := range p.deadLettered[topic] {
			p.m.loop.DeadLettered("processor", reason)
		}
	}
	delete(p.deadLettered, topic)
}

// committedChanges counts the changes of the batch just committed: they
// are visible to read_committed consumers now.
func (p *Processor) committedChanges() {
	now := time.Now()
	p.changesMu.Lock()
	defer p.changesMu.Unlock()
	for _, c := range p.changes {
		p.m.statusChanges.WithLabelValues(string(c.status)).Inc()
		if !c.receivedAt.IsZero() {
			p.m.eventToStatus.WithLabelValues(string(c.source)).Observe(max(now.Sub(c.receivedAt).Seconds(), 0))
		}
	}
	p.changes = p.changes[:0]
	for _, o := range p.foreign {
		p.m.foreign.WithLabelValues(o).Inc()
	}
	p.foreign = p.foreign[:0]
}

func (p *Processor) baseOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(p.cfg.Brokers...),
		kgo.WithLogger(kafkalog.New(p.log)),
	}
}

// coord returns a record's coordinates.
func coord(r *kgo.Record) store.Coord {
	return store.Coord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
}

// crash reports whether Config.Crash asks for a crash at this point.
func (p *Processor) crash(at Point) bool { return p.cfg.Crash != nil && p.cfg.Crash(at) }
