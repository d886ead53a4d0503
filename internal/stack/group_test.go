package stack

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// stop ends the components last started first, waiting for each, and logs
// each as it stops, once.
func TestGroupStopsInReverseAndLogsEach(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&syncWriter{w: &buf, mu: &mu}, nil))
	g, _ := newGroup(context.Background(), log)
	var order []string
	for _, name := range []string{"broker", "processor", "ingress"} {
		g.go_(name, func(ctx context.Context) error {
			<-ctx.Done()
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		})
	}
	if err := g.stop(); err != nil {
		t.Fatal(err)
	}
	if err := g.stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(order, ","); got != "ingress,processor,broker" {
		t.Fatalf("stopped %s, want ingress,processor,broker", got)
	}
	var logged []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		_, rest, _ := strings.Cut(line, "component=")
		name, _, _ := strings.Cut(rest, " ")
		logged = append(logged, name)
	}
	if got := strings.Join(logged, ","); got != "ingress,processor,broker" {
		t.Fatalf("logged %q, want each stop once, in reverse order", got)
	}
}

type syncWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
