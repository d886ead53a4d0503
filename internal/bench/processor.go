// Package bench drives esignflow's components and the whole pipeline under
// load, in process, and reports what it measured: the code behind
// `esignflow bench` and the Go benchmarks.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/promread"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/internal/topicread"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/processor"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

// ProcessorConfig sizes the processor benchmark.
type ProcessorConfig struct {
	// Envelopes is how many envelopes; each gets EventsPerEnvelope events
	// (8), all of them real changes but the last (a confirming poll).
	// Default 10,000.
	Envelopes int
	// RedisURL is a real Redis to use (keys under a fresh prefix);
	// empty uses an in-process miniredis.
	RedisURL string
	// Brokers is a real Kafka cluster to use (each run under a fresh topic
	// and group prefix, its topics deleted after); empty runs each on a
	// fresh in-process kfake broker.
	Brokers []string
	// KafkaOpts are added to the processor's clients (compression).
	KafkaOpts []kgo.Opt
	// Partitions of the events topic, default 12: what `esignflow
	// processor` creates topics with.
	Partitions int32
	// MaxBatch is the processor's batch size, default the processor's.
	MaxBatch int
	// Rounds is how many times each mode runs, default 2, in the order
	// at-least-once, exactly-once, exactly-once, at-least-once, … so that
	// whatever warms up over the first runs (Redis's memory, the Go heap)
	// favours neither mode. A mode's figure is over all its runs.
	Rounds int
	// Logger for the processor, default discard.
	Logger *slog.Logger
}

// EventsPerEnvelope is the size of each envelope's lifecycle in the
// processor benchmark.
const EventsPerEnvelope = 8

// ProcessorResult is one mode's measurement.
type ProcessorResult struct {
	Mode          string        `json:"mode"`
	Events        int           `json:"events"`
	Elapsed       time.Duration `json:"elapsed_ns"`
	EventsPerSec  float64       `json:"events_per_sec"`
	StatusChanges int           `json:"status_changes"`
	// Aborted is how many transactions aborted (the events loop, any
	// reason): each costs its batch being consumed and applied again.
	Aborted int `json:"aborted_transactions"`
}

// Processor measures events/s through the processor at least once (plain
// consumer, no transactions) and exactly once, each run on a fresh
// in-process broker with the same pre-produced events, and returns both:
// at-least-once first. A run's time starts when the processor starts, so
// it includes joining the groups and the first fetch.
func Processor(ctx context.Context, cfg ProcessorConfig) ([]ProcessorResult, error) {
	if cfg.Envelopes <= 0 {
		cfg.Envelopes = 10000
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 12
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 2
	}
	out := []ProcessorResult{{Mode: "at-least-once"}, {Mode: "exactly-once"}}
	for round := range cfg.Rounds {
		order := []int{0, 1}
		if round%2 == 1 {
			order = []int{1, 0}
		}
		for _, mode := range order {
			r, err := processorRun(ctx, cfg, mode == 0)
			if err != nil {
				return nil, err
			}
			out[mode].Events += r.Events
			out[mode].Elapsed += r.Elapsed
			out[mode].StatusChanges = r.StatusChanges
			out[mode].Aborted += r.Aborted
		}
	}
	for i := range out {
		out[i].EventsPerSec = float64(out[i].Events) / out[i].Elapsed.Seconds()
	}
	return out, nil
}

