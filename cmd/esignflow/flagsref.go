package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
)

// referencePaths are the commands the configuration reference documents,
// subcommands spelled out.
func referencePaths() [][]string {
	var out [][]string
	names := make([]string, 0, len(commands()))
	for n := range commands() {
		names = append(names, n)
	}
	sort.Strings(names)
	subs := map[string][]string{"request": {"send"}, "dlq": {"list", "replay"}, "topics": {"create"}, "audit": {"verify", "export"}, "bench": {"", "processor", "ingress", "restore"}}
	for _, n := range names {
		if n == "version" {
			continue
		}
		if s, ok := subs[n]; ok {
			for _, sub := range s {
				if sub == "" {
					out = append(out, []string{n})
				} else {
					out = append(out, []string{n, sub})
				}
			}
			continue
		}
		out = append(out, []string{n})
	}
	return out
}

// flagsReference renders every command's --help, generated from the flag
// definitions: the README's configuration reference.
func flagsReference() string {
	var b strings.Builder
	for _, p := range referencePaths() {
		var out bytes.Buffer
		e := &env{stdout: &out, stderr: &out, stdin: strings.NewReader(""), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		run(context.Background(), e, append(append([]string{}, p...), "--help"))
		fmt.Fprintf(&b, "### esignflow %s\n\n```\n%s```\n\n", strings.Join(p, " "), out.String())
	}
	return b.String()
}
