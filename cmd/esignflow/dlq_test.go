package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/topicread"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
	"github.com/esignflow/esignflow/sink"
)

// dlqTestLog discards.
func dlqTestLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// refusing is a Downloader that refuses every download while on, as a
// provider does to a key without the right.
type refusing struct {
	inner sink.Downloader
	on    atomic.Bool
}

func (r *refusing) Download(ctx context.Context, id string, kind provider.Artifact) (provider.Download, error) {
	if r.on.Load() {
		return provider.Download{}, &provider.PermanentError{Status: 403, Reason: "not allowed"}
	}
	return r.inner.Download(ctx, id, kind)
}

// committed returns the committed data records of topic, reading until
// there are at least n.
func committed(t *testing.T, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d of %d records", topic, len(out), n)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// allCommitted returns every committed data record of topic, read up to
// its end: its writers must have stopped.
func allCommitted(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	err := topicread.AllSettled(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, topic, func(r *kgo.Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatalf("%s: not read to its end: %v", topic, err)
	}
	return out
}

// A sink letter replays onto the sink's retry topic and the sink
// finalises it: esignflow.status.v1 gets no record (it used to get the
// status change again, a duplicate (envelope_id, version) for every
// downstream consumer). A processor letter still goes back to its topic.
func TestReplaySinkLetterNeverWritesStatus(t *testing.T) {
	k := fakes.NewKafka(t, 2) // on a shared broker, it deletes topics.All, the sink's retry topic too
	reg := srfake.New()
	t.Cleanup(reg.Close)
	srcl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	codec, err := schemas.NewCodec(ctx, srcl, schemas.WithNames(k.Names))
	if err != nil {
		t.Fatal(err)
	}
	simulator := fakes.Sim(t, sim.Config{Step: time.Millisecond, Logger: dlqTestLog()})
	simc, err := sim.NewClient(sim.ClientConfig{BaseURL: simulator.URL(), Logger: dlqTestLog()})
	if err != nil {
		t.Fatal(err)
	}
	uri := "s3://d/a.pdf"
	env, err := simc.Create(ctx, "req-replay", schemas.SigningRequest{RequestID: "req-replay", Tenant: "acme", Documents: []schemas.Document{{Name: "a.pdf", URI: &uri}},
		Recipients: []schemas.Recipient{{ID: "r1", Name: "A", Email: "a@example.com", RoutingOrder: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := simc.Get(ctx, env.ID)
		if err == nil && got.Status == schemas.StatusCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never completed", env.ID)
		}
		time.Sleep(5 * time.Millisecond)
	}
	prev, st := schemas.StatusSent, schemas.StatusCompleted
	rid := "req-replay"
	ch := schemas.EnvelopeStatusChanged{EnvelopeID: env.ID, Version: 4, PreviousStatus: &prev, Status: st, EventID: "e", ChangedAt: time.Now().UTC().Truncate(time.Millisecond),
		State: schemas.EnvelopeState{EnvelopeID: env.ID, Provider: "sim", RequestID: &rid, Status: &st, Version: 4, Recipients: []schemas.RecipientState{}, AuditSeq: 5, AuditHead: strings.Repeat("ab", 32)},
		Audit: []schemas.AuditEntry{}}
	val, err := codec.Encode(&ch)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: k.Names.Status, Key: []byte(env.ID), Value: val}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A processor letter beside it, from the events topic.
	pl, err := codec.Encode(&schemas.DeadLetter{Topic: k.Names.Events, Partition: 1, Offset: 3, Key: []byte("pe-1"), Value: []byte("event"),
		Headers: []schemas.Header{}, Error: "boom", Component: "processor", FailedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: k.Names.DLQ, Value: pl}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	dl := &refusing{inner: simc}
	dl.on.Store(true)
	s, err := sink.New(sink.Config{Brokers: k.Brokers, Codec: codec, Archive: sink.Dir{Root: t.TempDir()}, Downloaders: map[string]sink.Downloader{"sim": dl},
		Group: k.Group("esignflow-sink"), InstanceID: "s1", RetryBase: 5 * time.Millisecond, Logger: dlqTestLog(),
		KafkaOpts: []kgo.Opt{kgo.FetchMaxWait(50 * time.Millisecond), kgo.TransactionTimeout(5 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	stopped := false
	stopSink := func() {
		if !stopped {
			stopped = true
			stop()
			if err := <-done; err != nil {
				t.Errorf("sink: %v", err)
			}
		}
	}
	t.Cleanup(stopSink)
	committed(t, k.Brokers, k.Names.DLQ, 2) // the processor's and the sink's
	dl.on.Store(false)                      // the fix

	e, out, errb := testEnv()
	conn := []string{"--brokers", strings.Join(k.Brokers, ","), "--registry", reg.URL(), "--topic-prefix", k.Prefix, "--connect-timeout", "5s"}
	if code := run(ctx, e, append([]string{"dlq", "replay"}, conn...)); code != 0 {
		t.Fatalf("dlq replay: exit %d\n%s%s", code, out, errb)
	}
	retry := topics.SinkRetry(k.Names)
	for _, want := range []string{"replayed sink " + k.Names.Status + "/", "→ " + retry + " (the sink finalises it again", "replayed processor " + k.Names.Events + "/1@3", "→ " + k.Names.Events} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dlq replay says:\n%s\nwithout %q", out, want)
		}
	}
	fins := committed(t, k.Brokers, k.Names.Finalized, 1)
	var fin schemas.EnvelopeFinalized
	if err := codec.Decode(ctx, fins[0].Value, &fin); err != nil {
		t.Fatal(err)
	}
	if fin.EnvelopeID != env.ID {
		t.Fatalf("finalized %+v", fin)
	}
	stopSink()
	if n := len(allCommitted(t, k.Brokers, k.Names.Status)); n != 1 {
		t.Errorf("%s has %d records after the replay, want the 1 the processor wrote", k.Names.Status, n)
	}
	if n := len(allCommitted(t, k.Brokers, k.Names.Finalized)); n != 1 {
		t.Errorf("%d finalized records, want 1", n)
	}
	if evs := allCommitted(t, k.Brokers, k.Names.Events); len(evs) != 1 || string(evs[0].Key) != "pe-1" {
		t.Errorf("the processor letter replayed to %s as %d records", k.Names.Events, len(evs))
	}
}
