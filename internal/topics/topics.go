// Package topics creates esignflow's Kafka topics.
package topics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

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
	// MinInsyncReplicas is each topic's min.insync.replicas; <= 0 leaves
	// the broker default. With replication 3, 2 makes an acks=all write
	// survive the loss of any one broker.
	MinInsyncReplicas int
	// Names of the topics; the zero value is schemas.DefaultNames.
	Names schemas.Names
}

// ErrRefused means the broker refused to create a topic.
var ErrRefused = errors.New("broker refused to create topic")

// Ensure creates every esignflow topic that does not exist yet (All). The
// status topic keeps its records forever (retention.ms=-1): it is the
// audit trail. The changelog is compacted, with the events topic's
// partition count: it is what Redis is rebuilt from, partition by
// partition. The sink's retry topic is compacted, with the status
// topic's partition count.
func Ensure(ctx context.Context, cl *kgo.Client, cfg Config) error {
	_, err := Create(ctx, cl, cfg)
	return err
}

// Result is what Create did with one topic.
type Result struct {
	Topic   string
	Created bool // false: it existed
	// Warnings say how an existing topic differs from what esignflow
	// needs or was asked for (partitions, replication, retention).
	Warnings []string
}

// TopicSinkRetry is the default name of the sink's retry topic, where the
// sink parks the status changes it could not finalise yet (the provider
// is down or has not prepared the files) and reads them back when their
// next attempt is due. Only the sink writes and reads it (and
// `esignflow dlq replay`, for the sink's dead letters); its values are
// the status changes' own bytes and its headers say when to try again.
const TopicSinkRetry = "esignflow.sink-retry.v1"

// SinkRetry returns the name of the sink's retry topic in the
// installation names belongs to: TopicSinkRetry behind the same prefix as
// the status topic.
func SinkRetry(names schemas.Names) string {
	names = names.OrDefault()
	if prefix, ok := strings.CutSuffix(names.Status, schemas.TopicStatus); ok {
		return prefix + TopicSinkRetry
	}
	return names.Status + ".sink-retry"
}

// All lists every topic of the installation names belongs to: the
// schemas' topics in data-flow order, then the sink's retry topic.
func All(names schemas.Names) []string {
	names = names.OrDefault()
	return append(names.All(), SinkRetry(names))
}

// keepsForever reports whether esignflow needs topic to keep its records
// forever.
func keepsForever(names schemas.Names, topic string) bool {
	return topic == names.Status || topic == names.DLQ
}

// compaction is how a compacted topic is created and why it must stay so.
type compaction struct {
	like string // the topic whose partition count it is created with
	why  string // what a topic left uncompacted costs, for check's warning
}

// compacted are the topics esignflow creates compacted.
func compacted(names schemas.Names) map[string]compaction {
	return map[string]compaction{
		// The changelog: its last record per envelope is the state, and
		// it is co-partitioned with the events topic, whatever that was
		// created with.
		names.Envelopes: {like: names.Events,
			why: "the changelog must be compacted (cleanup.policy=compact), or restoring Redis reads every change ever made"},
		// The sink's retry topic, keyed by envelope version: a parked
		// status change is replaced by its next park and deleted (a
		// tombstone) once finalised, so the topic holds about one record
		// per parked envelope and none expires. As many partitions as
		// the status topic, so sink replicas share the retries as they
		// share the status changes.
		SinkRetry(names): {like: names.Status,
			why: "the sink's retry topic should be compacted (cleanup.policy=compact), or a parked envelope can expire before its next attempt"},
	}
}

