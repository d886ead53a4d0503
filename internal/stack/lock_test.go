package stack_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/stack"
)

// Two stacks cannot share a data directory: the second one's Run fails at
// once, naming the directory and the holder's pid, and the directory is
// free again once the first has stopped.
func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	first, err := stack.New(stack.Config{DataDir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	select {
	case <-first.Ready():
	case err := <-done:
		t.Fatalf("first stack: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("first stack not ready after a minute")
	}

	runSecond := func() error {
		second, err := stack.New(stack.Config{DataDir: dir, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		sctx, scancel := context.WithCancel(context.Background())
		defer scancel()
		sdone := make(chan error, 1)
		go func() { sdone <- second.Run(sctx) }()
		select {
		case err := <-sdone:
			return err
		case <-second.Ready():
			scancel()
			<-sdone
			return nil
		case <-time.After(time.Minute):
			t.Fatal("second stack neither failed nor got ready")
			return nil
		}
	}
	err = runSecond()
	var locked *stack.DirLockedError
	if !errors.As(err, &locked) || locked.Dir != dir || locked.PID != os.Getpid() {
		t.Fatalf("second stack on %s: %v, want DirLockedError naming it and pid %d", dir, err, os.Getpid())
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, strconv.Itoa(os.Getpid())) {
		t.Fatalf("message %q names neither the directory nor the pid", msg)
	}

	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("first stack: %v", err)
	}
	if err := runSecond(); err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
}
