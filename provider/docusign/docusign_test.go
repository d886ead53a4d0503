package docusign_test

import (
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

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
