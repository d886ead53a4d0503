package txloop_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/promread"
	"github.com/esignflow/esignflow/internal/txloop"
)

// gauge reads one series of reg; false when it is not exported.
func gauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	ss, err := promread.Find(reg, name, labels)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) == 0 {
		return 0, false
	}
	return ss[0].Value, true
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// produceTxn writes n records to each partition of topic in one
// transaction, committed or aborted.
func produceTxn(t *testing.T, cl *kgo.Client, topic string, parts, n int, commit bool) {
	t.Helper()
	ctx := context.Background()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for p := range parts {
		for i := range n {
			r := &kgo.Record{Topic: topic, Partition: int32(p), Value: []byte(fmt.Sprint(i))}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatal(err)
	}
}

// A transactional workload, consumed, leaves a lag of 0 on every partition
// while a committed offset stays one short of its high watermark (the
// commit marker, polled alone after the last batch) and every high
// watermark is one past the last record processed; records waiting for a
// busy handler show as lag.
func TestConsumerLagDiscountsTransactionMarkers(t *testing.T) {
	const parts, perTxn = 2, 5
	k := fakes.NewKafka(t, parts)
	topic, group := k.Names.Requests, k.Group("lag")
	prod, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.TransactionalID(k.Prefix+"producer"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	produceTxn(t, prod, topic, parts, perTxn, true)

	reg := prometheus.NewRegistry()
	m, err := txloop.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	var mu sync.Mutex
	last := map[int32]int64{}
	// Distinct records handled: an aborted batch (a rebalance while the
	// group settles, as on Apache Kafka) is handed over again.
	seen := map[[2]int64]bool{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- txloop.Run(ctx, txloop.Config{
			Name: "lagtest", Brokers: k.Brokers, Topic: topic, Group: group, TransactionalID: k.Prefix + "loop",
			// One record a transaction: the marker that ends each
			// input transaction is polled alone, after the commit of
			// the record before it.
			MaxBatch: 1, Metrics: m, RetryMax: 100 * time.Millisecond,
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
			KafkaOpts: []kgo.Opt{kgo.FetchMaxWait(50 * time.Millisecond)},
			Handler: func(ctx context.Context, recs []*kgo.Record, _ func(*kgo.Record)) error {
				<-gate
				mu.Lock()
				defer mu.Unlock()
				for _, r := range recs {
					if r.Attrs.IsControl() {
						return fmt.Errorf("the handler was given a control record at %d/%d", r.Partition, r.Offset)
					}
					last[r.Partition] = max(last[r.Partition], r.Offset)
					seen[[2]int64{int64(r.Partition), r.Offset}] = true
				}
				return nil
			},
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	lagOf := func(p int) (float64, bool) {
		return gauge(t, reg, "esignflow_consumer_lag", map[string]string{"group": group, "topic": topic, "partition": strconv.Itoa(p)})
	}

	// The handler is held: what it has been given and what follows wait.
	eventually(t, "a lag while the handler is held", func() bool {
		for p := range parts {
			if v, ok := lagOf(p); ok && v > 0 {
				return true
			}
		}
		return false
	})
	close(gate)

	eventually(t, "every record processed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == parts*perTxn
	})
	eventually(t, "a lag of 0 on every partition", func() bool {
		for p := range parts {
			if v, ok := lagOf(p); !ok || v != 0 {
				return false
			}
		}
		return true
	})

	// What a lag tool reads: committed offsets against high watermarks.
	adm := kadm.NewClient(prod)
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	markers := 0
	for p := range parts {
		end, _ := ends.Lookup(topic, int32(p))
		c, _ := committed.Lookup(topic, int32(p))
		mu.Lock()
		next := last[int32(p)] + 1
		mu.Unlock()
		if end.Offset-next != 1 {
			t.Errorf("partition %d: high watermark %d, last record processed at %d: want one marker after it", p, end.Offset, next-1)
		}
		// A marker polled alone commits with the next batch, of any
		// partition: the last one read waits for a batch that never
		// comes.
		switch got := end.Offset - c.At; got {
		case 1:
			markers++
		case 0:
		default:
			t.Errorf("partition %d: committed %d, high watermark %d: a lag tool reads %d, want 0 or 1", p, c.At, end.Offset, got)
		}
		if v, _ := lagOf(p); v != 0 {
			t.Errorf("partition %d: esignflow_consumer_lag = %v, want 0", p, v)
		}
	}

	if markers == 0 {
		t.Error("no partition's committed offset stops at its marker: a lag tool would read 1 there")
	}

	// An aborted transaction leaves only a marker the consumer can see:
	// no lag either, once it is read; a committed one after it is
	// processed to 0 again.
	produceTxn(t, prod, topic, parts, 3, false)
	produceTxn(t, prod, topic, parts, 1, true)
	eventually(t, "the record after the aborted transaction processed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == parts*(perTxn+1)
	})
	eventually(t, "a lag of 0 on every partition after the aborted transaction", func() bool {
		ends, err := adm.ListEndOffsets(context.Background(), topic)
		if err != nil {
			t.Fatal(err)
		}
		for p := range parts {
			end, _ := ends.Lookup(topic, int32(p))
			if v, ok := lagOf(p); !ok || v != 0 {
				return false
			}
			mu.Lock()
			next := last[int32(p)] + 1
			mu.Unlock()
			if end.Offset-next != 1 {
				t.Fatalf("partition %d: high watermark %d, last record processed at %d: want one marker after it", p, end.Offset, next-1)
			}
		}
		return true
	})
}

// Every abort counts under the loop's name and its reason.
func TestAbortedCountedByLoopAndReason(t *testing.T) {
	k := fakes.NewKafka(t, 1)
	topic := k.Names.Requests
	prod, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	if err := prod.ProduceSync(context.Background(), &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := txloop.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- txloop.Run(ctx, txloop.Config{
			Name: "aborttest", Brokers: k.Brokers, Topic: topic, Group: k.Group("abort"), TransactionalID: k.Prefix + "loop",
			Metrics: m, RetryMax: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Handler: func(context.Context, []*kgo.Record, func(*kgo.Record)) error {
				mu.Lock()
				defer mu.Unlock()
				calls++
				if calls <= 2 {
					return fmt.Errorf("failure %d", calls)
				}
				return nil
			},
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, "the batch committed after two failures", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls >= 3
	})
	if v, _ := gauge(t, reg, "esignflow_transactions_aborted_total", map[string]string{"loop": "aborttest", "reason": "handler"}); v != 2 {
		t.Errorf("aborted{loop=aborttest,reason=handler} = %v, want 2", v)
	}
	for _, reason := range []string{"produce", "rebalance"} {
		if v, ok := gauge(t, reg, "esignflow_transactions_aborted_total", map[string]string{"loop": "aborttest", "reason": reason}); !ok || v != 0 {
			t.Errorf("aborted{reason=%s} = %v (exported %v), want an exported 0", reason, v, ok)
		}
	}
	// A second component of the process shares the metrics.
	if _, err := txloop.NewMetrics(reg); err != nil {
		t.Errorf("NewMetrics on a registry that holds them: %v", err)
	}
}
