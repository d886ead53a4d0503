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
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/schemas"
	"github.com/esignflow/esignflow/sink"
)

func runDLQ(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return fmt.Errorf("%w: unknown subcommand: use 'dlq list' or 'dlq replay'", errUsage)
	}
	sub := args[0]
	doc := "List the dead letters of esignflow.dlq.v1: where each came from and why."
	if sub == "replay" {
		doc = "Replay dead letters (after a fix) and say what became of each: a processor letter goes back to the topic it came from, with its original key, value and headers;\na sink letter goes to the sink's retry topic, where the sink finalises it again (esignflow.status.v1 is never written: its one writer is the processor).\nOnly letters of Kafka records replay; a webhook dead-lettered by the ingress holds its raw body for an operator."
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
	plans := make([]replayPlan, 0, len(letters))
	for _, dl := range letters {
		plans = append(plans, planReplay(ctx, codec, dl, time.Now()))
	}
	var recs []*kgo.Record
	for _, p := range plans {
		if p.rec == nil {
			fmt.Fprintf(e.stdout, "not replayed %s: %s\n", p.from, p.why)
			continue
		}
		recs = append(recs, p.rec)
		if *dryRun {
			fmt.Fprintf(e.stdout, "would replay %s → %s (%s)\n", p.from, p.rec.Topic, p.what)
		}
	}
	if *dryRun {
		fmt.Fprintf(e.stderr, "%d would be replayed\n", len(recs))
		return nil
	}
	if len(recs) == 0 {
		fmt.Fprintln(e.stderr, "0 replayed")
		return nil
	}
	// A sink letter goes to its envelope's retry partition, where the
	// sink tries that envelope's versions one batch at a time; the rest
	// by the hash of their keys, as the services produce them.
	cl, err := c.kafkaClient(kgo.RecordPartitioner(sink.RetryPartitioner(topics.SinkRetry(codec.Topics()))), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return err
	}
	defer cl.Close()
	results := cl.ProduceSync(ctx, recs...)
	i, failed := 0, 0
	for _, p := range plans {
		if p.rec == nil {
			continue
		}
		if err := results[i].Err; err != nil {
			failed++
			fmt.Fprintf(e.stdout, "failed %s → %s: %v\n", p.from, p.rec.Topic, err)
		} else {
			fmt.Fprintf(e.stdout, "replayed %s → %s (%s)\n", p.from, p.rec.Topic, p.what)
		}
		i++
	}
	fmt.Fprintf(e.stderr, "%d replayed\n", len(recs)-failed)
	if failed > 0 {
		return fmt.Errorf("replay: %d of %d letters not published", failed, len(recs))
	}
	return nil
}

// replayPlan is what replaying one dead letter does: the record it
// publishes (nil: none, and why), said in words.
type replayPlan struct {
	from string
	rec  *kgo.Record
	what string
	why  string
}

// planReplay decides where a letter goes. A letter of the processor goes
// back to the topic it came from (its input: requests or events), with its
// key, value and headers. A letter of the sink is a status change the sink
// could not finalise: it goes to the sink's retry topic, where the sink
// finalises it again — never to esignflow.status.v1, which has one writer,
// the processor (a second copy there would be a duplicate (envelope_id,
// version) for every downstream consumer). A webhook the ingress
// dead-lettered has no Kafka record behind it.
func planReplay(ctx context.Context, codec *schemas.Codec, dl schemas.DeadLetter, now time.Time) replayPlan {
	from := fmt.Sprintf("%s %s/%d@%d key=%q", dl.Component, dl.Topic, dl.Partition, dl.Offset, dl.Key)
	names := codec.Topics()
	switch {
	case dl.Offset < 0 || strings.HasPrefix(dl.Component, "ingress/"):
		return replayPlan{from: dl.Component + " " + dl.Error, why: "not a Kafka record (a webhook's raw body, for an operator)"}
	case dl.Component == "sink":
		return replayPlan{from: from, rec: sink.ReplayRecord(ctx, codec, topics.SinkRetry(names), dl, now),
			what: "the sink finalises it again; " + names.Status + " is not written"}
	case dl.Topic == names.Status:
		return replayPlan{from: from, why: names.Status + " has one writer, the processor: a status change is never published again"}
	}
	r := &kgo.Record{Topic: dl.Topic, Key: dl.Key, Value: dl.Value}
	for _, h := range dl.Headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: "esignflow-replayed-from", Value: []byte(fmt.Sprintf("%s/%d@%d", dl.Topic, dl.Partition, dl.Offset))})
	return replayPlan{from: from, rec: r, what: "consumed again by the " + dl.Component}
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
