package docusignfake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/provider/docusign/docusignfake"
	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

// TestTimeoutAfterActingLeavesTheEnvelope: a create that times out after
// acting leaves one envelope, which the transaction id finds.
func TestTimeoutAfterActingLeavesTheEnvelope(t *testing.T) {
	h := start(t, docusignfake.Config{}, sim.Config{Faults: sim.Faults{APITimeout: 1}})
	raw, _ := json.Marshal(definition("t1", "sent", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", h.sim.URL()+"/restapi/v2.1/accounts/"+docusignfake.DefaultAccountID+"/envelopes", bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+h.token)
	if resp, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			resp.Body.Close()
		}
		t.Fatalf("create answered (%v), want a timeout", err)
	}
	if err := h.sim.SetFaults(sim.Faults{}); err != nil {
		t.Fatal(err)
	}
	code, out := h.restJSON("GET", "/envelopes?transaction_ids=txn-t1", nil)
	if code != 200 || out["totalSetSize"] != "1" {
		t.Fatalf("lookup after the timeout: %d %v", code, out)
	}
	if env := out["envelopes"].([]any)[0].(map[string]any); env["status"] != "sent" {
		t.Fatalf("the timed-out create did not act: %v", env)
	}
	if st := h.sim.Stats(); st.APITimeouts != 1 || st.Envelopes != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestInjectedUnavailableActsNot(t *testing.T) {
	h := start(t, docusignfake.Config{}, sim.Config{Faults: sim.Faults{APIError: 1}})
	code, hd, raw := h.rest("POST", "/envelopes", definition("u1", "sent", 1))
	if code != http.StatusServiceUnavailable || hd.Get("X-RateLimit-Limit") == "" || !strings.Contains(string(raw), `"errorCode"`) {
		t.Fatalf("got %d %s %v", code, raw, hd)
	}
	if tr := h.sim.Truth(); len(tr) != 0 {
		t.Fatalf("a 503 created %v", tr)
	}
}

func TestWebhookFaultsApply(t *testing.T) {
	h := start(t, docusignfake.Config{}, sim.Config{Step: time.Millisecond, Seed: 5, Faults: sim.Faults{Drop: 0.3, Duplicate: 0.3}})
	for i := range 10 {
		h.create(definition(string(rune('a'+i)), "sent", 1))
	}
	providertest.WaitFor(t, 30*time.Second, "every message delivered or dropped", providertest.Settled(h.sim, 10))
	st := h.sim.Stats()
	msgs, bad := h.hook.snapshot()
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	if st.Dropped == 0 || st.Duplicated == 0 || int64(len(msgs)) != st.Webhooks-st.Dropped+st.Duplicated {
		t.Fatalf("received %d; stats %+v", len(msgs), st)
	}
	twice := 0
	for _, c := range h.hook.seen {
		if c == 2 {
			twice++
		}
	}
	if int64(twice) != st.Duplicated {
		t.Fatalf("%d events twice, %d duplicated", twice, st.Duplicated)
	}
}

func TestDownloadsAndAuditEvents(t *testing.T) {
	h := start(t, docusignfake.Config{}, sim.Config{Step: time.Millisecond})
	id := h.create(definition("d1", "sent", 2))
	providertest.WaitFor(t, 20*time.Second, "completion", providertest.Settled(h.sim, 1))
	for _, doc := range []string{"combined", "certificate", "1"} {
		code, hd, body := h.rest("GET", "/envelopes/"+id+"/documents/"+doc, nil)
		if code != 200 || hd.Get("Content-Type") != "application/pdf" || !bytes.HasPrefix(body, []byte("%PDF")) ||
			hd.Get("X-RateLimit-Remaining") == "" || hd.Get("Digest") != "" || !strings.Contains(hd.Get("Content-Disposition"), `documentid="`+doc+`"`) {
			t.Fatalf("%s: %d %v %.40q", doc, code, hd, body)
		}
	}
	if code, out := h.restJSON("GET", "/envelopes/"+id+"/documents/9", nil); code != 400 || out["errorCode"] != "DOCUMENT_DOES_NOT_EXIST" {
		t.Fatalf("unknown document: %d %v", code, out)
	}
	code, out := h.restJSON("GET", "/envelopes/"+id+"/audit_events", nil)
	if code != 200 {
		t.Fatalf("audit: %d %v", code, out)
	}
	allStrings(t, "audit", out)
	var actions []string
	for _, ev := range out["auditEvents"].([]any) {
		fields := map[string]string{}
		for _, f := range ev.(map[string]any)["eventFields"].([]any) {
			nv := f.(map[string]any)
			fields[nv["name"].(string)] = nv["value"].(string)
		}
		if fields["logTime"] == "" || fields["EnvelopeStatus"] == "" {
			t.Fatalf("event fields %v", fields)
		}
		actions = append(actions, fields["Action"])
	}
	if got := strings.Join(actions, ","); !strings.HasPrefix(got, "Registered,Sent Invitations,") || !strings.HasSuffix(got, "Signed,Completed") || strings.Count(got, "Signed") != 2 {
		t.Fatalf("actions %s", got)
	}
	_, out = h.restJSON("GET", "/envelopes/"+id+"/recipients", nil)
	s := out["signers"].([]any)[0].(map[string]any)
	if s["status"] != "completed" || s["signedDateTime"] == nil || s["recipientAuthenticationStatus"] == nil {
		t.Fatalf("signer after completion: %v", s)
	}
}

func TestCorruptDownload(t *testing.T) {
	h := start(t, docusignfake.Config{}, sim.Config{})
	id := h.create(definition("c1", "sent", 1))
	_, _, clean := h.rest("GET", "/envelopes/"+id+"/documents/combined", nil)
	if err := h.sim.SetFaults(sim.Faults{CorruptDownload: 1}); err != nil {
		t.Fatal(err)
	}
	_, _, bad := h.rest("GET", "/envelopes/"+id+"/documents/combined", nil)
	if len(bad) != len(clean) || bytes.Equal(bad, clean) {
		t.Fatal("the corrupt-download fault did not flip a byte")
	}
}

func TestTruthEndpoint(t *testing.T) {
	h := start(t, docusignfake.Config{}, sim.Config{})
	id := h.create(definition("truth-1", "sent", 1))
	code, _, raw := h.call("GET", "/v1/_truth", "", nil)
	var tr []sim.Truth
	if err := json.Unmarshal(raw, &tr); err != nil || code != 200 {
		t.Fatalf("truth: %d %s %v", code, raw, err)
	}
	if len(tr) != 1 || tr[0].ID != id || tr[0].RequestID != "truth-1" || tr[0].Status != schemas.StatusSent {
		t.Fatalf("truth = %+v", tr)
	}
	if code, _, _ := h.call("GET", "/v1/_stats", "", nil); code != 200 {
		t.Fatalf("stats: %d", code)
	}
}

// TestStateSurvivesRestart: transaction ids, custom fields and signers'
// settings are kept in the state file.
func TestStateSurvivesRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state.json")
	d, err := docusignfake.New(docusignfake.Config{PublicKey: &testKey().PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sim.Config{Addr: "127.0.0.1:0", Dialect: d, StateFile: file, Step: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-s.Ready()
	h := &harness{t: t, sim: s, d: d}
	h.token = h.getToken(h.claims())
	id := h.create(definition("keep", "created", 2))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	h2 := start(t, docusignfake.Config{}, sim.Config{StateFile: file})
	_, out := h2.restJSON("GET", "/envelopes?transaction_ids=txn-keep&include=recipients,custom_fields", nil)
	envs := out["envelopes"].([]any)
	if len(envs) != 1 {
		t.Fatalf("after restart: %v", out)
	}
	env := envs[0].(map[string]any)
	signers := env["recipients"].(map[string]any)["signers"].([]any)
	if env["envelopeId"] != id || env["status"] != "created" || env["customFields"].(map[string]any)["textCustomFields"].([]any)[0].(map[string]any)["value"] != "keep" ||
		signers[1].(map[string]any)["smsAuthentication"] == nil || signers[0].(map[string]any)["recipientIdGuid"] == "" {
		t.Fatalf("after restart: %v", env)
	}
	if code, _ := h2.restJSON("PUT", "/envelopes/"+id, map[string]string{"status": "sent"}); code != 200 {
		t.Fatalf("send after restart: %d", code)
	}
}

var _ = fakes.Sim