func processorRun(ctx context.Context, cfg ProcessorConfig, atLeastOnce bool) (ProcessorResult, error) {
	mode := "exactly-once"
	if atLeastOnce {
		mode = "at-least-once"
	}
	res := ProcessorResult{Mode: mode, Events: cfg.Envelopes * EventsPerEnvelope}
	env, err := newBenchEnv(ctx, cfg.Brokers, cfg.Partitions, cfg.RedisURL)
	if err != nil {
		return res, err
	}
	defer env.close()
	k, codec, rc, prefix := env.kafka, env.codec, env.redis, env.prefix
	st, err := store.New(store.Config{Client: rc, Prefix: prefix})
	if err != nil {
		return res, err
	}
	brokers := k.brokers
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return res, err
	}
	defer prod.Close()
	if err := produceLifecycles(ctx, prod, codec, cfg.Envelopes); err != nil {
		return res, err
	}

	metrics := prometheus.NewRegistry()
	p, err := processor.New(processor.Config{Metrics: metrics,
		Brokers: brokers, Codec: codec, Store: st, Providers: map[string]processor.Creator{"sim": noCreate{}},
		MaxBatch: cfg.MaxBatch, AtLeastOnce: atLeastOnce, Logger: cfg.Logger, Topics: topics.Config{Partitions: cfg.Partitions},
		Group:     k.prefix + "esignflow-processor",
		KafkaOpts: append([]kgo.Opt{kgo.FetchMaxWait(20 * time.Millisecond)}, cfg.KafkaOpts...),
	})
	if err != nil {
		return res, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Run(runCtx) }()
	adm := kadm.NewClient(prod)
	for {
		n, err := committed(ctx, adm, k.prefix+"esignflow-processor-events", codec.Topics().Events)
		if err == nil && n >= int64(res.Events) {
			break
		}
		select {
		case err := <-done:
			cancel()
			return res, fmt.Errorf("processor stopped: %w", err)
		case <-ctx.Done():
			cancel()
			<-done
			return res, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	res.Elapsed = time.Since(start)
	cancel()
	if err := <-done; err != nil {
		return res, err
	}
	res.EventsPerSec = float64(res.Events) / res.Elapsed.Seconds()
	aborted, _, _ := promread.Sum(metrics, "esignflow_transactions_aborted_total", map[string]string{"loop": "events"})
	res.Aborted = int(aborted)
	res.StatusChanges, err = countCommitted(ctx, brokers, codec.Topics().Status)
	if err == nil && res.StatusChanges != cfg.Envelopes*(EventsPerEnvelope-1) {
		err = fmt.Errorf("%s: %d status changes on the topic, want %d (%d envelopes, %d changes each)", mode, res.StatusChanges, cfg.Envelopes*(EventsPerEnvelope-1), cfg.Envelopes, EventsPerEnvelope-1)
	}
	return res, err
}

// benchKafka is one benchmark run's Kafka: a fresh kfake cluster, or a
// fresh namespace on a real cluster.
type benchKafka struct {
	brokers []string
	prefix  string
	names   schemas.Names
	close   func()
}

// runKafka returns a run's Kafka with esignflow's topics created, each with
// partitions partitions. On a real cluster (brokers given) the run's topics
// carry a prefix of their own and are deleted by close, so runs neither see
// each other's records nor fill the cluster.
func runKafka(ctx context.Context, brokers []string, partitions int32) (*benchKafka, error) {
	if len(brokers) == 0 {
		c, err := fakes.Cluster(ctx, partitions)
		if err != nil {
			return nil, err
		}
		return &benchKafka{brokers: c.ListenAddrs(), names: schemas.DefaultNames(), close: c.Close}, nil
	}
	prefix := runPrefix()
	k := &benchKafka{brokers: brokers, prefix: prefix, names: schemas.Prefixed(prefix)}
	k.close = func() { deleteTopics(brokers, k.names) }
	if err := fakes.EnsureTopics(ctx, brokers, k.names, partitions); err != nil {
		return nil, fmt.Errorf("kafka %v: %w", brokers, err)
	}
	return k, nil
}

// runPrefix is a fresh topic and group prefix for one run on a real
// cluster.
func runPrefix() string { return fmt.Sprintf("bench.%d.", time.Now().UnixNano()) }

// deleteTopics removes a run's topics from a real cluster, so that runs do
// not fill it (best effort: a run's result does not depend on it).
func deleteTopics(brokers []string, names schemas.Names) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = kadm.NewClient(cl).DeleteTopics(ctx, topics.All(names)...)
}

// countCommitted counts the committed data records of a topic (transaction
// markers take offsets too, so end offsets over-count).
func countCommitted(ctx context.Context, brokers []string, topic string) (int, error) {
	n := 0
	err := topicread.AllSettled(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, topic, func(*kgo.Record) error { n++; return nil })
	return n, err
}

// benchEnv is what one benchmark run stands on: its Kafka (runKafka), a
// registry whose codec is bound to the run's topic names, a Redis and a
// fresh key prefix in it; close releases them all, the run's keys first.
type benchEnv struct {
	kafka   *benchKafka
	codec   *schemas.Codec
	redis   *redis.Client
	prefix  string
	closers []func()
}

