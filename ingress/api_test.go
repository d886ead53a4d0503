package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/schemas"
)

var validRequest = []byte(`{"tenant":"acme","documents":[{"name":"nda.pdf","uri":"s3://docs/nda.pdf"}],"recipients":[{"id":"r1","name":"Ann","email":"ann@example.com"}],"metadata":{"crm":"7","b":"2"}}`)

// call makes one request with an optional bearer token and Idempotency-Key.
func call(t *testing.T, method, url, token, key string, body []byte) (*http.Response, string) {
	t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		h.Set("Idempotency-Key", key)
	}
	return send(t, method, url, h, body)
}

func isProblem(resp *http.Response) bool {
	return resp.Header.Get("Content-Type") == "application/problem+json"
}

// The webhook listener serves only webhooks; the API listener serves the
// API and the operations endpoints, never a webhook.
func TestListenersAreSeparate(t *testing.T) {
	ti := start(t, nil)
	tests := []struct {
		name, method, url string
		want              int
	}{
		{"signing requests not on the webhook listener", "POST", ti.url + "/v1/signing-requests", 404},
		{"request status not on the webhook listener", "GET", ti.url + "/v1/signing-requests/x", 404},
		{"metrics not on the webhook listener", "GET", ti.url + "/metrics", 404},
		{"readyz not on the webhook listener", "GET", ti.url + "/readyz", 404},
		{"webhooks not on the API listener", "POST", ti.api + "/webhooks/sim", 404},
		{"webhook on the webhook listener", "POST", ti.url + "/webhooks/sim", 401},
		{"metrics on the API listener, no token", "GET", ti.api + "/metrics", 200},
		{"healthz on the API listener, no token", "GET", ti.api + "/healthz", 200},
	}
	for _, tt := range tests {
		resp, text := call(t, tt.method, tt.url, "", "", []byte("{}"))
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %d %s, want %d", tt.name, resp.StatusCode, text, tt.want)
		}
	}
	if ti.Addr() == ti.APIAddr() {
		t.Fatalf("one address for both listeners: %s", ti.Addr())
	}
}

func TestAPITokensBindTenants(t *testing.T) {
	ti := start(t, nil)
	url := ti.api + "/v1/signing-requests"
	globexBody := bytes.Replace(validRequest, []byte(`"acme"`), []byte(`"globex"`), 1)
	tests := []struct {
		name, token, key string
		body             []byte
		want             int
	}{
		{"no token", "", "t1", validRequest, 401},
		{"unknown token", "not-a-token-0123456789", "t2", validRequest, 401},
		{"another tenant's request", acmeToken, "t3", globexBody, 403},
		{"own tenant", acmeToken, "t4", validRequest, 202},
		{"tenant taken from the token", globexToken, "t5", bytes.Replace(validRequest, []byte(`"tenant":"acme",`), nil, 1), 202},
	}
	for _, tt := range tests {
		resp, text := call(t, "POST", url, tt.token, tt.key, tt.body)
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %d %s, want %d", tt.name, resp.StatusCode, text, tt.want)
		}
		if tt.want >= 400 && !isProblem(resp) {
			t.Errorf("%s: %s, not problem+json", tt.name, resp.Header.Get("Content-Type"))
		}
		if tt.want == 401 && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tt.name)
		}
	}
	recs := ti.records(t, ti.codec.Topics().Requests)
	tenants := map[string]string{}
	for _, r := range recs {
		var req schemas.SigningRequest
		if err := ti.codec.Decode(context.Background(), r.Value, &req); err != nil {
			t.Fatal(err)
		}
		tenants[req.RequestID] = req.Tenant
	}
	if len(recs) != 2 || tenants["acme:t4"] != "acme" || tenants["globex:t5"] != "globex" {
		t.Fatalf("published %v, want acme:t4 for acme and globex:t5 for globex", tenants)
	}

	// No tokens at all: locked, unless InsecureNoAuth says otherwise.
	locked := start(t, func(c *Config) { c.Tokens = nil })
	if resp, text := call(t, "POST", locked.api+"/v1/signing-requests", acmeToken, "t6", validRequest); resp.StatusCode != 401 {
		t.Fatalf("no tokens configured: %d %s", resp.StatusCode, text)
	}
	open := start(t, func(c *Config) { c.Tokens, c.InsecureNoAuth = nil, true })
	if resp, text := call(t, "POST", open.api+"/v1/signing-requests", "", "t7", validRequest); resp.StatusCode != 202 {
		t.Fatalf("InsecureNoAuth: %d %s", resp.StatusCode, text)
	}
}

func TestTokenFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("# comment\n\nfirst-token-0123456789 acme\n  second-token-0123456789   globex  \n")
	f, err := OpenTokens(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	check := func(token, want string) {
		t.Helper()
		got, ok := f.Tenant(token)
		if got != want || ok != (want != "") {
			t.Errorf("Tenant(%q) = %q, %v; want %q", token, got, ok, want)
		}
	}
	check("first-token-0123456789", "acme")
	check("second-token-0123456789", "globex")
	check("first-token-012345678", "") // a prefix
	check("", "")
	write("third-token-0123456789 acme\n")
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	check("first-token-0123456789", "")
	check("third-token-0123456789", "acme")
	write("") // caught mid-rewrite: keep the tokens in use
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	check("third-token-0123456789", "acme")
	for _, bad := range []string{"short acme\n", "a-long-enough-token-0123 acme extra\n", "a-long-enough-token-0123 ac/me\n"} {
		write(bad)
		if err := f.Reload(); err == nil {
			t.Errorf("%q loaded", bad)
		}
	}
	check("third-token-0123456789", "acme")

	// Rotation by file change, picked up by Run.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, 10*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	time.Sleep(20 * time.Millisecond)
	write("fourth-token-0123456789 acme\n")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := f.Tenant("fourth-token-0123456789"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rewritten file was not picked up")
		}
	}
}

func TestTrustedProxies(t *testing.T) {
	in := &Ingress{cfg: Config{TrustedProxies: mustCIDRs(t, "10.0.0.0/8, 192.168.1.1, ::1")}}
	tests := []struct {
		name, peer string
		h          http.Header
		want       string
	}{
		{"untrusted peer: headers ignored", "203.0.113.9:5000", http.Header{"X-Forwarded-For": {"198.51.100.1"}}, "203.0.113.9"},
		{"trusted peer, no header", "10.1.2.3:5000", nil, "10.1.2.3"},
		{"trusted peer, one hop", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1"},
		{"client-forged hops left of the real one", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"1.2.3.4, 198.51.100.1"}}, "198.51.100.1"},
		{"a chain of trusted proxies", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"1.2.3.4, 198.51.100.1, 10.9.9.9", "192.168.1.1"}}, "198.51.100.1"},
		{"Forwarded wins over X-Forwarded-For", "10.1.2.3:5000", http.Header{"Forwarded": {`for=198.51.100.2;proto=https, for="[2001:db8::7]:4711"`}, "X-Forwarded-For": {"198.51.100.1"}}, "2001:db8::7"},
		{"Forwarded unknown hop ends the walk", "10.1.2.3:5000", http.Header{"Forwarded": {"for=198.51.100.2, for=unknown"}}, "10.1.2.3"},
		{"IPv6 loopback proxy", "[::1]:5000", http.Header{"X-Forwarded-For": {"198.51.100.3"}}, "198.51.100.3"},
		{"garbage header", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"not an address"}}, "10.1.2.3"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/webhooks/sim", nil)
		r.RemoteAddr = tt.peer
		for k, v := range tt.h {
			r.Header[k] = v
		}
		if got := in.clientIP(r); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
	if _, err := ParseCIDRs("10.0.0.0/8,nonsense"); err == nil {
		t.Error("nonsense parsed")
	}

	// End to end: the source IP recorded in the event.
	for _, tc := range []struct {
		trusted string
		want    string
	}{{"", "127.0.0.1"}, {"127.0.0.0/8", "198.51.100.1"}} {
		ti := start(t, func(c *Config) { c.TrustedProxies = mustCIDRs(t, tc.trusted) })
		ts := now.Unix()
		body := simBody("evt_p", "env-p", "sent")
		h := http.Header{"Webhook-Id": {"evt_p"}, "Webhook-Timestamp": {strconv.FormatInt(ts, 10)}, "Webhook-Signature": {sign(simKey, "evt_p", ts, body)},
			"X-Forwarded-For": {"198.51.100.1"}}
		if resp, text := post(t, ti.url+"/webhooks/sim", h, body); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, text)
		}
		recs := ti.records(t, ti.codec.Topics().Events)
		var ev schemas.EnvelopeEvent
		if err := ti.codec.Decode(context.Background(), recs[0].Value, &ev); err != nil {
			t.Fatal(err)
		}
		if *ev.SourceIP != tc.want {
			t.Errorf("trusted %q: source IP %s, want %s", tc.trusted, *ev.SourceIP, tc.want)
		}
	}
}

