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
