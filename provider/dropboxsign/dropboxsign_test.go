package dropboxsign_test

import (
	"bytes"
	"errors"
	"mime/multipart"
	"os"
	"strings"
	"testing"

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
