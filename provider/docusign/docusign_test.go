package docusign_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/envelope/envelopetest"
	"github.com/esignflow/esignflow/provider/docusign"
	"github.com/esignflow/esignflow/schemas"
)

// The key is used as its UTF-8 bytes, not base64-decoded. The expected
// signature was computed with
// `openssl dgst -sha256 -mac HMAC -macopt key:<key> -binary testdata/envelope-completed.json | base64`.
const (
	key     = "Zk9mQ3Jlc3RTZWNyZXRLZXkxMjM0NTY3ODkw"
	wantSig = "inhgpfKFCc3tA2Jqge1hMWg21FRbMtp4UiC0Czb6k8c="
)

func body(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/envelope-completed.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerify(t *testing.T) {
	b := body(t)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name string
		keys [][]byte
		h    http.Header
		body []byte
		want error
	}{
		{"valid", [][]byte{[]byte(key)}, hdr("X-DocuSign-Signature-1", wantSig), b, nil},
		{"second header, rotated key", [][]byte{[]byte("old"), []byte(key)}, hdr("X-DocuSign-Signature-1", "AAAA", "X-DocuSign-Signature-2", wantSig), b, nil},
		{"key must not be base64-decoded", [][]byte{[]byte("fOfCrestSecretKey1234567890")}, hdr("X-DocuSign-Signature-1", wantSig), b, docusign.ErrNoMatch},
		{"tampered body", [][]byte{[]byte(key)}, hdr("X-DocuSign-Signature-1", wantSig), append([]byte(" "), b...), docusign.ErrNoMatch},
		{"no header", [][]byte{[]byte(key)}, hdr(), b, docusign.ErrNoSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := docusign.Verify(tt.keys, tt.h, tt.body); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseEnvelopeCompleted(t *testing.T) {
	evs, err := docusign.Parse(body(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	ev := evs[0]
	want := time.Date(2026, 11, 27, 10, 15, 42, 517_000_000, time.UTC)
	if ev.EnvelopeID != "4c3c2a1e-7d2b-4c2f-9d1e-1f2e3d4c5b6a" || *ev.Status != schemas.StatusCompleted || *ev.RequestID != "req-42" ||
		*ev.Tenant != "acme" || !ev.OccurredAt.Equal(want) || ev.Provider != "docusign" || len(ev.EventID) != 64 {
		t.Fatalf("event: %+v", ev)
	}
	again, _ := docusign.Parse(body(t))
	if again[0].EventID != ev.EventID {
		t.Fatal("the derived event id is not stable across redeliveries")
	}
}

func TestParseRecipientAndIgnored(t *testing.T) {
	b := strings.Replace(string(body(t)), `"event": "envelope-completed"`, `"event": "recipient-delivered"`, 1)
	b = strings.Replace(b, `"userId"`, `"recipientId": "1", "userId"`, 1)
	evs, err := docusign.Parse([]byte(b))
	if err != nil {
		t.Fatal(err)
	}
	r := evs[0].Recipients
	if len(r) != 1 || r[0].RecipientID != "1" || r[0].Status != schemas.RecipientViewed || r[0].Email != "ann@example.com" {
		t.Fatalf("recipient-delivered: %+v", r)
	}
	purge := strings.Replace(string(body(t)), `"event": "envelope-completed"`, `"event": "envelope-purge"`, 1)
	purge = strings.Replace(purge, `"status": "completed",`, `"status": "",`, 1)
	if _, err := docusign.Parse([]byte(purge)); !errors.Is(err, docusign.ErrIgnored) {
		t.Fatalf("envelope-purge: %v, want ErrIgnored", err)
	}
	if _, err := docusign.Parse([]byte(`{"event":`)); !errors.Is(err, docusign.ErrMalformed) {
		t.Fatalf("truncated: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	b, _ := os.ReadFile("testdata/envelope-completed.json")
	f.Add(b)
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = docusign.Parse(b)
		_ = docusign.Verify([][]byte{[]byte(key)}, http.Header{"X-Docusign-Signature-1": {string(b)}}, b)
	})
}

// connect builds a Connect JSON SIM message for event about recipient
// rid (none when ""), with the summary's envelope status and signers.
func connect(event, rid, status, voidedReason string, signers ...string) []byte {
	var sg []string
	for _, s := range signers { // "id:status"
		id, st, _ := strings.Cut(s, ":")
		sg = append(sg, `{"recipientId":"`+id+`","email":"r`+id+`@example.com","name":"R`+id+`","status":"`+st+`","declinedReason":"no thanks"}`)
	}
	data := `"envelopeId":"env-1"`
	if rid != "" {
		data += `,"recipientId":"` + rid + `"`
	}
	return []byte(`{"event":"` + event + `","generatedDateTime":"2026-11-27T10:15:42.5170000Z","data":{` + data +
		`,"envelopeSummary":{"status":"` + status + `","voidedReason":"` + voidedReason + `","recipients":{"signers":[` + strings.Join(sg, ",") + `]},` +
		`"customFields":{"textCustomFields":[{"name":"esignflow_request_id","value":"req-7"},{"name":"esignflow_tenant","value":"acme"}]}}}}`)
}

// TestParseEvents: every JSON SIM event of PROVIDER-APIS.md section 1.12.
func TestParseEvents(t *testing.T) {
	type rcp struct {
		id string
		st schemas.RecipientStatus
	}
	tests := []struct {
		name    string
		body    []byte
		status  schemas.Status // "" for none
		rcps    []rcp
		reason  string
		ignored bool
	}{
		{"envelope-sent", connect("envelope-sent", "", "sent", "", "1:sent"), schemas.StatusSent, []rcp{{"1", schemas.RecipientSent}}, "", false},
		{"envelope-delivered", connect("envelope-delivered", "", "delivered", "", "1:delivered"), schemas.StatusDelivered, []rcp{{"1", schemas.RecipientViewed}}, "", false},
		{"envelope-completed", connect("envelope-completed", "", "completed", "", "1:completed", "2:completed"), schemas.StatusCompleted,
			[]rcp{{"1", schemas.RecipientSigned}, {"2", schemas.RecipientSigned}}, "", false},
		{"envelope-declined", connect("envelope-declined", "", "declined", "", "1:declined"), schemas.StatusDeclined, []rcp{{"1", schemas.RecipientDeclined}}, "", false},
		{"envelope-voided", connect("envelope-voided", "", "voided", "changed my mind", "1:sent"), schemas.StatusVoided, []rcp{{"1", schemas.RecipientSent}}, "changed my mind", false},
		{"envelope-voided by expiry", connect("envelope-voided", "", "voided", "Envelope has expired.", "1:sent"), schemas.StatusExpired, []rcp{{"1", schemas.RecipientSent}}, "Envelope has expired.", false},
		{"envelope-corrected is a correction", connect("envelope-corrected", "", "delivered", "", "1:sent"), schemas.StatusDelivered, []rcp{{"1", schemas.RecipientSent}}, "", false},
		{"envelope-resent is a resend", connect("envelope-resent", "", "sent", "", "1:sent"), schemas.StatusSent, []rcp{{"1", schemas.RecipientSent}}, "", false},
		{"recipient-sent", connect("recipient-sent", "1", "sent", "", "1:sent", "2:created"), schemas.StatusSent, []rcp{{"1", schemas.RecipientSent}}, "", false},
		{"recipient-resent", connect("recipient-resent", "1", "sent", "", "1:sent"), schemas.StatusSent, []rcp{{"1", schemas.RecipientSent}}, "", false},
		{"recipient-delivered", connect("recipient-delivered", "1", "sent", "", "1:delivered"), schemas.StatusSent, []rcp{{"1", schemas.RecipientViewed}}, "", false},
		{"recipient-completed", connect("recipient-completed", "2", "sent", "", "1:completed", "2:completed"), schemas.StatusSent, []rcp{{"2", schemas.RecipientSigned}}, "", false},
		{"recipient-declined", connect("recipient-declined", "1", "declined", "", "1:declined"), schemas.StatusDeclined, []rcp{{"1", schemas.RecipientDeclined}}, "no thanks", false},
		{"recipient-autoresponded is a bounce", connect("recipient-autoresponded", "1", "sent", "", "1:autoresponded"), schemas.StatusSent, []rcp{{"1", schemas.RecipientBounced}}, "", false},
		{"recipient-authenticationfailed is AUTH_FAILED", connect("recipient-authenticationfailed", "1", "sent", "", "1:delivered"), schemas.StatusSent,
			[]rcp{{"1", schemas.RecipientAuthFailed}}, "recipient 1 failed authentication", false},
		{"recipient-finish-later", connect("recipient-finish-later", "1", "delivered", "", "1:delivered"), schemas.StatusDelivered, []rcp{{"1", schemas.RecipientViewed}}, "", false},
		{"recipient-reassign replaces the named one", connect("recipient-reassign", "1", "sent", "", "1:completed", "2:completed", "3:sent"), schemas.StatusSent,
			[]rcp{{"1", schemas.RecipientReplaced}, {"2", schemas.RecipientSigned}, {"3<1", schemas.RecipientSent}}, "recipient 1 reassigned", false},
		{"recipient-reassign picks the newest unfinished one as the new one", connect("recipient-reassign", "1", "sent", "", "1:sent", "9:sent", "10:created"), schemas.StatusSent,
			[]rcp{{"1", schemas.RecipientReplaced}, {"9", schemas.RecipientSent}, {"10<1", schemas.RecipientCreated}}, "recipient 1 reassigned", false},
		{"recipient-delegate when the named one is no longer listed", connect("recipient-delegate", "1", "sent", "", "3:sent"), schemas.StatusSent,
			[]rcp{{"1", schemas.RecipientReplaced}, {"3<1", schemas.RecipientSent}}, "recipient 1 delegated", false},
		{"recipient-delegate without a candidate", connect("recipient-delegate", "1", "sent", "", "2:completed"), schemas.StatusSent,
			[]rcp{{"1", schemas.RecipientReplaced}, {"2", schemas.RecipientSigned}}, "recipient 1 delegated", false},
		{"envelope-purge", connect("envelope-purge", "", "", ""), "", nil, "", true},
		{"envelope-deleted", connect("envelope-deleted", "", "completed", ""), "", nil, "", true},
		{"envelope-discard", connect("envelope-discard", "", "created", ""), "", nil, "", true},
		{"recipient event without a recipient", connect("recipient-sent", "", "sent", ""), "", nil, "", true},
		{"unknown kind", connect("template-created", "", "sent", ""), "", nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := docusign.Parse(tt.body)
			if tt.ignored {
				if !errors.Is(err, docusign.ErrIgnored) {
					t.Fatalf("got %v, want ErrIgnored", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ev := evs[0]
			if ev.Status == nil || *ev.Status != tt.status {
				t.Errorf("status %v, want %s", ev.Status, tt.status)
			}
			var got []rcp
			for _, r := range ev.Recipients {
				id := r.RecipientID
				if r.Replaces != nil {
					id += "<" + *r.Replaces // "new<old"
				}
				got = append(got, rcp{id, r.Status})
			}
			wantKind := map[string]schemas.EventKind{"envelope-corrected": schemas.EventKindCorrected, "envelope-resent": schemas.EventKindResent}[ev.Type]
			if ev.Kind != wantKind {
				t.Errorf("kind %v, want %v", ev.Kind, wantKind)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.rcps) {
				t.Errorf("recipients %v, want %v", got, tt.rcps)
			}
			reason := ""
			if ev.Reason != nil {
				reason = *ev.Reason
			}
			if reason != tt.reason {
				t.Errorf("reason %q, want %q", reason, tt.reason)
			}
			if *ev.RequestID != "req-7" || *ev.Tenant != "acme" || ev.Metadata["esignflow_request_id"] != "req-7" || ev.Type != tt.name[:len(strings.Fields(tt.name)[0])] {
				t.Errorf("event %+v", ev)
			}
		})
	}
}

// connectAt is connect with the message generated sec seconds after 10:00.
func connectAt(sec int, event, rid, status string, signers ...string) []byte {
	at := time.Date(2026, 11, 27, 10, 0, sec, 0, time.UTC).Format("2006-01-02T15:04:05.0000000Z")
	return []byte(strings.Replace(string(connect(event, rid, status, "", signers...)), "2026-11-27T10:15:42.5170000Z", at, 1))
}

// TestConnectRecipientStories runs Connect messages shaped like DocuSign's
// through Parse and the state machine, as the processor does, in every
// order: a signer who fails the SMS code once and then signs, a bounced
// invitation whose address the sender corrects, a reassigned signer. Each
// envelope completes with every remaining recipient SIGNED. (Before, the
// bounce made the recipient FAILED for good, in the archived manifest of
// the completed envelope too.)
func TestConnectRecipientStories(t *testing.T) {
	stories := []struct {
		name     string
		messages [][]byte
		want     map[string]schemas.RecipientStatus
	}{
		{"sms code failed once, then signed", [][]byte{
			connectAt(0, "envelope-sent", "", "sent", "1:sent"),
			connectAt(1, "recipient-sent", "1", "sent", "1:sent"),
			connectAt(20, "recipient-delivered", "1", "delivered", "1:delivered"),
			connectAt(30, "recipient-authenticationfailed", "1", "delivered", "1:delivered"),
			connectAt(50, "recipient-completed", "1", "completed", "1:completed"),
			connectAt(51, "envelope-completed", "", "completed", "1:completed"),
		}, map[string]schemas.RecipientStatus{"1": schemas.RecipientSigned}},
		{"bounced, corrected, signed", [][]byte{
			connectAt(0, "envelope-sent", "", "sent", "1:sent"),
			connectAt(2, "recipient-autoresponded", "1", "sent", "1:autoresponded"),
			connectAt(10, "envelope-corrected", "", "sent", "1:sent"),
			connectAt(20, "recipient-delivered", "1", "delivered", "1:delivered"),
			connectAt(50, "recipient-completed", "1", "completed", "1:completed"),
			connectAt(51, "envelope-completed", "", "completed", "1:completed"),
		}, map[string]schemas.RecipientStatus{"1": schemas.RecipientSigned}},
		{"reassigned, the new signer signs", [][]byte{
			connectAt(0, "envelope-sent", "", "sent", "1:sent"),
			connectAt(20, "recipient-delivered", "1", "delivered", "1:delivered"),
			connectAt(30, "recipient-reassign", "1", "sent", "1:completed", "2:sent"),
			connectAt(40, "recipient-delivered", "2", "delivered", "2:delivered"),
			connectAt(50, "recipient-completed", "2", "completed", "2:completed"),
			connectAt(51, "envelope-completed", "", "completed", "2:completed"),
		}, map[string]schemas.RecipientStatus{"1": schemas.RecipientReplaced, "2": schemas.RecipientSigned}},
		// UNCONFIRMED what the summary says of the replaced one: if it
		// says completed, REPLACED still wins, in every order.
		{"reassigned, the old one still listed as completed", [][]byte{
			connectAt(0, "envelope-sent", "", "sent", "1:sent"),
			connectAt(30, "recipient-reassign", "1", "sent", "1:completed", "2:sent"),
			connectAt(50, "recipient-completed", "2", "completed", "1:completed", "2:completed"),
			connectAt(51, "envelope-completed", "", "completed", "1:completed", "2:completed"),
		}, map[string]schemas.RecipientStatus{"1": schemas.RecipientReplaced, "2": schemas.RecipientSigned}},
	}
	for _, st := range stories {
		t.Run(st.name, func(t *testing.T) {
			var evs []schemas.EnvelopeEvent
			for _, m := range st.messages {
				ev, err := docusign.Parse(m)
				if err != nil {
					t.Fatal(err)
				}
				evs = append(evs, ev...)
			}
			envelopetest.EveryOrder(evs, func(order []schemas.EnvelopeEvent) {
				var e envelope.Envelope
				for _, ev := range order {
					e, _ = e.Apply(ev, ev.OccurredAt)
				}
				got := map[string]schemas.RecipientStatus{}
				for _, r := range e.State.Recipients {
					got[r.RecipientID] = r.Status
				}
				if *e.State.Status != schemas.StatusCompleted || fmt.Sprint(got) != fmt.Sprint(st.want) {
					var types []string
					for _, ev := range order {
						types = append(types, ev.Type)
					}
					t.Fatalf("order %v: envelope %s, recipients %v, want COMPLETED %v", types, *e.State.Status, got, st.want)
				}
			})
		})
	}
}
