package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/topics"
	"github.com/esignflow/esignflow/schemas"
)

func testEnv() (*env, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &env{stdout: &out, stderr: &errb, stdin: strings.NewReader(""), log: slog.New(slog.NewTextHandler(io.Discard, nil))}, &out, &errb
}

func TestHelpListsEveryCommand(t *testing.T) {
	e, out, _ := testEnv()
	if code := run(context.Background(), e, []string{"--help"}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for name := range commands() {
		if !strings.Contains(out.String(), "\n  "+name+" ") {
			t.Errorf("help does not list %q:\n%s", name, out)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	e, _, errb := testEnv()
	if code := run(context.Background(), e, []string{"frobnicate"}); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Fatalf("stderr: %s", errb)
	}
}

// A bad flag value stops the command before it connects to anything, with
// a message naming the flag.
func TestBadFlagValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"processor", "--apply-chunk", "0"}, "--apply-chunk must be at least 1"},
		{[]string{"processor", "--apply-concurrency", "-2"}, "--apply-concurrency must be at least 1"},
		{[]string{"processor", "--max-batch", "0"}, "--max-batch must be at least 1"},
		{[]string{"bench", "processor", "--rounds", "0"}, "--rounds must be at least 1"},
	} {
		e, _, errb := testEnv()
		if code := run(context.Background(), e, tc.args); code == 0 {
			t.Errorf("%v: exit 0", tc.args)
		}
		if !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: stderr %q, want %q", tc.args, errb.String(), tc.want)
		}
	}
}

// A command that is a group of subcommands lists them for --help, exit 0;
// without a subcommand it lists them as a usage error.
func TestGroupHelpListsSubcommands(t *testing.T) {
	for name, subs := range map[string][]string{
		"audit": {"verify", "export"}, "dlq": {"list", "replay"}, "request": {"send"}, "topics": {"create"},
	} {
		e, out, _ := testEnv()
		if code := run(context.Background(), e, []string{name, "--help"}); code != 0 {
			t.Errorf("%s --help: exit %d, want 0", name, code)
		}
		for _, s := range subs {
			if !strings.Contains(out.String(), "\n  "+s+" ") {
				t.Errorf("%s --help does not list %q:\n%s", name, s, out)
			}
		}
		e, _, errb := testEnv()
		if code := run(context.Background(), e, []string{name}); code != 2 || !strings.Contains(errb.String(), subs[0]) {
			t.Errorf("%s alone: exit %d, want 2 listing the subcommands:\n%s", name, code, errb)
		}
	}
}

// A bad flag prints the error and one line pointing to --help, not the
// whole usage; --help still prints it all.
func TestBadFlagPointsToHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		help string
	}{
		{[]string{"watch", "--nope"}, "esignflow watch --help"},
		{[]string{"dlq", "list", "--nope"}, "esignflow dlq list --help"},
		{[]string{"audit", "verify", "env-1", "--nope"}, "esignflow audit verify --help"},
		{[]string{"processor", "--nope"}, "esignflow processor --help"},
	} {
		e, out, errb := testEnv()
		if code := run(context.Background(), e, tc.args); code != 2 {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
		msg := errb.String()
		lines := strings.Split(strings.TrimSpace(msg), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], "flag provided but not defined: -nope") || !strings.Contains(lines[1], tc.help) {
			t.Errorf("%v: stderr is not the error and one line naming %q:\n%s", tc.args, tc.help, msg)
		}
		if out.Len() != 0 {
			t.Errorf("%v: stdout %q", tc.args, out)
		}
	}
	e, _, errb := testEnv()
	if code := run(context.Background(), e, []string{"watch", "--help"}); code != 0 {
		t.Fatalf("watch --help: exit %d", code)
	}
	for _, want := range []string{"usage: esignflow watch", "-exit-at-end", "-since", "-connect-timeout"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("watch --help lacks %q:\n%s", want, errb)
		}
	}
}

func TestVersionPrintsBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Path: "github.com/esignflow/esignflow", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}}}
	got := versionText(bi, true)
	for _, want := range []string{"module   github.com/esignflow/esignflow v1.2.3", "revision abc123 (modified) 2026-01-02T03:04:05Z", "go       go1.99"} {
		if !strings.Contains(got, want) {
			t.Errorf("version lacks %q:\n%s", want, got)
		}
	}
	// -buildvcs=false, or no build information at all.
	if got := versionText(nil, false); !strings.Contains(got, "revision unknown") || !strings.Contains(got, runtime.Version()) {
		t.Errorf("without build info:\n%s", got)
	}
	e, out, _ := testEnv()
	if code := run(context.Background(), e, []string{"version"}); code != 0 || !strings.Contains(out.String(), "revision ") || !strings.Contains(out.String(), "module   ") {
		t.Fatalf("version: exit %d\n%s", code, out)
	}
}

