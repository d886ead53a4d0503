package topics_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/esignflow/esignflow/internal/topics"
)

// newAdmin is an admin client of c. Its metadata may be 10ms old: by
// default a kgo client answers metadata requests from what it learnt in
// the last 5s, so a topic created meanwhile shows only 5s later.
func newAdmin(t *testing.T, c *kfake.Cluster) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.MetadataMinAge(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// TestAwaitWaitsForATopicCreatedMeanwhile: a topic that is not in the
// metadata when Await first asks, and is created after, is returned with
// its partitions, not refused.
func TestAwaitWaitsForATopicCreatedMeanwhile(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	adm := newAdmin(t, c)
	asked := make(chan struct{})
	var once bool
	c.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if r := req.(*kmsg.MetadataRequest); !once && len(r.Topics) == 1 {
			once = true
			close(asked)
		}
		return nil, nil, false
	})
	type result struct {
		md  kadm.Metadata
		err error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		md, err := topics.Await(ctx, adm, time.Minute, "late")
		done <- result{md, err}
	}()
	<-asked
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "late"); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("Await = %v, want the topic created meanwhile", r.err)
	}
	if n := len(r.md.Topics["late"].Partitions); n != 3 {
		t.Fatalf("%d partitions, want 3", n)
	}
}

// TestAwaitGivesUp: a topic that never comes is an ErrNotInMetadata once
// the wait is over, carrying the brokers' last answer.
func TestAwaitGivesUp(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	_, err = topics.Await(context.Background(), newAdmin(t, c), 200*time.Millisecond, "never")
	if !errors.Is(err, topics.ErrNotInMetadata) || !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("Await = %v, want ErrNotInMetadata with UNKNOWN_TOPIC_OR_PARTITION", err)
	}
}

// TestAwaitEndsWithItsContext: the wait ends when the context does.
func TestAwaitEndsWithItsContext(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithCancel(context.Background())
	c.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
		cancel() // the first answer comes back to a context already ended
		return nil, nil, false
	})
	_, err = topics.Await(ctx, newAdmin(t, c), time.Hour, "never")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Await = %v, want context.Canceled", err)
	}
}
