package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/schemas"
)

func runWatch(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("watch", e, "Follow esignflow.status.v1 (read_committed) and print each status change.")
	c := connFlags(fs, false)
	fromStart := fs.Bool("from-beginning", false, "start from the oldest change instead of new ones")
	since := fs.String("since", "", "start from the first change at or after `TIME`: RFC 3339 (2026-01-02T15:04:05Z) or a duration ago (1h, 30m)")
	atEnd := fs.Bool("exit-at-end", false, "exit once every change that was on the topic at start has been printed, instead of following")
	only := fs.String("envelope", "", "print only this envelope `id`")
	asJSON := fs.Bool("json", false, "print JSON lines (the whole record)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	start, sinceMilli := kgo.NewOffset().AtEnd(), int64(-1)
	switch {
	case *fromStart && *since != "":
		return fmt.Errorf("%w: use either --from-beginning or --since", errUsage)
	case *fromStart:
		start = kgo.NewOffset().AtStart()
	case *since != "":
		t, err := parseSince(*since, time.Now())
		if err != nil {
			return fmt.Errorf("%w: --since: %w", errUsage, err)
		}
		sinceMilli = t.UnixMilli()
		start = kgo.NewOffset().AfterMilli(sinceMilli)
	}
	codec, err := c.lookupCodec(ctx)
	if err != nil {
		return err
	}
	topic := codec.Topics().Status
	opts := []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(start), kgo.FetchIsolationLevel(kgo.ReadCommitted())}
	var remaining map[int32]int64
	if *atEnd {
		// The last offset below the stable end is often a transaction
		// marker: keep them, to see the end.
		opts = append(opts, kgo.KeepControlRecords())
	}
	cl, err := c.kafkaClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if *atEnd {
		if remaining, err = unread(ctx, cl, topic, *fromStart, sinceMilli); err != nil {
			return err
		}
	}
	return watch(ctx, e, cl, codec, *only, *asJSON, remaining)
}

// parseSince reads --since: an RFC 3339 time, or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", s)
	}
	if d < 0 {
		d = -d
	}
	return now.Add(-d), nil
}

// unread returns, for each partition of topic with committed records a
// consumer starting at the oldest (fromStart), at sinceMilli (>= 0) or at
// the end has yet to read, the offset where they end (the partition's last
// stable offset at the call).
func unread(ctx context.Context, cl *kgo.Client, topic string, fromStart bool, sinceMilli int64) (map[int32]int64, error) {
	adm := kadm.NewClient(cl)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	var starts kadm.ListedOffsets
	switch {
	case fromStart:
		starts, err = adm.ListStartOffsets(ctx, topic)
	case sinceMilli >= 0:
		starts, err = adm.ListOffsetsAfterMilli(ctx, sinceMilli, topic)
	default:
		starts = ends // from the end: nothing to read
	}
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		s, ok := starts.Lookup(topic, o.Partition)
		if o.Err == nil && ok && s.Err == nil && s.Offset >= 0 && s.Offset < o.Offset {
			remaining[o.Partition] = o.Offset
		}
	})
	return remaining, nil
}

// watch prints the status changes cl fetches until ctx ends or, when
// remaining is not nil, until every partition in it has been read up to
// its offset.
func watch(ctx context.Context, e *env, cl *kgo.Client, codec *schemas.Codec, only string, asJSON bool, remaining map[int32]int64) error {
	enc := json.NewEncoder(e.stdout)
	for remaining == nil || len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		var err error
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
			if err != nil || r.Attrs.IsControl() || (only != "" && string(r.Key) != only) {
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
	return nil
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
