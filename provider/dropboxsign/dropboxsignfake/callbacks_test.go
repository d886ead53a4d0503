package dropboxsignfake_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider/dropboxsign/dropboxsignfake"
	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

// TestCallbacks runs signature requests to every end and checks that each
// callback is what Dropbox Sign posts — multipart with the json field,
// User-Agent, Content-MD5, the example payload's keys — that it verifies
// and parses with provider/dropboxsign into the right statuses, ties back
// to its request by metadata, and that each request's callbacks end in
// its true status.
func TestCallbacks(t *testing.T) {
	h := start(t, dropboxsignfake.Config{}, sim.Config{Step: 2 * time.Millisecond, DeclineRate: 0.25, VoidRate: 0.15, ExpireRate: 0.1, Seed: 1})
	const n = 24
	for i := range n {
		h.send(request(fmt.Sprint("req-", i), 1+i%3), "")
	}
	done := providertest.Settled(h.sim, n)
	providertest.WaitFor(t, 30*time.Second, "every request final and every callback delivered", func() bool {
		_, bad := h.hook.snapshot()
		return len(bad) > 0 || done()
	})
	cbs, bad := h.hook.snapshot()
	if len(bad) > 0 {
		t.Fatalf("%d callbacks failed provider/dropboxsign: %v", len(bad), bad[:min(3, len(bad))])
	}
	// The shape of Dropbox Sign's example callback (PROVIDER-APIS.md 2.7,
	// from the spec's EventCallbackAccountSignatureRequestSent.json).
	example, err := os.ReadFile("testdata/signature_request_sent.json")
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal(example, &want); err != nil {
		t.Fatal(err)
	}
	wantStatus := map[string]schemas.Status{
		"signature_request_sent": schemas.StatusSent, "signature_request_viewed": schemas.StatusViewed,
		"signature_request_signed": schemas.StatusPartiallySigned, "signature_request_all_signed": schemas.StatusCompleted,
		"signature_request_declined": schemas.StatusDeclined, "signature_request_canceled": schemas.StatusVoided,
		"signature_request_expired": schemas.StatusExpired,
	}
	types := map[string]int{}
	final := map[string]schemas.Status{} // request id → the final status its callbacks said
	for _, c := range cbs {
		typ := c.cb.Event.Type
		types[typ]++
		if c.header.Get("User-Agent") != "HelloSign API" || c.header.Get("Content-MD5") != contentMD5(c.body) {
			t.Fatalf("%s headers %v", typ, c.header)
		}
		for _, want := range []map[string]any{want, want["event"].(map[string]any), want["event"].(map[string]any)["event_metadata"].(map[string]any),
			want["signature_request"].(map[string]any)} {
			for k := range want {
				if !hasKey(c.raw, k) {
					t.Fatalf("%s lacks %q: %s", typ, k, c.json)
				}
			}
		}
		ev := c.raw["event"].(map[string]any)
		md := ev["event_metadata"].(map[string]any)
		if _, ok := ev["event_time"].(string); !ok || md["reported_for_account_id"] != dropboxsignfake.DefaultAccountID || md["reported_for_app_id"] != nil {
			t.Fatalf("event %v", ev)
		}
		sr := c.raw["signature_request"].(map[string]any)
		for _, k := range specKeys {
			if _, ok := sr[k]; !ok {
				t.Fatalf("%s: signature_request lacks %q", typ, k)
			}
		}
		signer := typ == "signature_request_viewed" || typ == "signature_request_signed" || typ == "signature_request_declined"
		if signer != (c.cb.Event.Metadata.RelatedSignatureID != "") {
			t.Fatalf("%s related_signature_id %q", typ, c.cb.Event.Metadata.RelatedSignatureID)
		}
		if typ == "signature_request_downloadable" {
			if c.events != nil || !c.cb.SignatureRequest.IsComplete {
				t.Fatalf("downloadable: %+v", c.cb.SignatureRequest)
			}
			continue
		}
		if len(c.events) != 1 {
			t.Fatalf("%s parsed into %d events", typ, len(c.events))
		}
		e := c.events[0]
		if e.Status == nil || *e.Status != wantStatus[typ] {
			t.Fatalf("%s parsed as %v", typ, e.Status)
		}
		if e.RequestID == nil || !strings.HasPrefix(*e.RequestID, "req-") || e.Tenant == nil || *e.Tenant != "acme" {
			t.Fatalf("%s: the request id and tenant did not travel in metadata: %+v", typ, e)
		}
		if len(e.Recipients) != len(c.cb.SignatureRequest.Signatures) || len(e.Recipients) == 0 {
			t.Fatalf("%s recipients %+v", typ, e.Recipients)
		}
		if st := *e.Status; st == schemas.StatusCompleted || st == schemas.StatusDeclined || st == schemas.StatusVoided || st == schemas.StatusExpired {
			if prev, ok := final[e.EnvelopeID]; ok {
				t.Fatalf("%s: two final callbacks, %s and %s", e.EnvelopeID, prev, st)
			}
			final[e.EnvelopeID] = st
		}
		if typ == "signature_request_all_signed" {
			for _, r := range e.Recipients {
				if r.Status != schemas.RecipientSigned {
					t.Fatalf("all_signed with %+v", e.Recipients)
				}
			}
		}
	}
	for typ := range wantStatus {
		if types[typ] == 0 {
			t.Errorf("no %s among %v", typ, types)
		}
	}
	if types["signature_request_downloadable"] != types["signature_request_all_signed"] {
		t.Errorf("%d downloadable for %d all_signed", types["signature_request_downloadable"], types["signature_request_all_signed"])
	}
	fates := map[schemas.Status]int{}
	for _, tr := range h.sim.Truth() {
		fates[tr.Status]++
		if final[tr.ID] != tr.Status {
			t.Errorf("request %s is %s; its callbacks said %s", tr.ID, tr.Status, final[tr.ID])
		}
	}
	if len(fates) != 4 {
		t.Fatalf("fates %v: want each of completed, declined, voided, expired", fates)
	}
	for k, c := range h.hook.seen {
		if c != 1 {
			t.Errorf("callback %s delivered %d times without a fault", k, c)
		}
	}
}

