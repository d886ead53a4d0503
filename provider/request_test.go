package provider_test

import (
	"strings"
	"testing"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

func TestRequestLimits(t *testing.T) {
	l := provider.RequestLimits{Provider: "acme", Name: "Acme", Subject: 5, Message: 3}
	ok := schemas.SigningRequest{Subject: "héllo", Message: "abc",
		Documents: []schemas.Document{{Name: "a.pdf"}}, Recipients: []schemas.Recipient{{ID: "1"}}}
	for _, tc := range []struct {
		name   string
		change func(*schemas.SigningRequest)
		want   string // in the reason; "" for no refusal
	}{
		{"fits", func(*schemas.SigningRequest) {}, ""},
		{"no documents", func(r *schemas.SigningRequest) { r.Documents = nil }, "acme: the request has no documents"},
		{"no recipients", func(r *schemas.SigningRequest) { r.Recipients = nil }, "acme: the request has no recipients"},
		{"subject too long", func(r *schemas.SigningRequest) { r.Subject = "héllo!" }, "the subject has 6 characters; Acme takes at most 5"},
		{"message too long", func(r *schemas.SigningRequest) { r.Message = "abcd" }, "the message has 4 characters; Acme takes at most 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := ok
			tc.change(&req)
			err := l.Check(req)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want none", err)
			case tc.want != "" && (!provider.IsPermanent(err) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want a refusal saying %q", err, tc.want)
			}
		})
	}
}

func TestDefaultSubject(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		want string
	}{
		{"contrat.pdf", 100, "Please sign: contrat.pdf"},
		{"contrât.pdf", 18, "Please sign: contr"},
		{"ééé", 14, "Please sign: é"},
	} {
		req := schemas.SigningRequest{Documents: []schemas.Document{{Name: tc.name}}}
		if got := provider.DefaultSubject(req, tc.n); got != tc.want {
			t.Errorf("DefaultSubject(%q, %d) = %q, want %q", tc.name, tc.n, got, tc.want)
		}
	}
}

func TestMetadata(t *testing.T) {
	req := schemas.SigningRequest{RequestID: "req-1", Tenant: "acme",
		Metadata: map[string]string{provider.RequestIDKey: "forged", "crm": "42"}}
	got := provider.Metadata(req)
	want := map[string]string{provider.RequestIDKey: "req-1", provider.TenantKey: "acme", "crm": "42"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestKeyDigest(t *testing.T) {
	for _, tc := range []struct{ tenant, key, want string }{
		// The value the DocuSign and Dropbox Sign examples print: envelopes
		// already created carry it, so it must never change.
		{"acme", "req-42", "2dae09167ba1bc2192d0277829cc0fd0"},
	} {
		if got := provider.KeyDigest(tc.tenant, tc.key); got != tc.want {
			t.Errorf("KeyDigest(%q, %q) = %s, want %s", tc.tenant, tc.key, got, tc.want)
		}
	}
	// The tenant's length keeps (a, bc) and (ab, c) apart.
	if provider.KeyDigest("a", "bc") == provider.KeyDigest("ab", "c") {
		t.Error("KeyDigest(a, bc) == KeyDigest(ab, c)")
	}
}
