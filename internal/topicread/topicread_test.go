package topicread_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/topicread"
)

// AllSettled waits while a transaction is open on the topic and, once it
// commits, reads every record of it; All reads what is stable now. Only the
// first half tells the two apart on kfake, which writes commit markers at
// once; on Apache Kafka the second half also meets markers written late.
func TestAllSettledWaitsForOpenTransactions(t *testing.T) {
	k := fakes.NewKafka(t, 2)
	topic := k.Names.Status
	opts := []kgo.Opt{kgo.SeedBrokers(k.Brokers...)}
	tx, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.TransactionalID(k.Prefix+"settled"), kgo.TransactionTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	ctx := context.Background()
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"a", "b", "c"} {
		if err := tx.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(v), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	n := 0
	err = topicread.AllSettled(short, opts, topic, func(*kgo.Record) error { n++; return nil })
	if !errors.Is(err, context.DeadlineExceeded) || n != 0 {
		t.Fatalf("with a transaction open: err %v after %d records, want a deadline and none", err, n)
	}
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	bounded, cancel2 := context.WithTimeout(ctx, time.Minute)
	defer cancel2()
	if err := topicread.AllSettled(bounded, opts, topic, func(*kgo.Record) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("read %d committed records, want 3", n)
	}
}
