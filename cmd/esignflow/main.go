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
	"sort"
	"syscall"
)

// command is one subcommand: its one-line summary and what runs it.
type command struct {
	summary string
	run     func(ctx context.Context, env *env, args []string) error
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
		"dev":        {"run the whole system in one process on embedded Kafka, Redis and Schema Registry", runDev},
		"sim":        {"run the eSignature provider simulator", runSim},
		"ingress":    {"serve provider webhooks and the signing-request API", runIngress},
		"processor":  {"apply requests and events exactly once and publish status changes", runProcessor},
		"reconciler": {"poll the provider for envelopes whose webhooks are late", runReconciler},
		"sink":       {"archive finalised envelopes and publish them", runSink},
		"request":    {"send signing requests (request send)", runRequest},
		"watch":      {"follow status changes", runWatch},
		"dlq":        {"list and replay dead letters", runDLQ},
		"topics":     {"create esignflow's topics on a cluster", runTopics},
		"audit":      {"verify or export an envelope's audit trail", runAudit},
		"bench":      {"drive the whole pipeline and report throughput, latency and correctness (bench processor, bench ingress)", runBench},
		"version":    {"print the version", runVersion},
		"probe":      {"GET a URL, exit 0 on 2xx (container healthchecks)", runProbe},
	}
}

func notYet(name string) func(context.Context, *env, []string) error {
	return func(context.Context, *env, []string) error {
		return fmt.Errorf("not yet implemented (the %s command lands with its issue)", name)
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func runVersion(_ context.Context, e *env, _ []string) error {
	_, err := fmt.Fprintf(e.stdout, "esignflow %s\n", version)
	return err
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin,
		log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	os.Exit(run(ctx, e, os.Args[1:]))
}

// run dispatches to a subcommand and returns the exit code.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "esignflow: unknown command %q\n\n", args[0])
		usage(e.stderr)
		return 2
	}
	err := cmd.run(ctx, e, args[1:])
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.stderr, "esignflow %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(e.stderr, "esignflow %s: %v\n", args[0], err)
		return 1
	}
}
