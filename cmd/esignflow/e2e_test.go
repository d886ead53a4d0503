package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/stack"
	"github.com/esignflow/esignflow/internal/topicread"
	"github.com/esignflow/esignflow/provider/registry"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
	"github.com/esignflow/esignflow/sink"
)

func startStack(t *testing.T, cfg stack.Config) *stack.Stack {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Brokers, cfg.Namespace = fakes.StackKafka(t)
	st, err := stack.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fakes.Start(t, st)
	return st
}

// lastStatus reads the status topic as a downstream consumer would and
// returns each envelope's last change.
func lastStatus(t *testing.T, st *stack.Stack) map[string]schemas.EnvelopeStatusChanged {
	t.Helper()
	out := map[string]schemas.EnvelopeStatusChanged{}
	err := topicread.All(context.Background(), []kgo.Opt{kgo.SeedBrokers(st.Brokers...)}, st.Codec.Topics().Status, func(r *kgo.Record) error {
		var ch schemas.EnvelopeStatusChanged
		if err := st.Codec.Decode(context.Background(), r.Value, &ch); err != nil {
			return err
		}
		if ch.Version > out[ch.EnvelopeID].Version {
			out[ch.EnvelopeID] = ch
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEndToEnd sends requests through the CLI's code path to the whole
// system and sees every envelope reach its simulator-true terminal status
// on the status topic — with a fifth of the webhooks dropped, so the
// reconciler has to find some of it — in every dialect the simulator
// speaks, each through its provider's own client (for DocuSign, the
// DocuSign adapter against the simulator's DocuSign API and Connect).
// The requests name no provider: they go to the simulated one, as the
// README's walkthrough does.
func TestEndToEnd(t *testing.T) {
	for _, dialect := range registry.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			p, _ := registry.ByDialect(dialect)
			st := startStack(t, stack.Config{
				Provider:   p.Name,
				Sim:        sim.Config{Step: 20 * time.Millisecond, DeclineRate: 0.1, VoidRate: 0.05, Seed: 3, Faults: sim.Faults{Drop: 0.2}},
				StaleAfter: 500 * time.Millisecond, Interval: 200 * time.Millisecond, MinPollInterval: 400 * time.Millisecond,
			})
			endToEnd(t, st)
		})
	}
}

func endToEnd(t *testing.T, st *stack.Stack) {
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, stdin: strings.NewReader(""), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cl, err := kgo.NewClient(kgo.SeedBrokers(st.Brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 25
	if err := sendRequests(context.Background(), e, cl, st.Codec, demoRequests(n, "")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "\n"); got != n {
		t.Fatalf("printed %d request ids, want %d", got, n)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		truth := st.Sim.Truth()
		final := 0
		for _, tr := range truth {
			if tr.Final {
				final++
			}
		}
		if len(truth) == n && final == n {
			last := lastStatus(t, st)
			match := 0
			for _, tr := range truth {
				if last[tr.ID].Status == tr.Status && last[tr.ID].State.Provider == st.Provider() {
					match++
				}
			}
			if match == n {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90s: %d envelopes at the provider, %d final; status topic: %d", len(truth), final, len(lastStatus(t, st)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Every completed envelope is finalised and archived: its manifest
	// lists the signed document, the certificate and the audit trail
	// downloaded through the provider's client, each with its SHA-256.
	completed := 0
	for _, tr := range st.Sim.Truth() {
		if tr.Status != schemas.StatusCompleted {
			continue
		}
		completed++
		for {
			// The manifest of the change that completed it (later
			// changes, e.g. a poll's recipient details, finalise nothing).
			var raw []byte
			dir := filepath.Join(st.Archive.Root, "manifests", tr.ID)
			files, err := filepath.Glob(filepath.Join(dir, "*.json"))
			if err == nil && len(files) == 0 {
				err = fmt.Errorf("no manifest in %s", dir)
			}
			if err == nil {
				raw, err = os.ReadFile(files[0])
			}
			if err == nil {
				var m sink.Manifest
				if err := json.Unmarshal(raw, &m); err != nil {
					t.Fatal(err)
				}
				kinds := map[string]bool{}
				for _, f := range m.Files {
					if len(f.SHA256) == 64 {
						kinds[f.Kind] = true
					}
				}
				if len(kinds) < 3 || m.Provider != st.Provider() {
					t.Fatalf("manifest of %s: %+v", tr.ID, m)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("envelope %s completed and not archived: %v", tr.ID, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if completed == 0 {
		t.Fatal("no envelope completed")
	}
}

// A request for a provider that is not enabled is dead-lettered by the
// processor as a request, with a reason naming the flags that enable it.
func TestRequestForDisabledProvider(t *testing.T) {
	st := startStack(t, stack.Config{Sim: sim.Config{Step: time.Hour}})
	var out bytes.Buffer
	e := &env{stdout: &out, stderr: io.Discard, stdin: strings.NewReader(""), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cl, err := kgo.NewClient(kgo.SeedBrokers(st.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := sendRequests(context.Background(), e, cl, st.Codec, demoRequests(1, "docusign")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var dls []schemas.DeadLetter
		err := topicread.All(context.Background(), []kgo.Opt{kgo.SeedBrokers(st.Brokers...)}, st.Codec.Topics().DLQ, func(r *kgo.Record) error {
			var dl schemas.DeadLetter
			if err := st.Codec.Decode(context.Background(), r.Value, &dl); err != nil {
				return err
			}
			dls = append(dls, dl)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(dls) > 0 {
			dl := dls[0]
			if dl.Topic != st.Codec.Topics().Requests {
				t.Errorf("dead letter of topic %s, want the requests topic", dl.Topic)
			}
			for _, want := range []string{"invalid request", strings.TrimSpace(out.String()), `provider "docusign" is not enabled`,
				"--docusign-account-id", "--docusign-integration-key", "--docusign-user-id", "--docusign-private-key-file"} {
				if !strings.Contains(dl.Error, want) {
					t.Errorf("dead letter reason %q does not say %q", dl.Error, want)
				}
			}
			if strings.Contains(dl.Error, "event") {
				t.Errorf("dead letter reason %q calls the request an event", dl.Error)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter after 60s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A third-party consumer — plain franz-go, the registry client and hamba
// Avro, no esignflow code — reads the status records with the schema it
// fetches from the registry by the id in each record.
func TestThirdPartyConsumer(t *testing.T) {
	st := startStack(t, stack.Config{Sim: sim.Config{Step: 5 * time.Millisecond}})
	var out bytes.Buffer
	e := &env{stdout: &out, stderr: io.Discard, stdin: strings.NewReader(""), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	prod, err := kgo.NewClient(kgo.SeedBrokers(st.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := sendRequests(context.Background(), e, prod, st.Codec, demoRequests(3, "sim")); err != nil {
		t.Fatal(err)
	}

	reg, err := sr.NewClient(sr.URLs(st.RegistryURL()))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(st.Brokers...), kgo.ConsumeTopics(st.Codec.Topics().Status),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type change struct {
		EnvelopeID string `avro:"envelope_id"`
		Version    int64  `avro:"version"`
		Status     string `avro:"status"`
	}
	completed := map[string]bool{}
	for len(completed) < 3 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("only %d envelopes completed", len(completed))
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Value[0] != 0 {
				t.Fatalf("magic byte %d", r.Value[0])
			}
			id := int(binary.BigEndian.Uint32(r.Value[1:5]))
			text, err := reg.SchemaByID(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			schema, err := avro.ParseWithCache(text.Schema, "", &avro.SchemaCache{})
			if err != nil {
				t.Fatal(err)
			}
			var c change
			if err := avro.Unmarshal(schema, r.Value[5:], &c); err != nil {
				t.Fatal(err)
			}
			if c.EnvelopeID != string(r.Key) || c.Version < 1 {
				t.Fatalf("decoded %+v for key %s", c, r.Key)
			}
			if c.Status == "COMPLETED" {
				completed[c.EnvelopeID] = true
			}
		})
	}
}
