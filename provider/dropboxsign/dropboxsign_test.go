package dropboxsign_test

import (
	"bytes"
	"errors"
	"mime/multipart"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/internal/envelope/envelopetest"
	"github.com/esignflow/esignflow/provider/dropboxsign"
	"github.com/esignflow/esignflow/schemas"
)

// The event_hash in testdata was computed with
// `printf '%s' 1795774542signature_request_all_signed | openssl dgst -sha256 -mac HMAC -macopt key:dbx-api-key-0123`.
const apiKey = "dbx-api-key-0123"

func raw(t testing.TB) []byte {
	b, err := os.ReadFile("testdata/all_signed.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func multipartBody(t *testing.T, jsonBody []byte) (string, []byte) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if err := w.WriteField("json", string(jsonBody)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return w.FormDataContentType(), buf.Bytes()
}

func TestAllSignedCallback(t *testing.T) {
	ct, body := multipartBody(t, raw(t))
	for _, tc := range []struct {
		name, ct string
		body     []byte
	}{{"multipart", ct, body}, {"plain json", "application/json", raw(t)}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dropboxsign.Decode(tc.ct, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if err := dropboxsign.Verify([][]byte{[]byte("old-key"), []byte(apiKey)}, c); err != nil {
				t.Fatalf("verify: %v", err)
			}
			if err := dropboxsign.Verify([][]byte{[]byte("wrong")}, c); !errors.Is(err, dropboxsign.ErrNoMatch) {
				t.Fatalf("wrong key: %v", err)
			}
			evs, err := dropboxsign.Parse(c)
			if err != nil {
				t.Fatal(err)
			}
			ev := evs[0]
			if ev.EnvelopeID != "fa5c8a0b0f492d768749333ad6fcc214c111e967" || *ev.Status != schemas.StatusCompleted || *ev.RequestID != "req-7" || len(ev.Recipients) != 2 || ev.Recipients[1].Status != schemas.RecipientSigned || ev.OccurredAt.Unix() != 1795774542 {
				t.Fatalf("event: %+v", ev)
			}
		})
	}
}

