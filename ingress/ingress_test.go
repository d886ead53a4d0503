package ingress

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/internal/kafkatest"
	"github.com/esignflow/esignflow/internal/redistest"
	"github.com/esignflow/esignflow/internal/topicread"
	"github.com/esignflow/esignflow/schemas"
)

// staticKeys is a fixed secret set.
type staticKeys map[string][][]byte

func (s staticKeys) Keys(p string) [][]byte { return s[p] }

var (
	simKey    = []byte("sim-signing-key-0123456789abcdef")
	simKeyOld = []byte("the-previous-key-still-active!!!")
	dsKey     = "Zk9mQ3Jlc3RTZWNyZXRLZXkxMjM0NTY3ODkw"
	dbxKey    = "dbx-api-key-0123"
	now       = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
)

// staticTokens is a fixed token set.
type staticTokens map[string]string

func (s staticTokens) Tenant(token string) (string, bool) { t, ok := s[token]; return t, ok }

const (
	acmeToken   = "acme-token-0123456789"
	globexToken = "globex-token-0123456789"
)

type testIngress struct {
	*Ingress
	url     string // the webhook listener
	api     string // the API listener
	kafka   *fakes.Kafka
	brokers []string
	codec   *schemas.Codec
	redis   *redistest.Redis
}

func start(t *testing.T, mutate func(*Config)) *testIngress {
	t.Helper()
	k, codec := fakes.T(t, 2)
	return startWith(t, k, codec, mutate)
}

// startWith starts an ingress on k and codec.
func startWith(t *testing.T, k *fakes.Kafka, codec *schemas.Codec, mutate func(*Config)) *testIngress {
	t.Helper()
	r := redistest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Listener: ln, APIListener: aln, Tokens: staticTokens{acmeToken: "acme", globexToken: "globex"}, Brokers: k.Brokers, Codec: codec, Redis: r.Client, KeyPrefix: r.Prefix,
		Secrets: staticKeys{"sim": {simKeyOld, simKey}, "standard": {simKey}, "docusign": {[]byte(dsKey)}, "dropboxsign": {[]byte(dbxKey)}},
		Now:     func() time.Time { return now }, PublishTimeout: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fakes.Start(t, in)
	return &testIngress{Ingress: in, url: "http://" + in.Addr(), api: "http://" + in.APIAddr(), kafka: k, brokers: k.Brokers, codec: codec, redis: r}
}

