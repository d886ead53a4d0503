package topics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// ErrNotInMetadata means a topic was still missing from the brokers'
// metadata when Await gave up.
var ErrNotInMetadata = errors.New("not in the metadata")

// Await asks for the metadata of names until each topic is in it with its
// partitions, and returns that metadata. A topic just created is not in
// every broker's metadata at once (seen on Apache Kafka: a broker answers
// UNKNOWN_TOPIC_OR_PARTITION, or no partitions, for a moment), so a
// retriable answer is asked again, backing off from 50ms to 1s, for up to
// wait. A topic that is still missing then is an ErrNotInMetadata; an
// error no wait can cure (authorization, say) returns at once. An error
// of the metadata request itself is returned as it is.
func Await(ctx context.Context, adm *kadm.Client, wait time.Duration, names ...string) (kadm.Metadata, error) {
	deadline := time.Now().Add(wait)
	for pause := 50 * time.Millisecond; ; pause = min(2*pause, time.Second) {
		md, err := adm.Metadata(ctx, names...)
		if err != nil {
			return md, fmt.Errorf("metadata: %w", err)
		}
		missing, err := unready(md, names)
		if missing == "" {
			return md, nil
		}
		if err != nil && !kerr.IsRetriable(err) {
			return md, fmt.Errorf("topic %s: %w", missing, err)
		}
		if time.Now().After(deadline) {
			if err != nil {
				return md, fmt.Errorf("topic %s: %w after %s: %w", missing, ErrNotInMetadata, wait, err)
			}
			return md, fmt.Errorf("topic %s: %w after %s", missing, ErrNotInMetadata, wait)
		}
		select {
		case <-ctx.Done():
			return md, ctx.Err()
		case <-time.After(pause):
		}
	}
}

// unready names the first of names that md does not hold with its
// partitions, and the error the brokers gave for it (nil when it is
// merely absent or has none).
func unready(md kadm.Metadata, names []string) (string, error) {
	for _, n := range names {
		td, ok := md.Topics[n]
		switch {
		case !ok:
			return n, nil
		case td.Err != nil:
			return n, td.Err
		case len(td.Partitions) == 0:
			return n, nil
		}
	}
	return "", nil
}
