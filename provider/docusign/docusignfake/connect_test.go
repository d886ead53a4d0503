package docusignfake_test

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider/docusign"
	"github.com/esignflow/esignflow/provider/docusign/docusignfake"
	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

// TestConnectMessages runs envelopes to their ends and checks that every
// Connect message verifies and parses with provider/docusign, has the
// shape of the real payload (testdata/envelope-completed.json), and that
// the last envelope event of each envelope is the truth.
func TestConnectMessages(t *testing.T) {
	h := start(t, docusignfake.Config{}, sim.Config{Step: 2 * time.Millisecond, DeclineRate: 0.25, VoidRate: 0.15, ExpireRate: 0.1, Seed: 3})
	const n = 24
	for i := range n {
		status := "sent"
		if i%2 == 1 {
			status = "created" // draft, sent by PUT
		}
		id := h.create(definition(fmt.Sprint("req-", i), status, 1+i%3))
		if status == "created" {
			if code, out := h.restJSON("PUT", "/envelopes/"+id, map[string]string{"status": "sent"}); code != 200 {
				t.Fatalf("send: %d %v", code, out)
			}
		}
	}
	providertest.WaitFor(t, 30*time.Second, "every envelope final and every message delivered", providertest.Settled(h.sim, n))
	msgs, bad := h.hook.snapshot()
	if len(bad) > 0 {
		t.Fatalf("%d messages failed provider/docusign: %v", len(bad), bad[:min(3, len(bad))])
	}
	for _, m := range msgs {
		if m.header.Get("X-DocuSign-Signature-1") == "" || m.header.Get("X-DocuSign-Signature-2") == "" || m.header.Get("X-DocuSign-Signature-3") != "" {
			t.Fatalf("want one signature header per key: %v", m.header)
		}
	}

	// The shape of the real payload: the same top-level and data keys.
	real, err := os.ReadFile("../testdata/envelope-completed.json")
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal(real, &want); err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	last := map[string]message{} // envelope id → its last envelope-* message
	for _, m := range msgs {
		ev := m.raw["event"].(string)
		types[ev]++
		if m.raw["apiVersion"] != "v2.1" || m.raw["retryCount"] != float64(0) || m.raw["configurationId"] != want["configurationId"] {
			t.Fatalf("header fields: %v", m.raw)
		}
		for k := range want {
			if _, ok := m.raw[k]; !ok {
				t.Fatalf("message lacks %q: %s", k, m.body)
			}
		}
		data, wantData := m.raw["data"].(map[string]any), want["data"].(map[string]any)
		for k := range wantData {
			if _, ok := data[k]; !ok {
				t.Fatalf("data lacks %q: %s", k, m.body)
			}
		}
		allStrings(t, ev+".data", data)
		e := m.events[0]
		if e.RequestID == nil || !strings.HasPrefix(*e.RequestID, "req-") || e.Tenant == nil || *e.Tenant != "acme" {
			t.Fatalf("%s: request id and tenant not read back from the custom fields: %+v", ev, e)
		}
		if strings.HasPrefix(ev, "recipient-") && (data["recipientId"] == "" || len(e.Recipients) != 1 || e.Recipients[0].Email == "") {
			t.Fatalf("%s without its recipient: %s", ev, m.body)
		}
		if strings.HasPrefix(ev, "envelope-") {
			if p, ok := last[e.EnvelopeID]; !ok || !e.OccurredAt.Before(p.events[0].OccurredAt) {
				last[e.EnvelopeID] = m
			}
		}
	}
	for _, ev := range []string{"envelope-sent", "envelope-delivered", "envelope-completed", "envelope-declined", "envelope-voided",
		"recipient-sent", "recipient-delivered", "recipient-completed", "recipient-declined"} {
		if types[ev] == 0 {
			t.Errorf("no %s among %v", ev, types)
		}
	}
	// Each message is a distinct event for esignflow's dedup.
	for id, c := range h.hook.seen {
		if c != 1 {
			t.Errorf("event %s delivered %d times without a duplicate fault", id, c)
		}
	}
	// DocuSign voids what expires, saying so in voidedReason, which
	// provider/docusign reads as EXPIRED.
	fates := map[schemas.Status]int{}
	for _, tr := range h.sim.Truth() {
		fates[tr.Status]++
		m, ok := last[tr.ID]
		if !ok || m.events[0].Status == nil || *m.events[0].Status != tr.Status {
			t.Errorf("envelope %s is %s; its last Connect envelope event: %s", tr.ID, tr.Status, m.body)
		}
	}
	if len(fates) != 4 {
		t.Fatalf("fates %v: want each of completed, declined, voided, expired", fates)
	}
}

// TestConnectRetryCount fails the first delivery of every message: the
// retry carries retryCount 1, is signed anew and is the same event.
func TestConnectRetryCount(t *testing.T) {
	h := start(t, docusignfake.Config{HMACKeys: [][]byte{hmacKeys[1]}}, sim.Config{Step: 2 * time.Millisecond})
	h.hook.fail = func(m message) bool { return m.raw["retryCount"] == float64(0) }
	h.create(definition("r", "sent", 1))
	providertest.WaitFor(t, 20*time.Second, "every message delivered", providertest.Settled(h.sim, 1))
	msgs, bad := h.hook.snapshot()
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	var events []string
	for _, m := range msgs {
		if m.raw["retryCount"] != float64(1) {
			t.Fatalf("retryCount %v", m.raw["retryCount"])
		}
		events = append(events, m.raw["event"].(string))
	}
	sort.Strings(events)
	want := []string{"envelope-completed", "envelope-delivered", "envelope-sent", "recipient-completed", "recipient-delivered", "recipient-sent"}
	if fmt.Sprint(events) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", events, want)
	}
	if st := h.sim.Stats(); st.Webhooks != 6 || st.FailedAttempts != 6 {
		t.Fatalf("stats %+v", st)
	}
}

func TestConnectWithoutHMAC(t *testing.T) {
	h := start(t, docusignfake.Config{HMACKeys: [][]byte{}}, sim.Config{})
	h.hook.fail = nil
	h.create(definition("r", "sent", 1))
	providertest.WaitFor(t, 10*time.Second, "the first messages", func() bool {
		_, bad := h.hook.snapshot()
		return len(bad) >= 2
	})
	_, bad := h.hook.snapshot()
	if !strings.Contains(bad[0], docusign.ErrNoSignature.Error()) {
		t.Fatalf("unsigned messages: %v", bad)
	}
}
