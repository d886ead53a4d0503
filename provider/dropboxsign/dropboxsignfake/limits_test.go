package dropboxsignfake_test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider/dropboxsign/dropboxsignfake"
	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/provider/sim"
)

// TestRateLimits: each tier counts its own calls per window, every answer
// carries the tier's headers, and past the limit calls are refused 429
// exceeded_rate until the window resets.
func TestRateLimits(t *testing.T) {
	h := start(t, dropboxsignfake.Config{StandardLimit: 3, HighTierLimit: 2, TestModeLimit: 1, RateWindow: time.Hour}, sim.Config{})
	// The window's end: the next full hour, of the start or (when the
	// calls cross an hour) of a moment after it; every answer names the
	// same one.
	endOf := func(t time.Time) string { return strconv.FormatInt(t.Truncate(time.Hour).Add(time.Hour).Unix(), 10) }
	startedAt := time.Now()
	var reset string
	testMode := request("tm", 1)
	testMode["test_mode"] = true
	sr := h.send(request("a", 1), "") // high tier: 1 of 2
	calls := []struct {
		name      string
		call      func() reply
		code      int
		limit     string
		remaining string
	}{
		{"standard 1", func() reply { return h.get("/v3/account") }, 200, "3", "2"},
		{"standard 2", func() reply { return h.get("/v3/signature_request/" + sr.ID) }, 200, "3", "1"},
		{"standard 3", func() reply { return h.get("/v3/signature_request/list") }, 200, "3", "0"},
		{"standard refused", func() reply { return h.get("/v3/account") }, 429, "3", "0"},
		{"high tier 2", func() reply { return h.get("/v3/signature_request/files/" + sr.ID) }, 200, "2", "0"},
		{"high tier refused", func() reply { return h.sendJSON(request("b", 1), "") }, 429, "2", "0"},
		{"test mode 1", func() reply { return h.sendJSON(testMode, "") }, 200, "1", "0"},
		{"test mode refused", func() reply { return h.sendJSON(testMode, "") }, 429, "1", "0"},
	}
	for _, c := range calls {
		r := c.call()
		if reset == "" {
			if reset = r.header.Get("X-Ratelimit-Reset"); reset != endOf(startedAt) && reset != endOf(time.Now()) {
				t.Fatalf("%s: X-Ratelimit-Reset %s, want the next full hour %s", c.name, reset, endOf(startedAt))
			}
		}
		if r.code != c.code || r.header.Get("X-RateLimit-Limit") != c.limit || r.header.Get("X-RateLimit-Remaining") != c.remaining ||
			r.header.Get("X-Ratelimit-Reset") != reset {
			t.Fatalf("%s: %d %s %v; want %d, limit %s, remaining %s, reset %s", c.name, r.code, r.body, r.header, c.code, c.limit, c.remaining, reset)
		}
		if c.code == 429 && strings.TrimSpace(string(r.body)) != `{"error":{"error_msg":"Too many requests.","error_name":"exceeded_rate"}}` {
			t.Fatalf("%s: body %s", c.name, r.body)
		}
	}
	if tr := h.sim.Truth(); len(tr) != 2 {
		t.Fatalf("refused sends created: %+v", tr)
	}
	if st := h.d.Stats(); st.RateLimited != 3 {
		t.Fatalf("stats %+v", st)
	}

	// A short window resets.
	h2 := start(t, dropboxsignfake.Config{StandardLimit: 1, RateWindow: 50 * time.Millisecond}, sim.Config{})
	providertest.WaitFor(t, 10*time.Second, "a refusal, then the window's reset", func() bool {
		first, second := h2.get("/v3/account"), h2.get("/v3/account")
		return first.code == 200 && second.code == 429
	})
	providertest.WaitFor(t, 10*time.Second, "the window's reset", func() bool { return h2.get("/v3/account").code == 200 })
}

// TestRateHeadersOnTheWire: the headers are sent with the spec's exact
// names, X-Ratelimit-Reset with its lower-case l (read off the raw
// answer: Go's client would canonicalise them).
func TestRateHeadersOnTheWire(t *testing.T) {
	h := start(t, dropboxsignfake.Config{}, sim.Config{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.sim.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v3/account HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\nConnection: close\r\n\r\n", base64.StdEncoding.EncodeToString([]byte(apiKey+":")))
	tp := textproto.NewReader(bufio.NewReader(conn))
	status, err := tp.ReadLine()
	if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("status %q %v", status, err)
	}
	names := map[string]bool{}
	for {
		line, err := tp.ReadLine()
		if err != nil {
			t.Fatal(err)
		}
		if line == "" {
			break
		}
		name, _, _ := strings.Cut(line, ":")
		names[name] = true
	}
	for _, n := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-Ratelimit-Reset"} {
		if !names[n] {
			t.Errorf("no %s header among %v", n, names)
		}
	}
}