// The connection flags take their defaults from the environment; a flag
// on the command line wins.
func TestConnectionFlagsFromEnvironment(t *testing.T) {
	t.Setenv("ESIGNFLOW_BROKERS", "k1:9092,k2:9092")
	t.Setenv("ESIGNFLOW_REGISTRY", "http://sr:8081")
	t.Setenv("ESIGNFLOW_REDIS_URL", "redis://r:6379/1")
	e, _, _ := testEnv()
	fs := newFlagSet("x", e, "")
	c := connFlags(fs, true)
	if err := parseFlags(fs, []string{"--registry", "http://flag:8081"}); err != nil {
		t.Fatal(err)
	}
	if c.brokers != "k1:9092,k2:9092" || c.redisURL != "redis://r:6379/1" || c.registry != "http://flag:8081" {
		t.Fatalf("brokers %q, redis %q, registry %q", c.brokers, c.redisURL, c.registry)
	}
}

// A broker that does not answer fails the command within
// --connect-timeout, naming the address (it hung before), for the
// read-only tools and for request send alike.
func TestUnreachableBrokerNamesAddress(t *testing.T) {
	t.Setenv("ESIGNFLOW_BROKERS", "127.0.0.1:1")
	for _, args := range [][]string{
		{"watch"},
		{"request", "send", "--demo", "1"},
		{"dlq", "list"},
		{"topics", "create"},
		{"audit", "verify", "env-1"},
	} {
		e, _, errb := testEnv()
		started := time.Now()
		code := run(context.Background(), e, append(args, "--connect-timeout", "300ms"))
		if code != 1 || !strings.Contains(errb.String(), "kafka 127.0.0.1:1: no answer: no broker answered within 300ms") {
			t.Errorf("%v: exit %d, stderr:\n%s", args, code, errb)
		}
		if d := time.Since(started); d > 10*time.Second {
			t.Errorf("%v: took %s", args, d)
		}
	}
}

// A registry that does not answer fails within --connect-timeout, naming
// its URL.
func TestUnreachableRegistryNamesURL(t *testing.T) {
	k := fakes.NewKafka(t, 1)
	e, _, errb := testEnv()
	code := run(context.Background(), e, []string{"watch", "--brokers", k.Brokers[0], "--registry", "http://127.0.0.1:1", "--connect-timeout", "300ms"})
	if code != 1 || !strings.Contains(errb.String(), "schema registry http://127.0.0.1:1: no answer within 300ms") {
		t.Fatalf("exit %d, stderr:\n%s", code, errb)
	}
}

// The read-only tools against a registry with esignflow's schemas and a
// topic with records: they register nothing; watch --exit-at-end stops
// at the end, --since picks the start; dlq list names a webhook's provider.
func TestReadOnlyTools(t *testing.T) {
	k := fakes.NewKafka(t, 3)
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
	var w fakes.RegistryWrites
	reg.Intercept(w.Intercept)
	conn := []string{"--brokers", strings.Join(k.Brokers, ","), "--registry", reg.URL(), "--topic-prefix", k.Prefix, "--connect-timeout", "5s"}
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		e, out, errb := testEnv()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		code := run(cctx, e, append(args, conn...))
		if cctx.Err() != nil {
			t.Fatalf("%v did not return", args)
		}
		return code, out.String(), errb.String()
	}

	if code, out, errb := cli("watch", "--from-beginning", "--exit-at-end"); code != 0 || out != "" {
		t.Fatalf("watch of an empty topic: exit %d\n%s%s", code, out, errb)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	old := time.Now().Add(-3 * time.Hour)
	for i, at := range []time.Time{old, time.Now()} {
		ch := schemas.EnvelopeStatusChanged{EnvelopeID: fmt.Sprintf("env-%d", i), Version: 1, Status: schemas.StatusSent, EventID: "ev", ChangedAt: at,
			State: schemas.EnvelopeState{EnvelopeID: fmt.Sprintf("env-%d", i), Provider: "sim", StatusAt: at, Version: 1, UpdatedAt: at, Recipients: []schemas.RecipientState{}}, Audit: []schemas.AuditEntry{}}
		val, err := codec.Encode(&ch)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: k.Names.Status, Key: []byte(ch.EnvelopeID), Value: val, Timestamp: at}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errb := cli("watch", "--from-beginning", "--exit-at-end")
	if code != 0 || !strings.Contains(out, "env-0") || !strings.Contains(out, "env-1") {
		t.Fatalf("watch --from-beginning --exit-at-end: exit %d\n%s%s", code, out, errb)
	}
	code, out, errb = cli("watch", "--since", "1h", "--exit-at-end")
	if code != 0 || strings.Contains(out, "env-0") || !strings.Contains(out, "env-1") {
		t.Fatalf("watch --since 1h: exit %d, want env-1 only\n%s%s", code, out, errb)
	}
	code, out, errb = cli("watch", "--since", old.Add(-time.Minute).UTC().Format(time.RFC3339), "--exit-at-end", "--json")
	if code != 0 || !strings.Contains(out, `"envelope_id":"env-0"`) {
		t.Fatalf("watch --since RFC 3339: exit %d\n%s%s", code, out, errb)
	}

	for _, dl := range []schemas.DeadLetter{
		{Topic: "", Partition: -1, Offset: -1, Value: []byte("{}"), Headers: []schemas.Header{}, Error: "no signature matches", Component: "ingress/sim", FailedAt: time.Now()},
		{Topic: k.Names.Events, Partition: 2, Offset: 7, Key: []byte("k"), Value: []byte{1}, Headers: []schemas.Header{}, Error: "boom", Component: "processor", FailedAt: time.Now()},
	} {
		val, err := codec.Encode(&dl)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: k.Names.DLQ, Value: val}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errb = cli("dlq", "list")
	if code != 0 || !strings.Contains(out, "webhook from provider sim") || strings.Contains(out, "-1@-1") || !strings.Contains(out, k.Names.Events+"/2@7") {
		t.Fatalf("dlq list: exit %d\n%s%s", code, out, errb)
	}
	if !strings.Contains(errb, "2 dead letters (ingress/sim: 1, processor: 1)") {
		t.Errorf("dlq list summary:\n%s", errb)
	}
	code, out, _ = cli("dlq", "list", "--provider", "sim")
	if code != 0 || strings.Contains(out, "processor") || !strings.Contains(out, "ingress/sim") {
		t.Fatalf("dlq list --provider sim: exit %d\n%s", code, out)
	}
	code, _, _ = cli("audit", "verify", "env-1")
	if code != 1 {
		t.Errorf("audit verify of a chain-less envelope: exit %d, want 1", code)
	}
	if got := w.Take(); len(got) != 0 {
		t.Fatalf("read-only tools wrote to the registry: %v", got)
	}
}

