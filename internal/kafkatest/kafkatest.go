// Package kafkatest gives tests a real Apache Kafka broker, for what the fake
// (kfake) cannot vouch for: a real broker's transactions, its
// read_committed fetches, and how clients behave when it hangs or goes away.
//
// There are two kinds. The shared broker is started once outside the tests
// (kafka.sh start DIR) and named by ESIGNFLOW_TEST_KAFKA_BROKERS; tests of
// every package use it at once, each with topics of its own, and Brokers
// returns nil when no run has one. A private broker (Start) is a process of
// one test's own, for fault tests that pause or stop it: they must not
// disturb the tests sharing the common one.
//
// Both run from kafka.sh beside this file, which fetches the jars pom.xml
// pins with Maven (Java 17+ and Maven are needed) and runs a single-node
// KRaft cluster on 127.0.0.1.
package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvBrokers names the environment variable holding the shared broker's
// seed addresses, comma-separated, e.g. 127.0.0.1:9092.
const EnvBrokers = "ESIGNFLOW_TEST_KAFKA_BROKERS"

// startTimeout bounds kafka.sh start, including a fetch on a cold cache; the
// script bounds the broker's own startup (90 s by default).
const startTimeout = 5 * time.Minute

// Brokers returns the shared real broker's seed addresses from the environment
// variable ESIGNFLOW_TEST_KAFKA_BROKERS (comma-separated), or nil when unset.
func Brokers() []string {
	var seeds []string
	for s := range strings.SplitSeq(os.Getenv(EnvBrokers), ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	return seeds
}

// Broker is a private Apache Kafka broker process started for one test (for
// fault tests that pause or stop the broker, which must not disturb tests
// sharing the common one). Its methods may be called from any goroutine.
type Broker struct {
	dir  string
	pid  int
	addr string

	mu      sync.Mutex
	stopped bool // Stop was called: pid may name another process by now
}

// ErrStopped is returned by Pause and Resume on a broker that was stopped.
var ErrStopped = errors.New("kafkatest: broker stopped")

// Start starts a private broker with kafka.sh start in a t.TempDir() and stops
// it (kafka.sh stop) in t.Cleanup. It fails the test with the script's output
// if it cannot start.
//
// Should the test binary die without running its cleanups, the broker ends
// itself within a few seconds: kafka.sh watches this process.
func Start(t testing.TB) *Broker {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	cmd := script(ctx, "start", dir)
	cmd.Env = append(os.Environ(), "KAFKATEST_OWNER_PID="+strconv.Itoa(os.Getpid()))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		_ = script(context.Background(), "stop", dir).Run()
		t.Fatalf("kafkatest: kafka.sh start %s: %v\n%s%s", dir, err, out, stderr.String())
	}
	b := &Broker{dir: dir, addr: strings.TrimSpace(string(out))}
	pid, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err == nil {
		b.pid, err = strconv.Atoi(strings.TrimSpace(string(pid)))
	}
	if err != nil || b.addr == "" {
		_ = b.Stop()
		t.Fatalf("kafkatest: kafka.sh start %s: address %q, pid file: %v", dir, b.addr, err)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Errorf("kafkatest: %v", err)
		}
	})
	return b
}

// Brokers returns the broker's seed address, for kgo.SeedBrokers.
func (b *Broker) Brokers() []string { return []string{b.addr} }

// Pause stops the broker process with SIGSTOP (a broker that hangs: clients
// time out); Resume continues it with SIGCONT.
//
// It returns once every thread of the broker is stopped: kill(2) only
// queues SIGSTOP, and on a busy machine a JVM thread already running can
// still answer a request that arrives just after it (seen under load).
func (b *Broker) Pause() error {
	if err := b.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for !allStopped(b.pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("kafkatest: broker pid %d: not every thread stopped 10s after SIGSTOP", b.pid)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// allStopped says whether every thread of pid is in the stopped state
// ('T' in /proc/PID/task/TID/stat). Where /proc cannot be read it says
// true: the signal was sent, which is all that can be known.
func allStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true
	}
	for _, t := range tasks {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		// The state follows the parenthesised command name, which may
		// itself contain spaces and parentheses.
		i := strings.LastIndexByte(string(raw), ')')
		if i < 0 || i+2 >= len(raw) {
			return true
		}
		if st := raw[i+2]; st != 'T' && st != 't' && st != 'Z' && st != 'X' {
			return false
		}
	}
	return true
}

// Resume continues a broker stopped by Pause.
func (b *Broker) Resume() error { return b.signal(syscall.SIGCONT) }

func (b *Broker) signal(sig syscall.Signal) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return ErrStopped
	}
	if err := syscall.Kill(b.pid, sig); err != nil {
		return fmt.Errorf("kafkatest: broker pid %d: %v: %w", b.pid, sig, err)
	}
	return nil
}

// Stop ends the broker (as kafka.sh stop): SIGTERM, SIGKILL after 30 s. It is
// safe to call more than once, and on a paused broker; Pause and Resume
// return ErrStopped after it.
func (b *Broker) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	out, err := script(context.Background(), "stop", b.dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kafka.sh stop %s: %w\n%s", b.dir, err, out)
	}
	return nil
}

// Version returns the pinned version (kafka.sh version).
func Version() (string, error) {
	out, err := script(context.Background(), "version").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("kafka.sh version: %w: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("kafka.sh version: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// script returns the command running kafka.sh, found beside this file so that
// any package's test can run it whatever its working directory.
func script(ctx context.Context, args ...string) *exec.Cmd {
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "kafka.sh")
	cmd := exec.CommandContext(ctx, "bash", append([]string{path}, args...)...)
	// The broker kafka.sh starts outlives it; only the script is waited for.
	cmd.WaitDelay = 10 * time.Second
	return cmd
}