// TestCallbackRetriedWithoutReply: a callback answered 200 without "Hello
// API Event Received" is retried, with the same event_time and
// event_hash; one answered with it is not.
func TestCallbackRetriedWithoutReply(t *testing.T) {
	for _, withReply := range []bool{false, true} {
		t.Run(fmt.Sprint("reply=", withReply), func(t *testing.T) {
			h := start(t, dropboxsignfake.Config{}, sim.Config{Step: 2 * time.Millisecond})
			tries := map[string]int{}
			h.hook.noReply = func(c received) bool {
				tries[c.key()]++ // under the listener's lock
				return !withReply && tries[c.key()] == 1
			}
			h.send(request("retry", 1), "")
			providertest.WaitFor(t, 20*time.Second, "every callback delivered", providertest.Settled(h.sim, 1))
			all := h.hook.deliveries()
			cbs, bad := h.hook.snapshot()
			if len(bad) > 0 {
				t.Fatal(bad)
			}
			st := h.sim.Stats()
			// sent, viewed, signed, all_signed, downloadable
			if len(cbs) != 5 || st.Webhooks != 5 || st.Delivered != 5 {
				t.Fatalf("%d callbacks accepted, stats %+v", len(cbs), st)
			}
			wantAttempts := 5
			if !withReply {
				wantAttempts = 10
			}
			if len(all) != wantAttempts || st.Attempts != int64(wantAttempts) || st.FailedAttempts != int64(wantAttempts-5) {
				t.Fatalf("%d deliveries, stats %+v; want %d", len(all), st, wantAttempts)
			}
			first := map[string]received{}
			for _, c := range all {
				if p, ok := first[c.key()]; ok {
					if p.cb.Event.Hash != c.cb.Event.Hash || !bytes.Equal(p.body, c.body) {
						t.Fatalf("the retry of %s differs: %s then %s", c.key(), p.json, c.json)
					}
					continue
				}
				first[c.key()] = c
			}
		})
	}
}

// TestWebhookFaultsApply: the engine's drop and duplicate faults apply to
// callbacks; a duplicate is the same callback (same event_hash).
func TestWebhookFaultsApply(t *testing.T) {
	h := start(t, dropboxsignfake.Config{}, sim.Config{Step: time.Millisecond, Seed: 5, Faults: sim.Faults{Drop: 0.3, Duplicate: 0.3, Delay: 0.3, MaxDelay: 20 * time.Millisecond}})
	for i := range 10 {
		h.send(request(fmt.Sprint("f", i), 1), "")
	}
	providertest.WaitFor(t, 30*time.Second, "every callback delivered or dropped", providertest.Settled(h.sim, 10))
	st := h.sim.Stats()
	cbs, bad := h.hook.snapshot()
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	if st.Dropped == 0 || st.Duplicated == 0 || st.Delayed == 0 || int64(len(cbs)) != st.Webhooks-st.Dropped+st.Duplicated {
		t.Fatalf("received %d; stats %+v", len(cbs), st)
	}
	twice := 0
	for _, c := range h.hook.seen {
		if c == 2 {
			twice++
		}
	}
	if int64(twice) != st.Duplicated {
		t.Fatalf("%d callbacks twice, %d duplicated", twice, st.Duplicated)
	}
}

// hasKey reports whether k is a key of m or of an object nested in it.
func hasKey(m map[string]any, k string) bool {
	if _, ok := m[k]; ok {
		return true
	}
	for _, v := range m {
		if n, ok := v.(map[string]any); ok && hasKey(n, k) {
			return true
		}
	}
	return false
}

// TestBounceCallback: the engine's bounce fault is sent as
// signature_request_email_bounce about the signer, which provider/dropboxsign
// reads as BOUNCED; the signer goes on and signs.
func TestBounceCallback(t *testing.T) {
	h := start(t, dropboxsignfake.Config{}, sim.Config{Step: 2 * time.Millisecond, Faults: sim.Faults{BounceOnce: 1, AuthFailOnce: 1}})
	sr := h.send(request("bounce", 1), "")
	providertest.WaitFor(t, 20*time.Second, "every callback delivered", providertest.Settled(h.sim, 1))
	cbs, bad := h.hook.snapshot()
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	var types []string
	bounced := false
	for _, c := range cbs {
		types = append(types, c.cb.Event.Type)
		if c.cb.Event.Type != "signature_request_email_bounce" {
			continue
		}
		if c.cb.Event.Metadata.RelatedSignatureID != sr.Signatures[0].ID || len(c.events) != 1 || len(c.events[0].Recipients) != 1 ||
			c.events[0].Recipients[0].Status != schemas.RecipientBounced {
			t.Fatalf("bounce callback %s parsed as %+v", c.json, c.events)
		}
		bounced = true
	}
	if !bounced || len(cbs) != 6 { // sent, email_bounce, viewed, signed, all_signed, downloadable
		t.Fatalf("callbacks %v", types)
	}
	if tr := h.sim.Truth(); tr[0].Status != schemas.StatusCompleted {
		t.Fatalf("truth %+v", tr)
	}
}
