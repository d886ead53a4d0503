// Package topicread reads a topic from its start to its end as of the call
// (its last stable offsets, read_committed): what restoring state, auditing
// an envelope or listing dead letters needs, without waiting for records
// that are not there yet.
package topicread

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// All calls fn for every committed record of topic, oldest first per
// partition, and returns when every partition has been read up to where it
// ended when All began. opts must say how to reach the brokers; the
// consumer options are All's own.
func All(ctx context.Context, opts []kgo.Opt, topic string, fn func(*kgo.Record) error) error {
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, opts...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// The last offset below the stable end is often a transaction
		// marker: keep them, to see the end.
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("read %s: end offsets: %w", topic, err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
			if ferr != nil || r.Attrs.IsControl() {
				return
			}
			ferr = fn(r)
		})
		if ferr != nil {
			return ferr
		}
	}
	return nil
}

// AllSettled is All once no transaction is open on topic: it first waits
// until every partition's last stable offset has reached its high
// watermark. On Apache Kafka a transaction's commit markers are written
// after EndTxn returns, so for a while the last stable offset stays below
// records that are already committed, and All, which reads to the stable
// end, would miss them (kfake writes the markers at once and hides this).
// Call it once the writers have stopped — a benchmark's count, a test's
// final check; while a writer keeps transactions open it waits until ctx
// ends.
func AllSettled(ctx context.Context, opts []kgo.Opt, topic string, fn func(*kgo.Record) error) error {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	adm := kadm.NewClient(cl)
	for {
		stable, serr := adm.ListCommittedOffsets(ctx, topic)
		end, eerr := adm.ListEndOffsets(ctx, topic)
		if serr == nil && eerr == nil && settled(stable, end) {
			break
		}
		select {
		case <-ctx.Done():
			cl.Close()
			return fmt.Errorf("read %s: waiting for open transactions to end: %w", topic, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cl.Close()
	return All(ctx, opts, topic, fn)
}

// settled says whether every partition's stable offset is its end.
func settled(stable, end kadm.ListedOffsets) bool {
	ok := true
	end.Each(func(e kadm.ListedOffset) {
		s, found := stable.Lookup(e.Topic, e.Partition)
		if e.Err != nil || !found || s.Err != nil || s.Offset != e.Offset {
			ok = false
		}
	})
	return ok
}
