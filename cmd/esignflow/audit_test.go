package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/stack"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

func runCLI(args ...string) (int, string) {
	var out bytes.Buffer
	e := &env{stdout: &out, stderr: &out, stdin: strings.NewReader(""), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	code := run(context.Background(), e, args)
	return code, out.String()
}

// audit verify passes on a real envelope's chain and, once a record with a
// tampered entry is on the topic, fails naming that entry.
func TestAuditVerifyCommand(t *testing.T) {
	st := startStack(t, stack.Config{Sim: sim.Config{Step: 5 * time.Millisecond}})
	cl, err := kgo.NewClient(kgo.SeedBrokers(st.Brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var sink bytes.Buffer
	e := &env{stdout: &sink, stderr: &sink, stdin: strings.NewReader(""), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := sendRequests(context.Background(), e, cl, st.Codec, demoRequests(1, "sim")); err != nil {
		t.Fatal(err)
	}
	var last schemas.EnvelopeStatusChanged
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, ch := range lastStatus(t, st) {
			last = ch
		}
		if last.Status == schemas.StatusCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never completed: %+v", last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	conn := []string{"--brokers", st.Brokers[0], "--registry", st.RegistryURL(), "--topic-prefix", st.Namespace()}
	code, out := runCLI(append([]string{"audit", "verify", last.EnvelopeID, "--archive-dir", st.Archive.Root}, conn...)...)
	if code != 0 || !strings.Contains(out, "OK: ") {
		t.Fatalf("verify of an honest chain: exit %d\n%s", code, out)
	}
	code, out = runCLI(append([]string{"audit", "export", last.EnvelopeID}, conn...)...)
	if code != 0 || !strings.Contains(out, `"entries"`) {
		t.Fatalf("export: exit %d\n%s", code, out)
	}

	// Someone rewrites history: a change whose audit entry claims another
	// source IP but keeps the old hash.
	forged := last
	forged.Version++
	entry := last.Audit[len(last.Audit)-1]
	ip := "203.0.113.66"
	entry.SourceIP = &ip
	entry.Seq = last.State.AuditSeq + 1
	entry.PrevHash = last.State.AuditHead
	forged.Audit = []schemas.AuditEntry{entry}
	forged.State.AuditSeq, forged.State.AuditHead = entry.Seq, entry.Hash
	val, err := st.Codec.Encode(&forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: st.Codec.Topics().Status, Key: []byte(forged.EnvelopeID), Value: val}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	code, out = runCLI(append([]string{"audit", "verify", last.EnvelopeID}, conn...)...)
	want := fmt.Sprintf("audit entry %d", entry.Seq)
	if code != 1 || !strings.Contains(out, want) {
		t.Fatalf("verify of a tampered chain: exit %d, want 1 naming %q\n%s", code, want, out)
	}
}