func mustCIDRs(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	p, err := ParseCIDRs(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnknownProviderIsRefused(t *testing.T) {
	ti := start(t, nil)
	for _, p := range []string{"docusign", "acme-sign"} {
		body := bytes.Replace(validRequest, []byte(`"tenant":"acme",`), []byte(`"tenant":"acme","provider":"`+p+`",`), 1)
		resp, text := call(t, "POST", ti.api+"/v1/signing-requests", acmeToken, "p-"+p, body)
		if resp.StatusCode != 400 || !strings.Contains(text, `"field":"provider"`) {
			t.Errorf("provider %s: %d %s, want 400 naming the provider field", p, resp.StatusCode, text)
		}
	}
	if resp, text := call(t, "POST", ti.api+"/v1/signing-requests", acmeToken, "p-sim", validRequest); resp.StatusCode != 202 {
		t.Fatalf("sim: %d %s", resp.StatusCode, text)
	}
	if recs := ti.records(t, ti.codec.Topics().Requests); len(recs) != 1 {
		t.Fatalf("%d requests published, want 1 (sim only)", len(recs))
	}
}

func TestRequestStatus(t *testing.T) {
	ti := start(t, nil)
	status := func(token, id string) (int, RequestStatus, string) {
		t.Helper()
		resp, text := call(t, "GET", ti.api+"/v1/signing-requests/"+id, token, "", nil)
		var st RequestStatus
		if resp.StatusCode == 200 {
			if err := json.Unmarshal([]byte(text), &st); err != nil {
				t.Fatalf("%s: %v", text, err)
			}
		} else if !isProblem(resp) {
			t.Errorf("GET %s: %d is not problem+json", id, resp.StatusCode)
		}
		return resp.StatusCode, st, text
	}
	for _, key := range []string{"s1", "s2"} {
		if resp, text := call(t, "POST", ti.api+"/v1/signing-requests", acmeToken, key, validRequest); resp.StatusCode != 202 {
			t.Fatalf("%d %s", resp.StatusCode, text)
		}
	}
	if code, st, text := status(acmeToken, "acme:s1"); code != 200 || st.State != "accepted" || st.Tenant != "acme" || st.AcceptedAt == nil {
		t.Fatalf("accepted: %d %s", code, text)
	}
	// What the processor writes once the provider answers.
	st, err := store.New(store.Config{Client: ti.redis.Client, Prefix: ti.redis.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	sent, failed := schemas.StatusSent, schemas.StatusFailed
	r1, r2, tenant, reason := "acme:s1", "acme:s2", "acme", "recipient e-mail refused"
	failedID := store.FailedEnvelopeID(store.RequestKey{Tenant: tenant, ID: r2}.Scoped())
	if err := st.Seed(context.Background(), 0,
		envelope.Envelope{State: schemas.EnvelopeState{EnvelopeID: "env-77", Provider: "sim", RequestID: &r1, Tenant: &tenant, Status: &sent, Version: 3, AuditSeq: 3, UpdatedAt: now}},
		envelope.Envelope{State: schemas.EnvelopeState{EnvelopeID: failedID, Provider: "sim", RequestID: &r2, Tenant: &tenant, Status: &failed, Version: 1, Reason: &reason, AuditSeq: 1, UpdatedAt: now}},
	); err != nil {
		t.Fatal(err)
	}
	if code, got, text := status(acmeToken, "acme:s1"); code != 200 || got.State != "created" || got.EnvelopeID != "env-77" || *got.Status != sent || got.Version != 3 {
		t.Fatalf("created: %d %s", code, text)
	}
	if code, got, text := status(acmeToken, "acme:s2"); code != 200 || got.State != "failed" || got.Reason != reason || got.EnvelopeID != "" || *got.Status != failed {
		t.Fatalf("failed: %d %s", code, text)
	}
	for _, tc := range []struct {
		name, token, id string
		want            int
	}{
		{"another tenant's request", globexToken, "acme:s1", 404},
		{"unknown request", acmeToken, "acme:nope", 404},
		{"no token", "", "acme:s1", 401},
	} {
		if code, _, text := status(tc.token, tc.id); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, text, tc.want)
		}
	}
}

func TestIdempotencyCanonicalAndPerTenant(t *testing.T) {
	ti := start(t, nil)
	url := ti.api + "/v1/signing-requests"
	resp, first := call(t, "POST", url, acmeToken, "c1", validRequest)
	if resp.StatusCode != 202 {
		t.Fatalf("%d %s", resp.StatusCode, first)
	}
	var v any
	_ = json.Unmarshal(validRequest, &v)
	pretty, _ := json.MarshalIndent(v, "", "    ")
	reordered := []byte(`{"metadata":{"b":"2","crm":"7"},"recipients":[{"email":"ann@example.com","name":"Ann","id":"r1"}],
		"documents":[{"uri":"s3://docs/nda.pdf","name":"nda.pdf"}],"tenant":"acme"}`)
	for name, body := range map[string][]byte{"pretty-printed": pretty, "keys reordered": reordered} {
		resp, again := call(t, "POST", url, acmeToken, "c1", body)
		if resp.StatusCode != 202 || again != first || resp.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("%s: %d %s, want the first answer replayed", name, resp.StatusCode, again)
		}
	}
	// The same key from another tenant is another request.
	globex := bytes.Replace(validRequest, []byte(`"acme"`), []byte(`"globex"`), 1)
	resp, other := call(t, "POST", url, globexToken, "c1", globex)
	if resp.StatusCode != 202 || resp.Header.Get("Idempotent-Replayed") != "" || !strings.Contains(other, `"request_id":"globex:c1"`) {
		t.Fatalf("globex, same key: %d %s", resp.StatusCode, other)
	}
	// A request id one tenant holds cannot be taken by another.
	withID := bytes.Replace(globex, []byte(`{`), []byte(`{"request_id":"acme:c1",`), 1)
	if resp, text := call(t, "POST", url, globexToken, "c2", withID); resp.StatusCode != 409 {
		t.Fatalf("globex taking acme's request id: %d %s", resp.StatusCode, text)
	}
	if recs := ti.records(t, ti.codec.Topics().Requests); len(recs) != 2 {
		t.Fatalf("%d requests published, want 2", len(recs))
	}
}

func TestCanonical(t *testing.T) {
	a, err := Canonical([]byte(" {\"b\": [1, 2.50, {\"y\":1,\"x\":\"<&>\"}],\n \"a\": null}"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":null,"b":[1,2.50,{"x":"<&>","y":1}]}`; string(a) != want {
		t.Fatalf("got %s, want %s", a, want)
	}
	for _, bad := range []string{`{"a":1} {"b":2}`, `{"a":1} x`, `{`, ``} {
		if _, err := Canonical([]byte(bad)); err == nil {
			t.Errorf("%q is canonical", bad)
		}
	}
}

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestErrorAnswers(t *testing.T) {
	var logs syncBuffer
	ti := start(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.Secrets = staticKeys{"sim": {simKey}} // none for docusign
	})
	// 404 and 405 as problem+json, on both listeners.
	for _, tc := range []struct {
		method, url string
		want        int
	}{
		{"GET", ti.url + "/nothing", 404},
		{"GET", ti.api + "/nothing", 404},
		{"GET", ti.url + "/webhooks/sim", 405},
		{"DELETE", ti.api + "/v1/signing-requests", 405},
	} {
		resp, text := call(t, tc.method, tc.url, "", "", nil)
		if resp.StatusCode != tc.want || !isProblem(resp) || !strings.Contains(text, `"status":`+strconv.Itoa(tc.want)) {
			t.Errorf("%s %s: %d %s %s, want %d as problem+json", tc.method, tc.url, resp.StatusCode, resp.Header.Get("Content-Type"), text, tc.want)
		}
		if tc.want == 405 && resp.Header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.url)
		}
	}
	// Field errors speak JSON, not Go, and say where.
	for _, tc := range []struct {
		body, field string
	}{
		{`{"recipients":[{"id":"r1"},{"routing_order":"x"}]}`, "recipients[1].routing_order"},
		{`{"tenant":5}`, "tenant"},
		{`{"expires_at":"tomorrow"}`, "expires_at"},
		{`{"documents":[{"content":"!!"}]}`, "documents[0].content"},
		{`{"recipients":[{"auth":3}]}`, "recipients[0].auth"},
		{`{"metadata":{"a":1}}`, "metadata.a"},
		{`{"colour":"red"}`, "colour"},
		{`[1]`, ""},
		{`{"tenant":`, ""},
	} {
		resp, text := call(t, "POST", ti.api+"/v1/signing-requests", acmeToken, "e", []byte(tc.body))
		var p struct {
			Errors []FieldError `json:"errors"`
		}
		_ = json.Unmarshal([]byte(text), &p)
		if resp.StatusCode != 400 || len(p.Errors) == 0 || p.Errors[0].Field != tc.field {
			t.Errorf("%s: %d %s, want 400 naming %q", tc.body, resp.StatusCode, text, tc.field)
		}
		for _, goish := range []string{"Go ", "int32", "schemas.", "struct", "2006-01-02"} {
			if strings.Contains(text, goish) {
				t.Errorf("%s: the answer speaks Go (%q): %s", tc.body, goish, text)
			}
		}
	}
	// A provider without a secret says so.
	resp, text := post(t, ti.url+"/webhooks/docusign", http.Header{"X-Docusign-Signature-1": {"AAAA"}}, []byte("{}"))
	if resp.StatusCode != 401 || !strings.Contains(text, "no secret configured for provider docusign") {
		t.Errorf("docusign without a secret: %d %s", resp.StatusCode, text)
	}
	// Stale and future timestamps are logged at WARN with the reason.
	body := simBody("evt_t", "env-t", "sent")
	for _, ts := range []int64{now.Unix() - 3600, now.Unix() + 3600} {
		h := http.Header{"Webhook-Id": {"evt_t"}, "Webhook-Timestamp": {strconv.FormatInt(ts, 10)}, "Webhook-Signature": {sign(simKey, "evt_t", ts, body)}}
		if resp, _ := post(t, ti.url+"/webhooks/sim", h, body); resp.StatusCode != 401 {
			t.Errorf("timestamp %d: %d", ts, resp.StatusCode)
		}
	}
	out := logs.String()
	for _, want := range []string{"reason=stale", "reason=future", "reason=no_secret"} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			found = found || strings.Contains(line, "level=WARN") && strings.Contains(line, `msg="webhook refused"`) && strings.Contains(line, want)
		}
		if !found {
			t.Errorf("no WARN line with %q:\n%s", want, out)
		}
	}
}

