package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/schemas"
)

func runWatch(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("watch", e, "Follow esignflow.status.v1 (read_committed) and print each status change.")
	c := connFlags(fs, false)
	fromStart := fs.Bool("from-beginning", false, "start from the oldest change instead of new ones")
	only := fs.String("envelope", "", "print only this envelope `id`")
	asJSON := fs.Bool("json", false, "print JSON lines (the whole record)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	codec, err := c.codec(ctx)
	if err != nil {
		return err
	}
	start := kgo.NewOffset().AtEnd()
	if *fromStart {
		start = kgo.NewOffset().AtStart()
	}
	cl, err := c.kafkaClient(kgo.ConsumeTopics(codec.Topics().Status), kgo.ConsumeResetOffset(start), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	return watch(ctx, e, cl, codec, *only, *asJSON)
}

func watch(ctx context.Context, e *env, cl *kgo.Client, codec *schemas.Codec, only string, asJSON bool) error {
	enc := json.NewEncoder(e.stdout)
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		var err error
		fs.EachRecord(func(r *kgo.Record) {
			if err != nil || (only != "" && string(r.Key) != only) {
				return
			}
			var ch schemas.EnvelopeStatusChanged
			if derr := codec.Decode(ctx, r.Value, &ch); derr != nil {
				fmt.Fprintf(e.stderr, "skipping %s/%d@%d: %v\n", r.Topic, r.Partition, r.Offset, derr)
				return
			}
			if asJSON {
				err = enc.Encode(ch)
				return
			}
			_, err = fmt.Fprintln(e.stdout, formatChange(ch))
		})
		if err != nil {
			return err
		}
	}
}

// formatChange is one readable line for a status change.
func formatChange(ch schemas.EnvelopeStatusChanged) string {
	from := "·"
	if ch.PreviousStatus != nil {
		from = string(*ch.PreviousStatus)
	}
	var rcps []string
	for _, r := range ch.State.Recipients {
		rcps = append(rcps, r.RecipientID+"="+string(r.Status))
	}
	sort.Strings(rcps)
	req := ""
	if ch.State.RequestID != nil {
		req = " request=" + *ch.State.RequestID
	}
	extra := ""
	if ch.State.Conflict != nil {
		extra = " CONFLICT(" + *ch.State.Conflict + ")"
	}
	if ch.State.Reason != nil {
		extra += " reason=" + *ch.State.Reason
	}
	src := ""
	if n := len(ch.Audit); n > 0 {
		src = " via " + strings.ToLower(string(ch.Audit[n-1].Source))
	}
	return fmt.Sprintf("%s %-26s v%-3d %-16s → %-16s%s%s recipients[%s]%s",
		ch.ChangedAt.Local().Format(time.TimeOnly), ch.EnvelopeID, ch.Version, from, ch.Status, src, req, strings.Join(rcps, " "), extra)
}
