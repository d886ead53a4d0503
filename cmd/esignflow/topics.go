package main

import (
	"context"
	"fmt"

	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/schemas"
)

func runTopics(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("%w: the only topics subcommand is 'topics create'", errUsage)
	}
	fs := newFlagSet("topics create", e, "Create esignflow's topics on a cluster (those that exist are left alone).")
	c := connFlags(fs, false)
	parts := fs.Int("partitions", 12, "`partitions` per topic")
	rf := fs.Int("replication", 3, "replication `factor`")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cl, err := c.kafkaClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	names := schemas.Prefixed(c.topicPrefix)
	if err := topics.Ensure(ctx, cl, topics.Config{Partitions: int32(*parts), Replication: int16(*rf), Names: names}); err != nil {
		return err
	}
	for _, t := range names.All() {
		fmt.Fprintln(e.stdout, t)
	}
	return nil
}