// topics create says which topics it created and which existed, and warns
// where an existing one differs from what was asked.
func TestTopicsCreateReports(t *testing.T) {
	k := fakes.NewKafka(t, 3)
	conn := []string{"--brokers", strings.Join(k.Brokers, ","), "--replication", "1", "--connect-timeout", "5s"}
	e, out, errb := testEnv()
	if code := run(context.Background(), e, append([]string{"topics", "create", "--topic-prefix", k.Prefix + "new.", "--partitions", "2"}, conn...)); code != 0 {
		t.Fatalf("exit %d\n%s", code, errb)
	}
	if n := strings.Count(out.String(), "created "); n != len(topics.All(k.Names)) {
		t.Errorf("fresh: %d created, want %d:\n%s", n, len(topics.All(k.Names)), out)
	}
	e, out, errb = testEnv()
	if code := run(context.Background(), e, append([]string{"topics", "create", "--topic-prefix", k.Prefix, "--partitions", "4"}, conn...)); code != 0 {
		t.Fatalf("exit %d\n%s", code, errb)
	}
	if n := strings.Count(out.String(), "existed "); n != len(topics.All(k.Names)) {
		t.Errorf("existing: %d existed, want %d:\n%s", n, len(topics.All(k.Names)), out)
	}
	if n := strings.Count(errb.String(), "has 3 partitions, not the 4 asked for"); n != len(topics.All(k.Names)) {
		t.Errorf("%d partition warnings, want %d:\n%s", n, len(topics.All(k.Names)), errb)
	}

	// min.insync.replicas is set on the topics it creates, and an
	// existing topic with less is warned about, not changed.
	prefix := k.Prefix + "isr."
	e, _, errb = testEnv()
	if code := run(context.Background(), e, append([]string{"topics", "create", "--topic-prefix", prefix, "--partitions", "1", "--min-insync-replicas", "1"}, conn...)); code != 0 {
		t.Fatalf("exit %d\n%s", code, errb)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(context.Background(), prefix+schemas.TopicStatus)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(prefix+schemas.TopicStatus, nil)
	if err != nil {
		t.Fatal(err)
	}
	isr := ""
	for _, c := range rc.Configs {
		if c.Key == "min.insync.replicas" && c.Value != nil {
			isr = *c.Value
		}
	}
	if isr != "1" {
		t.Errorf("created with --min-insync-replicas 1: min.insync.replicas=%q", isr)
	}
	e, _, errb = testEnv()
	if code := run(context.Background(), e, append([]string{"topics", "create", "--topic-prefix", prefix, "--partitions", "1", "--min-insync-replicas", "2"}, conn...)); code != 0 {
		t.Fatalf("exit %d\n%s", code, errb)
	}
	if n := strings.Count(errb.String(), "has min.insync.replicas=1, not the 2 asked for"); n != len(topics.All(k.Names)) {
		t.Errorf("%d min.insync.replicas warnings, want %d:\n%s", n, len(topics.All(k.Names)), errb)
	}
}

// The first signal cancels the context and logs the shutdown with the
// signal.
func TestShutdownLogsSignal(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	sigs := make(chan os.Signal, 1)
	ctx, stop := shutdownOn(context.Background(), log, sigs)
	defer stop()
	sigs <- os.Interrupt
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("context not cancelled by the signal")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "shutting down") || !strings.Contains(logs.String(), "signal=interrupt") {
		t.Fatalf("log: %s", logs.String())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
