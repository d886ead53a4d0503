// Package topics creates esignflow's Kafka topics.
package topics

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/schemas"
)

// Config says how to create the topics. The zero value uses the broker's
// defaults for partitions and replication.
type Config struct {
	// Partitions per topic; <= 0 means the broker default. More partitions
	// let more processor replicas share the work.
	Partitions int32
	// Replication factor; <= 0 means the broker default.
	Replication int16
	// Names of the topics; the zero value is schemas.DefaultNames.
	Names schemas.Names
}

// ErrRefused means the broker refused to create a topic.
var ErrRefused = errors.New("broker refused to create topic")

// Ensure creates every esignflow topic that does not exist yet. The status
// topic keeps its records forever (retention.ms=-1): it is the audit trail
// and the source Redis is rebuilt from.
func Ensure(ctx context.Context, cl *kgo.Client, cfg Config) error {
	adm := kadm.NewClient(cl)
	parts, rf := cfg.Partitions, cfg.Replication
	if parts <= 0 {
		parts = -1
	}
	if rf <= 0 {
		rf = -1
	}
	names := cfg.Names.OrDefault()
	for _, t := range names.All() {
		var configs map[string]*string
		if t == names.Status || t == names.DLQ {
			configs = map[string]*string{"retention.ms": kadm.StringPtr("-1")}
		}
		resp, err := adm.CreateTopics(ctx, parts, rf, configs, t)
		if err != nil {
			return fmt.Errorf("create topic %s: %w", t, err)
		}
		r := resp[t]
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("%w %s: %w (%s)", ErrRefused, t, r.Err, r.ErrMessage)
		}
	}
	return nil
}