// A standalone ingress on a broker without its topics creates them, and
// is not ready until they exist.
func TestTopicsEnsuredBeforeReady(t *testing.T) {
	k, _ := fakes.T(t, 1)
	prefix := k.Prefix + "fresh."
	reg, codec, err := fakes.Registry(context.Background(), schemas.WithNames(schemas.Prefixed(prefix)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	var refuse chan struct{}
	if k.Fake != nil { // the broker refuses topic creation until told
		refuse = make(chan struct{})
		k.Fake.ControlKey(int16(kmsg.CreateTopics), func(req kmsg.Request) (kmsg.Response, error, bool) {
			k.Fake.KeepControl()
			select {
			case <-refuse:
				return nil, nil, false
			default:
			}
			creq := req.(*kmsg.CreateTopicsRequest)
			resp := creq.ResponseKind().(*kmsg.CreateTopicsResponse)
			for _, tp := range creq.Topics {
				rt := kmsg.NewCreateTopicsResponseTopic()
				rt.Topic, rt.ErrorCode = tp.Topic, kerr.PolicyViolation.Code
				resp.Topics = append(resp.Topics, rt)
			}
			return resp, nil, true
		})
	}
	ti := startWith(t, k, codec, func(c *Config) { c.Topics.Partitions = 2 })
	if refuse != nil {
		for range 3 {
			if resp, text := ti.get(t, "/readyz"); resp.StatusCode != 503 || !strings.Contains(text, "topics") {
				t.Fatalf("readyz while the topics cannot be created: %d %s", resp.StatusCode, text)
			}
			time.Sleep(100 * time.Millisecond)
		}
		close(refuse)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, text := ti.get(t, "/readyz")
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %d %s", resp.StatusCode, text)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	tds, err := kadm.NewClient(cl).ListTopics(context.Background(), codec.Topics().All()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range codec.Topics().All() {
		if td, ok := tds[name]; !ok || td.Err != nil || len(td.Partitions) != 2 {
			t.Errorf("topic %s after ready: %+v", name, td)
		}
	}
}