// Create is Ensure, and says which topics it created, which existed, and
// how an existing one differs from what esignflow needs: a partition count
// or replication factor other than asked for, or a retention on the status
// or dead-letter topic (the audit trail would expire).
func Create(ctx context.Context, cl *kgo.Client, cfg Config) ([]Result, error) {
	adm := kadm.NewClient(cl)
	parts, rf := cfg.Partitions, cfg.Replication
	if parts <= 0 {
		parts = -1
	}
	if rf <= 0 {
		rf = -1
	}
	names := cfg.Names.OrDefault()
	compact := compacted(names)
	var out []Result
	for _, t := range All(names) {
		configs := map[string]*string{}
		if keepsForever(names, t) {
			configs["retention.ms"] = kadm.StringPtr("-1")
		}
		n := parts
		if c, ok := compact[t]; ok {
			configs["cleanup.policy"] = kadm.StringPtr("compact")
			details, err := adm.ListTopics(ctx, c.like)
			if err != nil {
				return nil, fmt.Errorf("describe topic %s: %w", c.like, err)
			}
			if d, ok := details[c.like]; ok && d.Err == nil && len(d.Partitions) > 0 {
				n = int32(len(d.Partitions))
			}
		}
		if cfg.MinInsyncReplicas > 0 {
			configs["min.insync.replicas"] = kadm.StringPtr(strconv.Itoa(cfg.MinInsyncReplicas))
		}
		resp, err := adm.CreateTopics(ctx, n, rf, configs, t)
		if err != nil {
			return nil, fmt.Errorf("create topic %s: %w", t, err)
		}
		r := resp[t]
		switch {
		case r.Err == nil:
			out = append(out, Result{Topic: t, Created: true})
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
			out = append(out, Result{Topic: t})
		default:
			return nil, fmt.Errorf("%w %s: %w (%s)", ErrRefused, t, r.Err, r.ErrMessage)
		}
	}
	return out, check(ctx, adm, cfg, names, out)
}

// check fills in the warnings of the topics in results that existed.
func check(ctx context.Context, adm *kadm.Client, cfg Config, names schemas.Names, results []Result) error {
	var topics []string
	for _, r := range results {
		if !r.Created {
			topics = append(topics, r.Topic)
		}
	}
	if len(topics) == 0 {
		return nil // all created: nothing to compare
	}
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("describe topics: %w", err)
	}
	configs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return fmt.Errorf("describe topic configs: %w", err)
	}
	compact := compacted(names)
	for i := range results {
		r := &results[i]
		if r.Created {
			continue
		}
		if d, ok := details[r.Topic]; ok && d.Err == nil {
			if n := int32(len(d.Partitions)); cfg.Partitions > 0 && n != cfg.Partitions {
				r.Warnings = append(r.Warnings, fmt.Sprintf("has %d partitions, not the %d asked for (partitions cannot be taken away; more let more processor replicas share the work)", n, cfg.Partitions))
			}
			if rf := int16(d.Partitions.NumReplicas()); cfg.Replication > 0 && rf < cfg.Replication {
				r.Warnings = append(r.Warnings, fmt.Sprintf("has replication factor %d, not the %d asked for", rf, cfg.Replication))
			}
		}
		rc, err := configs.On(r.Topic, nil)
		if err != nil || rc.Err != nil {
			continue
		}
		for _, c := range rc.Configs {
			if c.Value == nil {
				continue
			}
			if c.Key == "retention.ms" && keepsForever(names, r.Topic) && *c.Value != "-1" {
				r.Warnings = append(r.Warnings, fmt.Sprintf("has retention.ms=%s: its records expire; esignflow needs -1 (kept forever: it is the audit trail)", *c.Value))
			}
			if ct, ok := compact[r.Topic]; ok && c.Key == "cleanup.policy" && !strings.Contains(*c.Value, "compact") {
				r.Warnings = append(r.Warnings, fmt.Sprintf("has cleanup.policy=%s: %s", *c.Value, ct.why))
			}
			if c.Key == "min.insync.replicas" && cfg.MinInsyncReplicas > 0 {
				if n, err := strconv.Atoi(*c.Value); err == nil && n < cfg.MinInsyncReplicas {
					r.Warnings = append(r.Warnings, fmt.Sprintf("has min.insync.replicas=%d, not the %d asked for (existing topics are left alone: raise it with kafka-configs)", n, cfg.MinInsyncReplicas))
				}
			}
		}
	}
	return nil
}
