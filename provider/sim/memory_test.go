package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestTenThousandEnvelopes runs 10k envelopes to completion in one process
// and checks that memory stays proportional to the envelopes kept (the
// truth) with nothing pending left behind.
func TestTenThousandEnvelopes(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0", Step: time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	<-s.Ready()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 10000
	for i := range n {
		rcps := fmt.Sprintf(`[{"id":"a","name":"A","email":"a%d@example.com"},{"id":"b","name":"B","email":"b%d@example.com","routing_order":2}]`, i, i)
		body := fmt.Sprintf(`{"subject":"s","metadata":{"esignflow_request_id":"r%d"},"documents":[{"name":"d.pdf","uri":"s3://d"}],"recipients":%s}`, i, rcps)
		code, out := s.createEnvelope(fmt.Sprintf("k%d", i), []byte(body))
		if code != 201 {
			t.Fatalf("create: %d %+v", code, out)
		}
		s.mu.Lock()
		s.send(s.envelopes[out.(envelopeJSON).ID], time.Now())
		s.mu.Unlock()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		final := 0
		for _, tr := range s.Truth() {
			if tr.Final {
				final++
			}
		}
		if final == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d final after 2 minutes", final, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.tmu.Lock()
	pending := s.timers.Len()
	s.tmu.Unlock()
	if pending != 0 {
		t.Fatalf("%d timers still pending after every envelope finished", pending)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEnvelope := (int64(after.HeapInuse) - int64(before.HeapInuse)) / n
	t.Logf("heap in use: %d KiB for %d envelopes (%d B each); %s", (after.HeapInuse-before.HeapInuse)/1024, n, perEnvelope, rss())
	if perEnvelope > 8<<10 {
		t.Fatalf("%d B of heap per finished envelope: more than the truth it keeps", perEnvelope)
	}
	if b, _ := json.Marshal(s.Stats()); len(b) == 0 {
		t.Fatal("stats")
	}
}

func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "rss unknown"
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") || strings.HasPrefix(line, "VmHWM:") {
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
	}
	return strings.Join(out, ", ")
}
