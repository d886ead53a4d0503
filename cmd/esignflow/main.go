// Command esignflow is the one binary of esignflow: every service, the
// embedded development stack and the operator's tools are subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// command is one subcommand: its one-line summary, what runs it and, for a
// command that is only a group of subcommands, those.
type command struct {
	summary string
	run     func(ctx context.Context, env *env, args []string) error
	subs    []subcommand // listed by 'esignflow <command> --help'
}

// subcommand is one subcommand of a group, for the group's help.
type subcommand struct {
	name, summary string
}

// env is what every subcommand gets from main: no globals.
type env struct {
	stdout, stderr io.Writer
	stdin          io.Reader
	log            *slog.Logger
}

// errUsage marks an error the user fixes by changing the command line; main
// exits 2 for it.
var errUsage = errors.New("usage")

func commands() map[string]command {
	return map[string]command{
		"dev":        {summary: "run the whole system in one process on embedded Kafka, Redis and Schema Registry", run: runDev},
		"sim":        {summary: "run the eSignature provider simulator", run: runSim},
		"ingress":    {summary: "serve provider webhooks and the signing-request API", run: runIngress},
		"processor":  {summary: "apply requests and events exactly once and publish status changes", run: runProcessor},
		"reconciler": {summary: "poll the provider for envelopes whose webhooks are late", run: runReconciler},
		"sink":       {summary: "archive finalised envelopes and publish them", run: runSink},
		"request": {summary: "send signing requests (request send)", run: runRequest, subs: []subcommand{
			{"send", "publish signing requests from a file or generated ones"},
		}},
		"watch": {summary: "follow status changes", run: runWatch},
		"dlq": {summary: "list and replay dead letters", run: runDLQ, subs: []subcommand{
			{"list", "list the dead letters: where each came from and why"},
			{"replay", "publish dead letters back to the topic they came from"},
		}},
		"topics": {summary: "create esignflow's topics on a cluster", run: runTopics, subs: []subcommand{
			{"create", "create the topics that do not exist and check those that do"},
		}},
		"audit": {summary: "verify or export an envelope's audit trail", run: runAudit, subs: []subcommand{
			{"verify <envelope-id>", "recompute an envelope's audit chain and say whether it holds"},
			{"export <envelope-id>", "write an envelope's audit chain as JSON"},
		}},
		"bench":   {summary: "drive the whole pipeline and report throughput, latency and correctness (bench processor, bench ingress)", run: runBench},
		"version": {summary: "print the version, module version and VCS revision", run: runVersion},
		"probe":   {summary: "GET a URL, exit 0 on 2xx (container healthchecks)", run: runProbe},
	}
}

func notYet(name string) func(context.Context, *env, []string) error {
	return func(context.Context, *env, []string) error {
		return fmt.Errorf("not yet implemented (the %s command lands with its issue)", name)
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// modulePath is this module's path, for a binary built without module
// information.
const modulePath = "github.com/esignflow/esignflow"

func runVersion(_ context.Context, e *env, _ []string) error {
	_, err := fmt.Fprint(e.stdout, versionText(debug.ReadBuildInfo()))
	return err
}

// versionText describes the binary: the -X version, the module version and
// the VCS revision Go embeds at build time (absent when built with
// -buildvcs=false or outside a repository), and the Go version.
func versionText(bi *debug.BuildInfo, ok bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "esignflow %s\n", version)
	mod, modVersion, goVersion := modulePath, "unknown", runtime.Version()
	settings := map[string]string{}
	if ok {
		if bi.Main.Path != "" {
			mod = bi.Main.Path
		}
		if bi.Main.Version != "" {
			modVersion = bi.Main.Version
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	fmt.Fprintf(&b, "module   %s %s\n", mod, modVersion)
	rev := settings["vcs.revision"]
	switch {
	case rev == "":
		rev = "unknown (built without VCS information)"
	case settings["vcs.modified"] == "true":
		rev += " (modified)"
	}
	if t := settings["vcs.time"]; t != "" {
		rev += " " + t
	}
	fmt.Fprintf(&b, "revision %s\n", rev)
	fmt.Fprintf(&b, "go       %s\n", goVersion)
	return b.String()
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: esignflow <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-11s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'esignflow <command> --help' for a command's flags.")
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, stop := shutdownOn(context.Background(), log, sigs)
	defer stop()
	e := &env{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin, log: log}
	os.Exit(run(ctx, e, os.Args[1:]))
}

// shutdownOn returns a context that ends at the first signal from sigs,
// logging "shutting down" with the signal; a second signal exits at once
// (status 130), for a shutdown that hangs.
func shutdownOn(parent context.Context, log *slog.Logger, sigs <-chan os.Signal) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			log.Info("shutting down: stopping in reverse start order; a second signal exits at once", "signal", sig.String())
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-sigs:
			log.Warn("second signal: exiting without waiting", "signal", sig.String())
			os.Exit(130)
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() { once.Do(func() { close(done); cancel() }) }
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// subUsage lists a group command's subcommands.
func subUsage(w io.Writer, name string, cmd command) {
	fmt.Fprintf(w, "usage: esignflow %s <subcommand> [flags]\n\n%s\n\nsubcommands:\n", name, cmd.summary)
	for _, s := range cmd.subs {
		fmt.Fprintf(w, "  %-22s %s\n", s.name, s.summary)
	}
	fmt.Fprintf(w, "\nRun 'esignflow %s <subcommand> --help' for a subcommand's flags.\n", name)
}

// run dispatches to a subcommand and returns the exit code.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || isHelp(args[0]) {
		if len(args) == 0 {
			usage(e.stderr)
			return 2
		}
		usage(e.stdout)
		return 0
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "esignflow: unknown command %q\n\n", args[0])
		usage(e.stderr)
		return 2
	}
	name := args[0]
	if len(cmd.subs) > 0 {
		switch {
		case len(args) == 1:
			subUsage(e.stderr, name, cmd)
			return 2
		case isHelp(args[1]):
			subUsage(e.stdout, name, cmd)
			return 0
		}
		for _, s := range cmd.subs {
			if sub, _, _ := strings.Cut(s.name, " "); sub == args[1] {
				name += " " + sub
			}
		}
	}
	started := time.Now()
	err := cmd.run(ctx, e, args[1:])
	if ctx.Err() != nil {
		e.log.Info("stopped", "command", name, "ran", time.Since(started).Round(time.Millisecond), "err", err)
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.stderr, "esignflow %s: %v\n", name, err)
		fmt.Fprintf(e.stderr, "Run 'esignflow %s --help' for usage.\n", name)
		return 2
	default:
		fmt.Fprintf(e.stderr, "esignflow %s: %v\n", name, err)
		return 1
	}
}
