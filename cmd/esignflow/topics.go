package main

import (
	"context"
	"fmt"

	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/schemas"
)

func runTopics(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("%w: unknown subcommand: the only topics subcommand is 'topics create'", errUsage)
	}
	fs := newFlagSet("topics create", e, "Create esignflow's topics on a cluster. Those that exist are left alone, and a warning says\nwhere one differs from what esignflow needs (partitions, replication, retention).")
	c := connFlags(fs, false)
	parts := fs.Int("partitions", 12, "`partitions` per topic")
	rf := fs.Int("replication", 3, "replication `factor`")
	minISR := fs.Int("min-insync-replicas", 0, "each topic's min.insync.replicas (`n`; production: 2 with --replication 3); 0 leaves the broker default")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if err := c.checkKafka(ctx); err != nil {
		return err
	}
	cl, err := c.kafkaClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	names := schemas.Prefixed(c.topicPrefix)
	results, err := topics.Create(ctx, cl, topics.Config{Partitions: int32(*parts), Replication: int16(*rf), MinInsyncReplicas: *minISR, Names: names})
	for _, r := range results {
		what := "existed"
		if r.Created {
			what = "created"
		}
		fmt.Fprintf(e.stdout, "%-8s %s\n", what, r.Topic)
		for _, w := range r.Warnings {
			fmt.Fprintf(e.stderr, "warning: %s %s\n", r.Topic, w)
		}
	}
	return err
}
