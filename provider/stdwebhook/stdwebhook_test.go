package stdwebhook_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider/stdwebhook"
)

// The vector is the Standard Webhooks specification's example, checked here
// with `openssl dgst -sha256 -mac HMAC` over the same bytes:
// base64(HMAC(base64decode(secret), "msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}")).
const (
	vecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vecID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vecTS     = "1614265330"
	vecBody   = `{"test": 2432232314}`
	vecSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

var vecTime = time.Unix(1614265330, 0)

func key(t *testing.T, s string) stdwebhook.Secret {
	t.Helper()
	k, err := stdwebhook.ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func headers(prefix, id, ts, sig string) http.Header {
	h := http.Header{}
	h.Set(prefix+"-id", id)
	h.Set(prefix+"-timestamp", ts)
	h.Set(prefix+"-signature", sig)
	return h
}

func TestSignMatchesSpecVector(t *testing.T) {
	if got := stdwebhook.Sign(key(t, vecSecret), vecID, vecTime, []byte(vecBody)); got != vecSig {
		t.Fatalf("Sign = %s, want %s", got, vecSig)
	}
}

func TestVerify(t *testing.T) {
	good := key(t, vecSecret)
	other := key(t, "whsec_"+"c2VjcmV0LXR3by1zZWNyZXQtdHdvLXNlY3JldA==")
	tests := []struct {
		name string
		keys []stdwebhook.Secret
		h    http.Header
		body string
		now  time.Time
		want error
	}{
		{"valid", []stdwebhook.Secret{good}, headers("webhook", vecID, vecTS, vecSig), vecBody, vecTime, nil},
		{"svix headers", []stdwebhook.Secret{good}, headers("svix", vecID, vecTS, vecSig), vecBody, vecTime, nil},
		{"rotation: second key matches", []stdwebhook.Secret{other, good}, headers("webhook", vecID, vecTS, vecSig), vecBody, vecTime, nil},
		{"several entries, one valid", []stdwebhook.Secret{good}, headers("webhook", vecID, vecTS, "v1a,abcd v1,Zm9vYmFy "+vecSig), vecBody, vecTime, nil},
		{"other versions skipped", []stdwebhook.Secret{good}, headers("webhook", vecID, vecTS, strings.Replace(vecSig, "v1,", "v2,", 1)), vecBody, vecTime, stdwebhook.ErrNoMatch},
		{"tampered body", []stdwebhook.Secret{good}, headers("webhook", vecID, vecTS, vecSig), `{"test": 2432232315}`, vecTime, stdwebhook.ErrNoMatch},
		{"tampered id", []stdwebhook.Secret{good}, headers("webhook", vecID+"x", vecTS, vecSig), vecBody, vecTime, stdwebhook.ErrNoMatch},
		{"wrong secret", []stdwebhook.Secret{other}, headers("webhook", vecID, vecTS, vecSig), vecBody, vecTime, stdwebhook.ErrNoMatch},
		{"no secrets", nil, headers("webhook", vecID, vecTS, vecSig), vecBody, vecTime, stdwebhook.ErrNoMatch},
		{"stale", []stdwebhook.Secret{good}, headers("webhook", vecID, vecTS, vecSig), vecBody, vecTime.Add(5*time.Minute + time.Second), stdwebhook.ErrStale},
		{"just inside the window (old)", []stdwebhook.Secret{good}, headers("webhook", vecID, vecTS, vecSig), vecBody, vecTime.Add(5 * time.Minute), nil},
		{"future", []stdwebhook.Secret{good}, headers("webhook", vecID, vecTS, vecSig), vecBody, vecTime.Add(-5*time.Minute - time.Second), stdwebhook.ErrFuture},
		{"just inside the window (new)", []stdwebhook.Secret{good}, headers("webhook", vecID, vecTS, vecSig), vecBody, vecTime.Add(-5 * time.Minute), nil},
		{"missing signature", []stdwebhook.Secret{good}, headers("webhook", vecID, vecTS, ""), vecBody, vecTime, stdwebhook.ErrMissingHeaders},
		{"bad timestamp", []stdwebhook.Secret{good}, headers("webhook", vecID, "yesterday", vecSig), vecBody, vecTime, stdwebhook.ErrBadTimestamp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := stdwebhook.Verify(tt.keys, tt.h, []byte(tt.body), tt.now, 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && id != tt.h.Get("webhook-id")+tt.h.Get("svix-id") {
				t.Fatalf("id = %q", id)
			}
		})
	}
}

func TestSetHeadersVerifies(t *testing.T) {
	k1, k2 := key(t, vecSecret), stdwebhook.Secret("another key of enough length!!")
	h := http.Header{}
	now := time.Now()
	stdwebhook.SetHeaders(h, []stdwebhook.Secret{k1, k2}, "msg_1", now, []byte("{}"))
	for _, k := range []stdwebhook.Secret{k1, k2} {
		if _, err := stdwebhook.Verify([]stdwebhook.Secret{k}, h, []byte("{}"), now, 0); err != nil {
			t.Fatalf("a receiver with either key must verify: %v", err)
		}
	}
}

func TestSecretNeverLogged(t *testing.T) {
	var buf bytes.Buffer
	k := key(t, vecSecret)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("loaded", "secret", k)
	if strings.Contains(buf.String(), "MfKQ") || !strings.Contains(buf.String(), "[secret]") {
		t.Fatalf("log shows the secret: %s", buf.String())
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(vecID, vecTS, vecSig, []byte(vecBody))
	f.Add("", "", "", []byte{})
	f.Add("x", "-1", "v1,,,, v1", []byte("\x00"))
	k, _ := stdwebhook.ParseSecret(vecSecret)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		_, _ = stdwebhook.Verify([]stdwebhook.Secret{k}, headers("webhook", id, ts, sig), body, vecTime, 0)
	})
}