// sign computes a Standard Webhooks signature with the test's own HMAC.
func sign(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%d.", id, ts)
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func post(t *testing.T, url string, h http.Header, body []byte) (*http.Response, string) {
	t.Helper()
	return send(t, http.MethodPost, url, h, body)
}

// send makes one request with headers h and returns the answer and its body.
func send(t *testing.T, method, url string, h http.Header, body []byte) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func simBody(id, env, status string) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"type":"recipient.signed","created_at":"2026-11-27T11:59:58Z","data":{"envelope_id":%q,"status":%q,"status_changed_at":"2026-11-27T11:59:58Z","metadata":{"esignflow_request_id":"req-1"},"recipient":{"id":"r1","email":"a@example.com","name":"A","status":"signed","ip_address":"198.51.100.4"}}}`, id, env, status))
}

// records reads every record of a topic (read_committed) up to its end.
func (ti *testIngress) records(t *testing.T, topic string) []*kgo.Record {
	t.Helper()
	// Every partition up to its end as of now: the ingress answered 2xx
	// only after the broker acknowledged (a marker record would end the
	// read at its own partition, before another partition's records
	// arrive: seen on Apache Kafka).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	if err := topicread.All(ctx, []kgo.Opt{kgo.SeedBrokers(ti.brokers...)}, topic, func(r *kgo.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("reading %s: %v", topic, err)
	}
	return out
}

func TestStandardWebhookAnswers(t *testing.T) {
	ti := start(t, func(c *Config) { c.MaxBody = 4096 })
	ts := now.Unix()
	body := simBody("evt_1", "env-1", "partially_signed")
	h := func(prefix, id string, ts int64, sig string) http.Header {
		return http.Header{prefix + "-Id": {id}, prefix + "-Timestamp": {strconv.FormatInt(ts, 10)}, prefix + "-Signature": {sig}}
	}
	tests := []struct {
		name     string
		provider string
		h        http.Header
		body     []byte
		want     int
	}{
		{"valid", "sim", h("Webhook", "evt_1", ts, sign(simKey, "evt_1", ts, body)), body, 200},
		{"old key still active", "sim", h("Webhook", "evt_1", ts, sign(simKeyOld, "evt_1", ts, body)), body, 200},
		{"svix headers on standard", "standard", h("Svix", "evt_1", ts, sign(simKey, "evt_1", ts, body)), body, 200},
		{"tampered body", "sim", h("Webhook", "evt_1", ts, sign(simKey, "evt_1", ts, body)), bytes.Replace(body, []byte("signed"), []byte("declined"), 1), 401},
		{"wrong secret", "sim", h("Webhook", "evt_1", ts, sign([]byte("nope"), "evt_1", ts, body)), body, 401},
		{"no signature", "sim", http.Header{}, body, 401},
		{"stale timestamp", "sim", h("Webhook", "evt_1", ts-301, sign(simKey, "evt_1", ts-301, body)), body, 401},
		{"future timestamp", "sim", h("Webhook", "evt_1", ts+301, sign(simKey, "evt_1", ts+301, body)), body, 401},
		{"unknown provider", "acme", h("Webhook", "evt_1", ts, sign(simKey, "evt_1", ts, body)), body, 404},
		{"body too large", "sim", http.Header{}, bytes.Repeat([]byte("x"), 5000), 413},
	}
	accepted := 0
	for _, tt := range tests {
		resp, text := post(t, ti.url+"/webhooks/"+tt.provider, tt.h, tt.body)
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %d %s, want %d", tt.name, resp.StatusCode, text, tt.want)
		}
		if tt.want >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: error is %s, not problem+json", tt.name, resp.Header.Get("Content-Type"))
		}
		if tt.want == 200 {
			accepted++
		}
	}
	recs := ti.records(t, ti.codec.Topics().Events)
	if len(recs) != accepted {
		t.Fatalf("%d events published for %d accepted webhooks", len(recs), accepted)
	}
	var ev schemas.EnvelopeEvent
	if err := ti.codec.Decode(context.Background(), recs[0].Value, &ev); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if string(recs[0].Key) != "env-1" || ev.EventID != "evt_1" || *ev.Status != schemas.StatusPartiallySigned || *ev.RequestID != "req-1" ||
		*ev.SourceIP != "127.0.0.1" || *ev.BodySHA256 != hex.EncodeToString(sum[:]) || !ev.ReceivedAt.Equal(now) ||
		ev.Recipients[0].Status != schemas.RecipientSigned || *ev.Recipients[0].SourceIP != "198.51.100.4" {
		t.Fatalf("event: %+v", ev)
	}
}

func TestDocuSignConnectCompleted(t *testing.T) {
	ti := start(t, nil)
	body, err := os.ReadFile("../provider/docusign/testdata/envelope-completed.json")
	if err != nil {
		t.Fatal(err)
	}
	// openssl dgst -sha256 -mac HMAC -macopt key:<dsKey> -binary | base64
	const sig = "inhgpfKFCc3tA2Jqge1hMWg21FRbMtp4UiC0Czb6k8c="
	if resp, text := post(t, ti.url+"/webhooks/docusign", http.Header{"X-Docusign-Signature-1": {sig}}, body); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, text)
	}
	if resp, _ := post(t, ti.url+"/webhooks/docusign", http.Header{"X-Docusign-Signature-1": {"AAAA" + sig[4:]}}, body); resp.StatusCode != 401 {
		t.Fatalf("bad signature: %d", resp.StatusCode)
	}
	recs := ti.records(t, ti.codec.Topics().Events)
	if len(recs) != 1 {
		t.Fatalf("%d events", len(recs))
	}
	var ev schemas.EnvelopeEvent
	if err := ti.codec.Decode(context.Background(), recs[0].Value, &ev); err != nil {
		t.Fatal(err)
	}
	if *ev.Status != schemas.StatusCompleted || ev.Provider != "docusign" || *ev.RequestID != "req-42" {
		t.Fatalf("event: %+v", ev)
	}
}

func TestDropboxSignAllSigned(t *testing.T) {
	ti := start(t, nil)
	raw, err := os.ReadFile("../provider/dropboxsign/testdata/all_signed.json")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "--b\r\nContent-Disposition: form-data; name=\"json\"\r\n\r\n%s\r\n--b--\r\n", raw)
	resp, text := post(t, ti.url+"/webhooks/dropboxsign", http.Header{"Content-Type": {"multipart/form-data; boundary=b"}}, buf.Bytes())
	if resp.StatusCode != 200 || !strings.Contains(text, "Hello API Event Received") {
		t.Fatalf("%d %q", resp.StatusCode, text)
	}
	test := `{"event":{"event_time":"1795774600","event_type":"callback_test","event_hash":"` + hmacHex(dbxKey, "1795774600callback_test") + `"}}`
	resp, text = post(t, ti.url+"/webhooks/dropboxsign", http.Header{"Content-Type": {"application/json"}}, []byte(test))
	if resp.StatusCode != 200 || !strings.Contains(text, "Hello API Event Received") {
		t.Fatalf("callback_test: %d %q", resp.StatusCode, text)
	}
	if resp, _ := post(t, ti.url+"/webhooks/dropboxsign", http.Header{"Content-Type": {"application/json"}}, []byte(`{"event":`)); resp.StatusCode != 400 {
		t.Fatalf("malformed: %d", resp.StatusCode)
	}
	recs := ti.records(t, ti.codec.Topics().Events)
	if len(recs) != 1 {
		t.Fatalf("%d events, want 1 (callback_test publishes nothing)", len(recs))
	}
}

func hmacHex(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func TestAuthenticButUnparseableIsDeadLettered(t *testing.T) {
	ti := start(t, nil)
	body := []byte(`{"id":"evt_9","type":"x","created_at":"2026-11-27T11:59:58Z","data":{"envelope_id":"env-9","status":"teleported"}}`)
	ts := now.Unix()
	h := http.Header{"Webhook-Id": {"evt_9"}, "Webhook-Timestamp": {strconv.FormatInt(ts, 10)}, "Webhook-Signature": {sign(simKey, "evt_9", ts, body)}}
	if resp, text := post(t, ti.url+"/webhooks/sim", h, body); resp.StatusCode != 202 {
		t.Fatalf("%d %s", resp.StatusCode, text)
	}
	dls := ti.records(t, ti.codec.Topics().DLQ)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters", len(dls))
	}
	var dl schemas.DeadLetter
	if err := ti.codec.Decode(context.Background(), dls[0].Value, &dl); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dl.Value, body) || !strings.Contains(dl.Error, "teleported") || dl.Component != "ingress/sim" {
		t.Fatalf("dead letter: %+v", dl)
	}
}

// With the broker refusing produce, a webhook is answered 503 with
// Retry-After; once the broker is back the provider's retry lands. On kfake
// the broker refuses every produce; with a real broker the test runs its
// own Apache Kafka process (not the shared one, which other tests use) and
// freezes it with SIGSTOP: a broker that hangs, the harder case, since
// nothing answers at all.
func TestBrokerDownThenBack(t *testing.T) {
	var ti *testIngress
	var back func()
	if fakes.Real() {
		b := kafkatest.Start(t)
		ti = start(t, func(c *Config) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := fakes.EnsureTopics(ctx, b.Brokers(), c.Codec.Topics(), 2); err != nil {
				t.Fatal(err)
			}
			c.Brokers = b.Brokers()
		})
		ti.brokers = b.Brokers()
		if err := b.Pause(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Resume() })
		back = func() {
			if err := b.Resume(); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		ti = start(t, nil)
		var down atomic.Bool
		down.Store(true)
		ti.kafka.Fake.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
			ti.kafka.Fake.KeepControl()
			if down.Load() {
				return nil, errors.New("broker down"), true
			}
			return nil, nil, false
		})
		back = func() { down.Store(false) }
	}
	ts := now.Unix()
	body := simBody("evt_2", "env-2", "completed")
	h := http.Header{"Webhook-Id": {"evt_2"}, "Webhook-Timestamp": {strconv.FormatInt(ts, 10)}, "Webhook-Signature": {sign(simKey, "evt_2", ts, body)}}
	resp, _ := post(t, ti.url+"/webhooks/sim", h, body)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("broker down: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	back()
	// The provider retries, honouring Retry-After (shortened here), until
	// it gets a 2xx.
	for attempt := 1; ; attempt++ {
		resp, _ = post(t, ti.url+"/webhooks/sim", h, body)
		if resp.StatusCode == 200 {
			break
		}
		if resp.StatusCode != 503 || attempt == 50 {
			t.Fatalf("after recovery, attempt %d: %d", attempt, resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	found := 0
	for _, r := range ti.records(t, ti.codec.Topics().Events) {
		var ev schemas.EnvelopeEvent
		if err := ti.codec.Decode(context.Background(), r.Value, &ev); err == nil && ev.EventID == "evt_2" {
			found++
		}
	}
	if found == 0 {
		t.Fatal("the acknowledged webhook is not on the events topic")
	}
}

func (ti *testIngress) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(ti.api + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// waitReady waits for /readyz to answer 200: the topics are verified in
// the background after Run listens.
func (ti *testIngress) waitReady(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, text := ti.get(t, "/readyz")
		if resp.StatusCode == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz %d %s", resp.StatusCode, text)
		}
	}
}

func TestOpsEndpoints(t *testing.T) {
	ti := start(t, func(c *Config) {
		c.Ready = func(context.Context) error { return nil }
	})
	if resp, _ := ti.get(t, "/healthz"); resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	ti.waitReady(t)
	post(t, ti.url+"/webhooks/sim", http.Header{}, []byte("{}"))
	post(t, ti.url+"/no/such/route", http.Header{}, nil)
	_, text := ti.get(t, "/metrics")
	for _, want := range []string{`esignflow_ingress_requests_total{code="401",endpoint="sim"} 1`, `esignflow_ingress_verification_failures_total{provider="sim",reason="missing"} 1`,
		`esignflow_ingress_http_request_duration_seconds_count{code="401",listener="webhooks",route="POST /webhooks/{provider}"} 1`,
		`esignflow_ingress_http_request_duration_seconds_count{code="404",listener="webhooks",route="unmatched"} 1`} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	ti.redis.Client.Close()
	if resp, _ := ti.get(t, "/readyz"); resp.StatusCode != 503 {
		t.Fatalf("readyz with Redis gone: %d", resp.StatusCode)
	}
}

func TestOverloadIsRefused(t *testing.T) {
	in := &Ingress{slots: make(chan struct{}, 1)}
	m, _ := newMetrics(promRegistry())
	in.m = m
	release := make(chan struct{})
	entered := make(chan struct{})
	h := in.bounded(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
	})
	go h(newRecorder(), httptestRequest())
	<-entered
	rec := newRecorder()
	h(rec, httptestRequest())
	close(release)
	if rec.code != http.StatusServiceUnavailable || rec.header.Get("Retry-After") == "" {
		t.Fatalf("second request while one is in flight: %d", rec.code)
	}
}

func TestSigningRequestIdempotency(t *testing.T) {
	ti := start(t, nil)
	valid := []byte(`{"tenant":"acme","documents":[{"name":"nda.pdf","uri":"s3://docs/nda.pdf","sha256":"` + strings.Repeat("ab", 32) + `"}],"recipients":[{"id":"r1","name":"Ann","email":"ann@example.com"}],"metadata":{"crm":"7"}}`)
	send := func(key string, body []byte) (*http.Response, string) {
		h := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + acmeToken}}
		if key != "" {
			h.Set("Idempotency-Key", key)
		}
		return post(t, ti.api+"/v1/signing-requests", h, body)
	}
	resp, first := send("k1", valid)
	if resp.StatusCode != 202 || !strings.Contains(first, `"request_id":"acme:k1"`) {
		t.Fatalf("first: %d %s", resp.StatusCode, first)
	}
	resp, again := send("k1", valid)
	if resp.StatusCode != 202 || again != first || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %q", resp.StatusCode, again)
	}
	if resp, _ := send("k1", bytes.Replace(valid, []byte("nda.pdf\""), []byte("msa.pdf\""), 1)); resp.StatusCode != 422 {
		t.Fatalf("same key, other body: %d", resp.StatusCode)
	}
	if resp, _ := send("", valid); resp.StatusCode != 400 {
		t.Fatalf("no key: %d", resp.StatusCode)
	}
	canon, _ := Canonical(valid)
	inflight, _ := json.Marshal(idemRecord{Hash: hashOf(canon)})
	ti.redis.Client.Set(context.Background(), ti.redis.Prefix+"idem:acme:k2", inflight, time.Minute)
	if resp, _ := send("k2", valid); resp.StatusCode != 409 {
		t.Fatalf("in flight: %d", resp.StatusCode)
	}
	bad := []byte(`{"documents":[{"name":""}],"recipients":[{"id":"r1","email":"nope","auth":"SMS"},{"id":"r1","name":"B","email":"b@example.com","auth":"RETINA"}]}`)
	resp, text := send("k3", bad)
	if resp.StatusCode != 400 {
		t.Fatalf("invalid: %d", resp.StatusCode)
	}
	var p struct {
		Errors []FieldError `json:"errors"`
	}
	if err := json.Unmarshal([]byte(text), &p); err != nil {
		t.Fatal(err)
	}
	fields := map[string]bool{}
	for _, e := range p.Errors {
		fields[e.Field] = true
	}
	for _, f := range []string{"documents[0].name", "documents[0]", "recipients[0].name", "recipients[0].email", "recipients[0].phone", "recipients[1].id", "recipients[1].auth"} {
		if !fields[f] {
			t.Errorf("no error for %s in %s", f, text)
		}
	}
	if resp, _ := send("k3", valid); resp.StatusCode != 202 {
		t.Fatalf("a corrected body may reuse the key of a refused one: %d", resp.StatusCode)
	}
	recs := ti.records(t, ti.codec.Topics().Requests)
	if len(recs) != 2 {
		t.Fatalf("%d requests published, want 2 (k1 once, k3)", len(recs))
	}
	var req schemas.SigningRequest
	for _, r := range recs {
		if string(r.Key) == "acme:k1" {
			if err := ti.codec.Decode(context.Background(), r.Value, &req); err != nil {
				t.Fatal(err)
			}
		}
	}
	if req.RequestID != "acme:k1" || req.Tenant != "acme" || req.Recipients[0].Auth != schemas.AuthEmail || req.Recipients[0].RoutingOrder != 1 {
		t.Fatalf("published request: %+v", req)
	}
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// A handler releases or completes only its own claim on an Idempotency-Key:
// one that outlived its claim (inFlightTTL) must not delete or overwrite
// the claim of the later request that took the key.
func TestClaimReleaseIsCompareAndDelete(t *testing.T) {
	r := redistest.New(t)
	ctx := context.Background()
	key := r.Prefix + "idem:acme:order-1"
	mine, theirs := []byte(`{"h":"x","n":"mine"}`), []byte(`{"h":"x","n":"theirs"}`)
	if err := r.Client.Set(ctx, key, theirs, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := releaseClaim(ctx, r.Client, key, mine); err != nil || ok {
		t.Fatalf("released another's claim: %v %v", ok, err)
	}
	if ok, err := completeClaim(ctx, r.Client, key, mine, []byte(`{"d":true}`), time.Hour); err != nil || ok {
		t.Fatalf("completed another's claim: %v %v", ok, err)
	}
	if got, _ := r.Client.Get(ctx, key).Bytes(); string(got) != string(theirs) {
		t.Fatalf("the later claim was touched: %s", got)
	}
	if ok, err := completeClaim(ctx, r.Client, key, theirs, []byte(`{"d":true}`), time.Hour); err != nil || !ok {
		t.Fatalf("its own claim not completed: %v %v", ok, err)
	}
	if ttl := r.Client.PTTL(ctx, key).Val(); ttl < 59*time.Minute {
		t.Fatalf("completed record's TTL %s, want the idempotency TTL", ttl)
	}
	if err := r.Client.Set(ctx, key, mine, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := releaseClaim(ctx, r.Client, key, mine); err != nil || !ok {
		t.Fatalf("its own claim not released: %v %v", ok, err)
	}
	if n := r.Client.Exists(ctx, key).Val(); n != 0 {
		t.Fatal("released claim still there")
	}
}
