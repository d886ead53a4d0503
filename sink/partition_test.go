package sink_test

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/sink"
)

// Every version of an envelope, whether the status loop parks it or an
// operator replays its dead letter (RetryPartitioner, which esignflow dlq
// replay produces with), lands on one retry partition; other topics'
// records are partitioned by the hash of their keys, as the services do.
func TestReplayedLetterLandsOnItsEnvelopesRetryPartition(t *testing.T) {
	const retry, n = "esignflow.sink-retry.v1", 12
	p := sink.RetryPartitioner(retry)
	byKey := kgo.StickyKeyPartitioner(nil).ForTopic("esignflow.events.v1")
	spread := map[int]bool{}
	for i := range 50 {
		id := fmt.Sprintf("env-%03d", i)
		want := int(sink.RetryPartition(id, n))
		spread[want] = true
		for _, v := range []int64{4, 6, 11} {
			if got := p.ForTopic(retry).Partition(&kgo.Record{Key: sink.ParkKey(id, v)}, n); got != want {
				t.Fatalf("%s v%d replayed to retry partition %d, parked to %d", id, v, got, want)
			}
		}
		r := &kgo.Record{Key: []byte(id)}
		if got, want := p.ForTopic("esignflow.events.v1").Partition(r, n), byKey.Partition(r, n); got != want {
			t.Fatalf("an events record keyed %s went to %d, the key's hash says %d", id, got, want)
		}
	}
	if len(spread) < n/2 {
		t.Fatalf("50 envelopes on %d of %d retry partitions", len(spread), n)
	}
}
