package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
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