func newBenchEnv(ctx context.Context, brokers []string, partitions int32, redisURL string) (*benchEnv, error) {
	e := &benchEnv{}
	var err error
	if e.kafka, err = runKafka(ctx, brokers, partitions); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, e.kafka.close)
	reg, codec, err := fakes.Registry(ctx, schemas.WithNames(e.kafka.names))
	if err != nil {
		e.close()
		return nil, err
	}
	e.codec, e.closers = codec, append(e.closers, reg.Close)
	rc, closeRedis, err := benchRedis(redisURL)
	if err != nil {
		e.close()
		return nil, err
	}
	e.redis, e.prefix = rc, fmt.Sprintf("esfbench:%d:", time.Now().UnixNano())
	e.closers = append(e.closers, closeRedis, func() { dropPrefix(rc, e.prefix) })
	return e, nil
}

// close releases the run's parts in the reverse order of their making.
func (e *benchEnv) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

func benchRedis(url string) (*redis.Client, func(), error) {
	if url == "" {
		m, err := miniredis.Run()
		if err != nil {
			return nil, nil, err
		}
		c := redis.NewClient(&redis.Options{Addr: m.Addr()})
		return c, func() { c.Close(); m.Close() }, nil
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, nil, fmt.Errorf("redis url: %w", err)
	}
	c := redis.NewClient(opt)
	return c, func() { c.Close() }, nil
}

// dropPrefix deletes a benchmark's keys from a real Redis.
func dropPrefix(rc redis.Cmdable, prefix string) {
	ctx := context.Background()
	iter := rc.Scan(ctx, 0, prefix+"*", 5000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		if keys = append(keys, iter.Val()); len(keys) == 5000 {
			rc.Unlink(ctx, keys...)
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		rc.Unlink(ctx, keys...)
	}
}

// produceLifecycles writes n envelopes' events, interleaved by envelope
// and in order per envelope.
func produceLifecycles(ctx context.Context, cl *kgo.Client, codec *schemas.Codec, n int) error {
	t0 := time.Now().Add(-time.Hour)
	statuses := []schemas.Status{schemas.StatusCreated, schemas.StatusSent}
	rsteps := []schemas.RecipientStatus{schemas.RecipientSent, schemas.RecipientDelivered, schemas.RecipientViewed, schemas.RecipientSigned}
	var firstErr error
	errc := make(chan error, 1)
	for step := range EventsPerEnvelope {
		for i := range n {
			id := fmt.Sprintf("bench-%07d", i)
			// Every event carries its request id, as the webhooks and
			// polls of an envelope esignflow created do.
			rid := "req-" + id
			ev := schemas.EnvelopeEvent{EventID: fmt.Sprintf("%s-%d", id, step), Provider: "sim", EnvelopeID: id, RequestID: &rid, Source: schemas.SourceWebhook,
				OccurredAt: t0.Add(time.Duration(step) * time.Second), ReceivedAt: t0, Recipients: []schemas.RecipientUpdate{}, Metadata: map[string]string{}}
			switch {
			case step < 2:
				s := statuses[step]
				ev.Status = &s
			case step < 6:
				ev.Recipients = []schemas.RecipientUpdate{{RecipientID: "r1", Email: "signer@example.com", Status: rsteps[step-2]}}
			default:
				s := schemas.StatusCompleted
				ev.Status = &s
				if step == 7 {
					ev.Source = schemas.SourcePoll
					ev.OccurredAt = t0.Add(6 * time.Second)
				}
			}
			b, err := codec.Encode(&ev)
			if err != nil {
				return err
			}
			cl.Produce(ctx, &kgo.Record{Topic: codec.Topics().Events, Key: []byte(id), Value: b}, func(_ *kgo.Record, err error) {
				if err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			})
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	select {
	case firstErr = <-errc:
	default:
	}
	return firstErr
}

// noCreate is the provider of a benchmark that sends no requests.
type noCreate struct{}

func (noCreate) Create(context.Context, string, schemas.SigningRequest) (provider.Envelope, error) {
	return provider.Envelope{}, errors.New("bench: no provider")
}

// committed sums a group's committed offsets on topic.
func committed(ctx context.Context, adm *kadm.Client, group, topic string) (int64, error) {
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, err
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			n += o.At
		}
	})
	return n, nil
}