func TestTamperedEventType(t *testing.T) {
	c, err := dropboxsign.Decode("application/json", []byte(strings.Replace(string(raw(t)), "signature_request_all_signed", "signature_request_declined", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := dropboxsign.Verify([][]byte{[]byte(apiKey)}, c); !errors.Is(err, dropboxsign.ErrNoMatch) {
		t.Fatalf("tampered type verified: %v", err)
	}
}

func TestCallbackTestIgnored(t *testing.T) {
	c, err := dropboxsign.Decode("application/json", []byte(`{"event":{"event_time":"1","event_type":"callback_test","event_hash":"00"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dropboxsign.Parse(c); !errors.Is(err, dropboxsign.ErrIgnored) {
		t.Fatalf("callback_test: %v", err)
	}
}

func FuzzDecodeParse(f *testing.F) {
	f.Add("application/json", raw(f))
	f.Add("multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"json\"\r\n\r\n{}\r\n--x--"))
	f.Fuzz(func(t *testing.T, ct string, b []byte) {
		c, err := dropboxsign.Decode(ct, b)
		if err != nil {
			return
		}
		_ = dropboxsign.Verify([][]byte{[]byte(apiKey)}, c)
		_, _ = dropboxsign.Parse(c)
	})
}

// callback builds a callback shaped like Dropbox Sign's (PROVIDER-APIS.md
// 2.7): event_type about related (a signature_id, "" for none) at
// 1795774000 + sec, with signatures "id:status_code" or
// "id:status_code:reassigned_from".
func callback(t *testing.T, eventType, related string, sec int, signatures ...string) dropboxsign.Callback {
	t.Helper()
	rel := "null"
	if related != "" {
		rel = `"` + related + `"`
	}
	var sigs []string
	for _, s := range signatures {
		parts := strings.Split(s, ":")
		from := "null"
		if len(parts) > 2 {
			from = `"` + parts[2] + `"`
		}
		sigs = append(sigs, `{"signature_id":"`+parts[0]+`","signer_email_address":"`+parts[0]+`@example.com","signer_name":"`+parts[0]+`","order":null,"status_code":"`+parts[1]+`","reassigned_from":`+from+`,"reassigned_by":null}`)
	}
	body := `{"event":{"event_time":"` + strconv.Itoa(1795774000+sec) + `","event_type":"` + eventType + `","event_hash":"00","event_metadata":{"related_signature_id":` + rel + `,"reported_for_account_id":"63522885f9261e2b04eea043933ee7313eb674fd","reported_for_app_id":null,"event_message":null}},` +
		`"signature_request":{"signature_request_id":"sr-1","title":"NDA","is_complete":false,"is_declined":false,"has_error":false,"metadata":{"esignflow_request_id":"req-7","esignflow_tenant":"acme"},"signatures":[` + strings.Join(sigs, ",") + `]}}`
	c, err := dropboxsign.Decode("application/json", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestParseRecipientRealities: bounces, reassignments and reminders map as
// Dropbox Sign describes them (event types and signature fields of the
// API's EventCallbackRequest and SignatureRequestResponseSignatures).
func TestParseRecipientRealities(t *testing.T) {
	tests := []struct {
		name    string
		c       dropboxsign.Callback
		status  schemas.Status
		rcps    string // "id:STATUS" or "id<replaced:STATUS", space-separated
		ignored bool
	}{
		{"email bounce: the related signer is BOUNCED", callback(t, "signature_request_email_bounce", "a", 0, "a:awaiting_signature", "b:awaiting_signature"),
			schemas.StatusSent, "a:BOUNCED b:SENT", false},
		{"invalid email is a bounce, not a failure", callback(t, "signature_request_sent", "", 0, "a:error_invalid_email"),
			schemas.StatusSent, "a:BOUNCED", false},
		{"reassigned: the new signature replaces the old", callback(t, "signature_request_reassigned", "c", 0, "a:signed", "c:awaiting_signature:b"),
			schemas.StatusSent, "a:SIGNED c<b:SENT", false},
		{"viewed", callback(t, "signature_request_viewed", "a", 0, "a:awaiting_signature", "b:awaiting_signature"),
			schemas.StatusViewed, "a:VIEWED b:SENT", false},
		{"a reminder is not a resend", callback(t, "signature_request_remind", "a", 0, "a:awaiting_signature"), "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := dropboxsign.Parse(tt.c)
			if tt.ignored {
				if !errors.Is(err, dropboxsign.ErrIgnored) {
					t.Fatalf("got %v, want ErrIgnored", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ev := evs[0]
			var got []string
			for _, r := range ev.Recipients {
				id := r.RecipientID
				if r.Replaces != nil {
					id += "<" + *r.Replaces
				}
				got = append(got, id+":"+string(r.Status))
			}
			if *ev.Status != tt.status || strings.Join(got, " ") != tt.rcps || ev.Kind != schemas.EventKindStatus {
				t.Fatalf("status %s recipients %q kind %v, want %s %q", *ev.Status, strings.Join(got, " "), ev.Kind, tt.status, tt.rcps)
			}
		})
	}
}

// TestCallbackRecipientStories: callbacks through Parse and the state
// machine in every order. A bounced signer whose address is corrected
// signs; a reassigned signature is REPLACED and its replacement signs.
// (Before, error_invalid_email made the signer FAILED for good, and the
// bounce and reassignment callbacks were ignored.)
func TestCallbackRecipientStories(t *testing.T) {
	for _, st := range []struct {
		name      string
		callbacks []dropboxsign.Callback
		want      string
	}{
		{"bounced, corrected, signed", []dropboxsign.Callback{
			callback(t, "signature_request_sent", "", 0, "a:awaiting_signature"),
			callback(t, "signature_request_sent", "", 1, "a:error_invalid_email"),
			callback(t, "signature_request_viewed", "a", 30, "a:awaiting_signature"),
			callback(t, "signature_request_signed", "a", 60, "a:signed"),
			callback(t, "signature_request_all_signed", "", 61, "a:signed"),
		}, "a:SIGNED"},
		{"reassigned", []dropboxsign.Callback{
			callback(t, "signature_request_sent", "", 0, "a:awaiting_signature", "b:awaiting_signature"),
			callback(t, "signature_request_signed", "a", 10, "a:signed", "b:awaiting_signature"),
			callback(t, "signature_request_reassigned", "c", 20, "a:signed", "c:awaiting_signature:b"),
			callback(t, "signature_request_signed", "c", 80, "a:signed", "c:signed:b"),
			callback(t, "signature_request_all_signed", "", 90, "a:signed", "c:signed:b"),
		}, "a:SIGNED b:REPLACED c:SIGNED"},
	} {
		t.Run(st.name, func(t *testing.T) {
			var evs []schemas.EnvelopeEvent
			for _, c := range st.callbacks {
				e, err := dropboxsign.Parse(c)
				if err != nil {
					t.Fatal(err)
				}
				evs = append(evs, e...)
			}
			envelopetest.EveryOrder(evs, func(order []schemas.EnvelopeEvent) {
				var e envelope.Envelope
				for _, ev := range order {
					e, _ = e.Apply(ev, ev.OccurredAt)
				}
				var got []string
				for _, r := range e.State.Recipients {
					got = append(got, r.RecipientID+":"+string(r.Status))
				}
				if *e.State.Status != schemas.StatusCompleted || strings.Join(got, " ") != st.want {
					t.Fatalf("envelope %s recipients %v, want COMPLETED %s", *e.State.Status, got, st.want)
				}
			})
		})
	}
}
