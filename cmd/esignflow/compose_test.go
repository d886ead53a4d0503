package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// help returns a command's --help text.
func help(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, stdin: strings.NewReader(""), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if code := run(context.Background(), e, append(append([]string{}, args...), "--help")); code != 0 {
		t.Fatalf("esignflow %s --help: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
	return out.String() + errb.String()
}

// subcommands are the commands whose first argument is a subcommand.
var subcommands = map[string]bool{"topics": true, "request": true, "dlq": true, "audit": true}

// TestComposeIsConsistent checks compose.yaml against the binary: every
// esignflow service runs a real subcommand with flags it defines, and every
// file it references exists.
func TestComposeIsConsistent(t *testing.T) {
	raw, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Build       any      `yaml:"build"`
			Image       string   `yaml:"image"`
			Command     []string `yaml:"command"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
			DependsOn map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
		} `yaml:"services"`
		Secrets map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	ours := 0
	for name, svc := range doc.Services {
		for dep := range svc.DependsOn {
			if _, ok := doc.Services[dep]; !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
			}
		}
		if svc.Image != "esignflow:dev" {
			continue
		}
		ours++
		if b, ok := svc.Build.(string); !ok || b != "." {
			t.Errorf("%s: build %v, want .", name, svc.Build)
		}
		checkCommand(t, name, svc.Command)
		if hc := svc.Healthcheck.Test; len(hc) > 2 && strings.HasSuffix(hc[1], "esignflow") {
			checkCommand(t, name+" healthcheck", hc[2:])
		}
	}
	if ours < 7 {
		t.Fatalf("%d esignflow services, want ingress, two processors, reconciler, sink, sim and topics", ours)
	}
	for name, sec := range doc.Secrets {
		if _, err := os.Stat(filepath.Join("../..", sec.File)); err != nil {
			t.Errorf("secret %s: %v", name, err)
		}
	}
	if _, err := os.Stat("../../Dockerfile"); err != nil {
		t.Error(err)
	}
	// The ingress refuses to start without API tokens: compose gives it a
	// tokens file, mounted outside the webhook secrets directory.
	ing := doc.Services["ingress"].Command
	tokens := ""
	for i, a := range ing {
		if a == "--api-tokens-file" && i+1 < len(ing) {
			tokens = ing[i+1]
		}
	}
	if tokens == "" || strings.HasPrefix(tokens, "/run/secrets/") {
		t.Errorf("compose's ingress has --api-tokens-file %q: want a file outside /run/secrets (read as webhook secrets)", tokens)
	}
	if !strings.Contains(string(raw), "target: "+tokens) {
		t.Errorf("no secret is mounted at the ingress's --api-tokens-file %s", tokens)
	}
	// The stack runs the Apache Kafka the real-broker tests prove.
	pom, err := os.ReadFile("../../internal/kafkatest/pom.xml")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(pom), "<kafka.version>")
	tested, _, _ := strings.Cut(rest, "</kafka.version>")
	if want := "apache/kafka:" + tested; tested == "" || doc.Services["kafka"].Image != want {
		t.Errorf("compose's kafka runs %q; the tests run Kafka %q (internal/kafkatest/pom.xml): want %s", doc.Services["kafka"].Image, tested, want)
	}
}

func checkCommand(t *testing.T, service string, cmd []string) {
	t.Helper()
	if len(cmd) == 0 {
		t.Errorf("%s has no command", service)
		return
	}
	if _, ok := commands()[cmd[0]]; !ok {
		t.Errorf("%s runs %q, not an esignflow command", service, cmd[0])
		return
	}
	path := cmd[:1]
	if subcommands[cmd[0]] && len(cmd) > 1 {
		path = cmd[:2]
	}
	text := help(t, path...)
	for _, a := range cmd[len(path):] {
		if strings.HasPrefix(a, "--") {
			if !strings.Contains(text, "  -"+strings.TrimPrefix(a, "--")+" ") && !strings.Contains(text, "  -"+strings.TrimPrefix(a, "--")+"\n") {
				t.Errorf("%s: esignflow %s has no flag %s", service, strings.Join(path, " "), a)
			}
		}
	}
}
