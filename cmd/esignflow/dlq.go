package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/topicread"
	"github.com/esignflow/esignflow/schemas"
)

func runDLQ(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return fmt.Errorf("%w: unknown subcommand: use 'dlq list' or 'dlq replay'", errUsage)
	}
	sub := args[0]
	doc := "List the dead letters of esignflow.dlq.v1: where each came from and why."
	if sub == "replay" {
		doc = "Publish dead letters back to the topic they came from (after a fix): the original key, value and headers.\nOnly letters of Kafka records replay; a webhook dead-lettered by the ingress holds its raw body for an operator."
	}
	fs := newFlagSet("dlq "+sub, e, doc)
	c := connFlags(fs, false).producing(fs)
	topic := fs.String("topic", "", "only letters from this `topic`")
	component := fs.String("component", "", "only letters from this `component` (processor, sink, ingress/…)")
	provider := fs.String("provider", "", "only the webhooks of this `provider` the ingress dead-lettered (component ingress/<provider>)")
	asJSON := fs.Bool("json", false, "print JSON lines (list)")
	dryRun := fs.Bool("dry-run", false, "say what would be replayed, publish nothing (replay)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	codec, err := c.lookupCodec(ctx)
	if err != nil {
		return err
	}
	base, err := c.clientOpts()
	if err != nil {
		return err
	}
	var letters []schemas.DeadLetter
	err = topicread.All(ctx, base, codec.Topics().DLQ, func(r *kgo.Record) error {
		var dl schemas.DeadLetter
		if err := codec.Decode(ctx, r.Value, &dl); err != nil {
			fmt.Fprintf(e.stderr, "skipping %s/%d@%d: %v\n", r.Topic, r.Partition, r.Offset, err)
			return nil
		}
		p, fromWebhook := webhookProvider(dl)
		if (*topic == "" || dl.Topic == *topic) && (*component == "" || dl.Component == *component) &&
			(*provider == "" || fromWebhook && p == *provider) {
			letters = append(letters, dl)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if sub == "list" {
		enc := json.NewEncoder(e.stdout)
		for _, dl := range letters {
			if *asJSON {
				if err := enc.Encode(dl); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintln(e.stdout, formatLetter(dl))
		}
		fmt.Fprintf(e.stderr, "%d dead letters%s\n", len(letters), letterCounts(letters))
		return nil
	}
	var recs []*kgo.Record
	for _, dl := range letters {
		if dl.Offset < 0 || strings.HasPrefix(dl.Component, "ingress/") {
			fmt.Fprintf(e.stderr, "not replayable (not a Kafka record): %s %s\n", dl.Component, dl.Error)
			continue
		}
		r := &kgo.Record{Topic: dl.Topic, Key: dl.Key, Value: dl.Value}
		for _, h := range dl.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: "esignflow-replayed-from", Value: []byte(fmt.Sprintf("%s/%d@%d", dl.Topic, dl.Partition, dl.Offset))})
		recs = append(recs, r)
		fmt.Fprintf(e.stdout, "replay %s/%d@%d key=%q → %s\n", dl.Topic, dl.Partition, dl.Offset, dl.Key, dl.Topic)
	}
	if *dryRun || len(recs) == 0 {
		return nil
	}
	cl, err := c.kafkaClient(kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	fmt.Fprintf(e.stderr, "%d replayed\n", len(recs))
	return nil
}

// webhookProvider returns the provider of a webhook the ingress
// dead-lettered (component ingress/<provider>: no Kafka record behind it).
func webhookProvider(dl schemas.DeadLetter) (string, bool) {
	return strings.CutPrefix(dl.Component, "ingress/")
}

// formatLetter is one readable line for a dead letter: where it came from
// (a webhook of a provider, or a Kafka record) and why.
func formatLetter(dl schemas.DeadLetter) string {
	from := fmt.Sprintf("%s/%d@%d key=%q", dl.Topic, dl.Partition, dl.Offset, dl.Key)
	if p, ok := webhookProvider(dl); ok {
		from = "webhook from provider " + p
	}
	return fmt.Sprintf("%s %-14s %s %d bytes: %s", dl.FailedAt.Local().Format(time.DateTime), dl.Component, from, len(dl.Value), dl.Error)
}

// letterCounts is " (processor: 2, ingress/sim: 1)", largest first.
func letterCounts(letters []schemas.DeadLetter) string {
	if len(letters) == 0 {
		return ""
	}
	n := map[string]int{}
	for _, dl := range letters {
		n[dl.Component]++
	}
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if n[keys[i]] != n[keys[j]] {
			return n[keys[i]] > n[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, n[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
