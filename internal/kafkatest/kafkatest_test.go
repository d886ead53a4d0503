package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestVersion(t *testing.T) {
	v, err := Version()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^4\.[0-9]+\.[0-9]+$`).MatchString(v) {
		t.Fatalf("Version() = %q, want a Kafka 4.x.y version", v)
	}
}

func TestBrokersFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want []string
	}{
		{"", nil},
		{"127.0.0.1:9092", []string{"127.0.0.1:9092"}},
		{" 127.0.0.1:9092, ,127.0.0.1:9093,", []string{"127.0.0.1:9092", "127.0.0.1:9093"}},
	} {
		t.Setenv(EnvBrokers, tc.env)
		if got := Brokers(); !slices.Equal(got, tc.want) {
			t.Errorf("%s=%q: Brokers() = %q, want %q", EnvBrokers, tc.env, got, tc.want)
		}
	}
}

// TestSharedBroker runs a transaction on the shared broker and reads it back
// read_committed, in a topic of its own that it deletes.
func TestSharedBroker(t *testing.T) {
	seeds := Brokers()
	if len(seeds) == 0 {
		t.Skip(EnvBrokers + " not set: no real broker in this run")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	adm := kadm.NewClient(newClient(t, kgo.SeedBrokers(seeds...)))
	mctx, mcancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := adm.BrokerMetadata(mctx)
	mcancel()
	if err != nil {
		t.Fatalf("%s=%s: no broker answers: %v", EnvBrokers, strings.Join(seeds, ","), err)
	}
	topic := roundTrip(ctx, t, seeds)
	if _, err := adm.DeleteTopic(ctx, topic); err != nil {
		t.Errorf("delete topic %s: %v", topic, err)
	}
}

// TestBroker runs a private broker through what the suites rely on: a
// transaction committed and read back read_committed, and a broker that hangs
// (clients time out) and comes back.
func TestBroker(t *testing.T) {
	if len(Brokers()) == 0 {
		t.Skip(EnvBrokers + " not set: no real broker in this run")
	}
	began := time.Now()
	b := Start(t)
	t.Logf("broker %v ready in %v", b.Brokers(), time.Since(began).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	topic := roundTrip(ctx, t, b.Brokers())

	// Not idempotent: a record whose request is in flight to a hung broker
	// can then fail when its context ends, rather than wait for the broker.
	plain := newClient(t,
		kgo.SeedBrokers(b.Brokers()...),
		kgo.DefaultProduceTopic(topic),
		kgo.DisableIdempotentWrite(),
	)
	if err := plain.ProduceSync(ctx, kgo.StringRecord("before pause")).FirstErr(); err != nil {
		t.Fatalf("produce before pause: %v", err)
	}

	if err := b.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = b.Resume()
		}
	}()
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	began = time.Now()
	err := plain.ProduceSync(pctx, kgo.StringRecord("while paused")).FirstErr()
	pcancel()
	took := time.Since(began)
	if err == nil {
		t.Fatal("produce to a paused broker succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("produce to a paused broker: %v, want context.DeadlineExceeded", err)
	}
	if took > 10*time.Second {
		t.Errorf("produce to a paused broker failed after %v, want about its 2s deadline", took)
	}
	t.Logf("produce to a paused broker failed after %v: %v", took.Round(time.Millisecond), err)

	if err := b.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	began = time.Now()
	if err := plain.ProduceSync(ctx, kgo.StringRecord("after resume")).FirstErr(); err != nil {
		t.Fatalf("produce after resume: %v", err)
	}
	t.Logf("produce after resume took %v", time.Since(began).Round(time.Millisecond))

	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := b.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := b.Pause(); !errors.Is(err, ErrStopped) {
		t.Fatalf("Pause after Stop: %v, want ErrStopped", err)
	}
}

// roundTrip creates a topic, commits a transaction of one record to it and
// reads that back read_committed. It returns the topic.
func roundTrip(ctx context.Context, t *testing.T, seeds []string) string {
	t.Helper()
	topic := "kafkatest-" + randomHex()
	adm := kadm.NewClient(newClient(t, kgo.SeedBrokers(seeds...)))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}

	txn := newClient(t,
		kgo.SeedBrokers(seeds...),
		kgo.DefaultProduceTopic(topic),
		kgo.TransactionalID("kafkatest-"+randomHex()),
		kgo.TransactionTimeout(10*time.Second),
	)
	if err := txn.BeginTransaction(); err != nil {
		t.Fatalf("begin transaction: %v", err)
	}
	if err := txn.ProduceSync(ctx, kgo.StringRecord("committed")).FirstErr(); err != nil {
		t.Fatalf("produce in transaction: %v", err)
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}

	consumer := newClient(t,
		kgo.SeedBrokers(seeds...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	if got := string(poll(ctx, t, consumer).Value); got != "committed" {
		t.Fatalf("read_committed: got %q, want %q", got, "committed")
	}
	return topic
}

func newClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// poll returns the first record cl fetches, failing t if none comes.
func poll(ctx context.Context, t *testing.T, cl *kgo.Client) *kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("poll: no record: %v", err)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("poll %s/%d: %v", topic, p, err)
		})
		if rs := fs.Records(); len(rs) > 0 {
			return rs[0]
		}
	}
}

func randomHex() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
