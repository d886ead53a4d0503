package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/stack"
	"github.com/esignflow/esignflow/provider/sim"
)

// The ingress does not start with an open API by accident: no tokens
// file is a usage error naming the flag, before anything is contacted.
func TestIngressNeedsAPITokens(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("a-token-long-enough-0123 acme\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--api-tokens-file is required"},
		{[]string{"--api-tokens-file", tokens, "--api-insecure-no-auth"}, "either --api-tokens-file or --api-insecure-no-auth"},
		{[]string{"--api-tokens-file", filepath.Join(dir, "missing")}, "--api-tokens-file"},
		{[]string{"--api-tokens-file", tokens, "--trusted-proxies", "10.0.0.0/8,bogus"}, "--trusted-proxies"},
	} {
		e, _, errb := testEnv()
		args := append([]string{"ingress", "--webhook-secrets-dir", dir, "--brokers", "127.0.0.1:1", "--registry", "http://127.0.0.1:1"}, tc.args...)
		if code := run(context.Background(), e, args); code == 0 {
			t.Errorf("%v: exit 0", tc.args)
		}
		if !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: stderr %q, want %q", tc.args, errb.String(), tc.want)
		}
	}
}

// A request file without request_id names the same requests each time it
// is read, however it is laid out, so sending it again duplicates nothing.
func TestRequestFileIDsFromContent(t *testing.T) {
	compact := `{"tenant":"acme","documents":[{"name":"a.pdf","uri":"s3://d/a.pdf"}],"recipients":[{"id":"r1","name":"Ann","email":"ann@example.com"}]}`
	pretty := "{\n  \"recipients\": [ {\"email\": \"ann@example.com\", \"name\": \"Ann\", \"id\": \"r1\"} ],\n  \"documents\": [{\"uri\": \"s3://d/a.pdf\", \"name\": \"a.pdf\"}],\n  \"tenant\": \"acme\"\n}"
	other := strings.Replace(compact, "a.pdf", "b.pdf", 2)
	withID := strings.Replace(compact, `{"tenant"`, `{"request_id":"mine","tenant"`, 1)
	ids := func(in string) []string {
		t.Helper()
		reqs, err := readRequests(strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range reqs {
			out = append(out, r.RequestID)
		}
		return out
	}
	first := ids(compact)
	if again := ids(compact); again[0] != first[0] {
		t.Fatalf("the same file read twice: %v then %v", first, again)
	}
	if p := ids(pretty); p[0] != first[0] {
		t.Fatalf("pretty-printed: %s, compact: %s", p[0], first[0])
	}
	if o := ids(other); o[0] == first[0] {
		t.Fatalf("different requests share id %s", o[0])
	}
	if m := ids(withID); m[0] != "mine" {
		t.Fatalf("a given request_id was replaced: %s", m[0])
	}
	if lines := ids(compact + "\n" + other + "\n"); len(lines) != 2 || lines[0] != first[0] {
		t.Fatalf("JSON lines: %v", lines)
	}
}

// esignflow dev's API: the generated token creates and follows a request
// over HTTP until its envelope exists; the banner gives the addresses in
// use.
func TestDevAPIAndBanner(t *testing.T) {
	st := startStack(t, stack.Config{Sim: sim.Config{Step: 5 * time.Millisecond}})
	token := st.APIToken()
	if len(token) < 16 {
		t.Fatalf("token %q", token)
	}
	do := func(method, path, token string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, st.APIURL()+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Idempotency-Key", "dev-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	body := []byte(`{"documents":[{"name":"nda.pdf","uri":"s3://docs/nda.pdf"}],"recipients":[{"id":"r1","name":"Ann","email":"ann@example.com"}]}`)
	if code, text := do("POST", "/v1/signing-requests", token, body); code != 202 || !strings.Contains(text, `"request_id":"dev:dev-1"`) {
		t.Fatalf("create: %d %s", code, text)
	}
	if code, _ := do("POST", "/v1/signing-requests", "wrong-token-0123456789", body); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, text := do("GET", "/v1/signing-requests/dev:dev-1", token, nil)
		var got struct {
			State      string `json:"state"`
			EnvelopeID string `json:"envelope_id"`
		}
		_ = json.Unmarshal([]byte(text), &got)
		if code == 200 && got.State == "created" && got.EnvelopeID != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never created: %d %s", code, text)
		}
	}

	var out bytes.Buffer
	printBanner(&out, st)
	for _, want := range []string{
		"esignflow request send --brokers " + strings.Join(st.Brokers, ",") + " --registry " + st.RegistryURL(),
		token, st.APIURL() + "/v1/signing-requests", st.APIURL() + "/metrics", st.IngressURL(),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, out.String())
		}
	}
}
