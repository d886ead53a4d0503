package docusignfake_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/esignflow/esignflow/provider/docusign/docusignfake"
	"github.com/esignflow/esignflow/provider/providertest"
	"github.com/esignflow/esignflow/provider/sim"
	"github.com/esignflow/esignflow/schemas"
)

func TestJWTGrant(t *testing.T) {
	h := start(t, docusignfake.Config{}, sim.Config{})
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tests := []struct {
		name      string
		key       *rsa.PrivateKey
		edit      func(c *docusignfake.Claims)
		noConsent bool
		wantError string // "" for a token
	}{
		{"good", nil, nil, false, ""},
		{"wrong key", other, nil, false, "invalid_grant"},
		{"wrong aud", nil, func(c *docusignfake.Claims) { c.Audience = "account-d.docusign.com" }, false, "invalid_grant"},
		{"exp more than an hour after iat", nil, func(c *docusignfake.Claims) { c.Expires = now.Add(61 * time.Minute) }, false, "invalid_grant"},
		{"expired", nil, func(c *docusignfake.Claims) { c.IssuedAt, c.Expires = now.Add(-2*time.Hour), now.Add(-time.Hour) }, false, "invalid_grant"},
		{"wrong iss", nil, func(c *docusignfake.Claims) { c.Issuer = "someone-else" }, false, "invalid_grant"},
		{"wrong sub", nil, func(c *docusignfake.Claims) { c.Subject = "someone-else" }, false, "invalid_grant"},
		{"no impersonation scope", nil, func(c *docusignfake.Claims) { c.Scope = "signature" }, false, "invalid_scope"},
		{"no consent", nil, nil, true, "consent_required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.t = t
			c := h.claims()
			if tt.edit != nil {
				tt.edit(&c)
			}
			key := tt.key
			if key == nil {
				key = testKey()
			}
			h.d.SetConsent(!tt.noConsent)
			defer h.d.SetConsent(true)
			code, out := h.tokenCall(key, c)
			if tt.wantError == "" {
				if code != http.StatusOK || out["token_type"] != "Bearer" || out["expires_in"] != float64(3600) || out["access_token"] == "" {
					t.Fatalf("got %d %v, want a bearer token for 3600 s", code, out)
				}
				return
			}
			if code != http.StatusBadRequest || out["error"] != tt.wantError || out["error_description"] == "" {
				t.Fatalf("got %d %v, want 400 error %q with a description", code, out, tt.wantError)
			}
		})
	}
	h.t = t
	if st := h.d.Stats(); st.TokensIssued != 2 || st.TokensRefused != int64(len(tests)-1) {
		t.Fatalf("stats %+v: want 2 tokens issued (start and good), %d refused", st, len(tests)-1)
	}
}

func TestUserInfoAndBearerToken(t *testing.T) {
	h := start(t, docusignfake.Config{}, sim.Config{})
	code, _, raw := h.call("GET", "/oauth/userinfo", h.token, nil)
	var ui struct {
		Sub      string `json:"sub"`
		Accounts []struct {
			AccountID string `json:"account_id"`
			IsDefault bool   `json:"is_default"`
			BaseURI   string `json:"base_uri"`
		} `json:"accounts"`
	}
	if err := json.Unmarshal(raw, &ui); err != nil || code != 200 {
		t.Fatalf("userinfo: %d %s %v", code, raw, err)
	}
	if ui.Sub != docusignfake.DefaultUserID || len(ui.Accounts) != 1 || ui.Accounts[0].AccountID != docusignfake.DefaultAccountID ||
		!ui.Accounts[0].IsDefault || ui.Accounts[0].BaseURI != h.sim.URL() {
		t.Fatalf("userinfo = %s", raw)
	}
	tests := []struct {
		name, path, token string
		wantCode          int
	}{
		{"userinfo without a token", "/oauth/userinfo", "", 401},
		{"REST without a token", "/restapi/v2.1/accounts/" + docusignfake.DefaultAccountID + "/envelopes?from_date=2020-01-01", "", 401},
		{"REST with an unknown token", "/restapi/v2.1/accounts/" + docusignfake.DefaultAccountID + "/envelopes?from_date=2020-01-01", "forged", 401},
		{"REST with the token", "/restapi/v2.1/accounts/" + docusignfake.DefaultAccountID + "/envelopes?from_date=2020-01-01", h.token, 200},
		{"another account", "/restapi/v2.1/accounts/not-mine/envelopes?from_date=2020-01-01", h.token, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.t = t
			code, hd, raw := h.call("GET", tt.path, tt.token, nil)
			if code != tt.wantCode {
				t.Fatalf("got %d %s, want %d", code, raw, tt.wantCode)
			}
			if strings.HasPrefix(tt.path, "/restapi/") && hd.Get("X-RateLimit-Limit") == "" {
				t.Fatalf("no rate-limit headers on %d", code)
			}
			if strings.HasPrefix(tt.path, "/restapi/") && code == 401 && !strings.Contains(string(raw), `"errorCode":"USER_AUTHENTICATION_FAILED"`) {
				t.Fatalf("401 body %s", raw)
			}
		})
	}
}

func TestTokenExpires(t *testing.T) {
	h := start(t, docusignfake.Config{TokenTTL: 50 * time.Millisecond}, sim.Config{})
	if code, _, raw := h.rest("GET", "/envelopes?from_date=2020-01-01", nil); code != 200 {
		t.Fatalf("fresh token: %d %s", code, raw)
	}
	providertest.WaitFor(t, 5*time.Second, "the token to expire", func() bool {
		code, _, _ := h.rest("GET", "/envelopes?from_date=2020-01-01", nil)
		return code == http.StatusUnauthorized
	})
}

// allStrings fails when a JSON value holds a number or a boolean outside
// the keys that DocuSign types otherwise.
func allStrings(t *testing.T, where string, v any) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			allStrings(t, where+"."+k, e)
		}
	case []any:
		for i, e := range x {
			allStrings(t, fmt.Sprintf("%s[%d]", where, i), e)
		}
	case string, nil:
	default:
		t.Errorf("%s = %v (%T), want a string", where, v, v)
	}
}

func TestDraftThenSend(t *testing.T) {
	h := start(t, docusignfake.Config{}, sim.Config{})
	code, out := h.restJSON("POST", "/envelopes", definition("req-1", "created", 2))
	if code != http.StatusCreated || out["status"] != "created" || out["uri"] != "/envelopes/"+out["envelopeId"].(string) || out["statusDateTime"] == "" {
		t.Fatalf("create draft: %d %v", code, out)
	}
	allStrings(t, "create", out)
	id := out["envelopeId"].(string)
	if tr := h.sim.Truth(); len(tr) != 1 || tr[0].Status != schemas.StatusCreated || tr[0].RequestID != "req-1" {
		t.Fatalf("truth after the draft: %+v", tr)
	}
	_, got := h.restJSON("GET", "/envelopes/"+id+"?include=recipients,custom_fields", nil)
	allStrings(t, "get", got)
	if got["status"] != "created" || got["transactionId"] != "txn-req-1" || got["emailSubject"] != "Please sign req-1" {
		t.Fatalf("draft = %v", got)
	}
	signers := got["recipients"].(map[string]any)["signers"].([]any)
	s1, s2 := signers[0].(map[string]any), signers[1].(map[string]any)
	if s1["recipientId"] != "1" || s1["routingOrder"] != "1" || s1["status"] != "created" ||
		s1["identityVerification"].(map[string]any)["workflowId"] != "wf-idv-1" {
		t.Fatalf("signer 1 = %v", s1)
	}
	if nums := s2["smsAuthentication"].(map[string]any)["senderProvidedNumbers"].([]any); len(nums) != 1 || nums[0] != "+15551234567" || s2["routingOrder"] != "1" {
		t.Fatalf("signer 2 = %v", s2)
	}
	fields := got["customFields"].(map[string]any)["textCustomFields"].([]any)
	if f := fields[0].(map[string]any); f["name"] != "esignflow_request_id" || f["value"] != "req-1" || f["fieldId"] != "1" {
		t.Fatalf("custom fields = %v", fields)
	}
	if _, plain := h.restJSON("GET", "/envelopes/"+id, nil); plain["recipients"] != nil || plain["customFields"] != nil {
		t.Fatalf("without include: %v", plain)
	}

	code, out = h.restJSON("PUT", "/envelopes/"+id, map[string]string{"status": "sent"})
	if code != 200 || out["envelopeId"] != id {
		t.Fatalf("send: %d %v", code, out)
	}
	_, got = h.restJSON("GET", "/envelopes/"+id+"?include=recipients", nil)
	if got["status"] != "sent" || got["sentDateTime"] == nil {
		t.Fatalf("after send: %v", got)
	}
	if s := got["recipients"].(map[string]any)["signers"].([]any)[0].(map[string]any); s["status"] != "sent" {
		t.Fatalf("signer after send: %v", s)
	}
	if code, out = h.restJSON("PUT", "/envelopes/"+id, map[string]string{"status": "sent"}); code != 200 {
		t.Fatalf("sending again: %d %v", code, out)
	}
	if tr := h.sim.Truth(); tr[0].Status != schemas.StatusSent {
		t.Fatalf("truth after send: %+v", tr)
	}
	if st := h.sim.Stats(); st.Envelopes != 1 || st.Sent != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestCreateAndUpdateErrors(t *testing.T) {
	h := start(t, docusignfake.Config{}, sim.Config{})
	draft := h.create(map[string]any{"emailSubject": "empty draft", "status": "created"})
	sent := h.create(definition("sent", "sent", 1))
	edit := func(f func(d map[string]any)) map[string]any {
		d := definition("r", "sent", 1)
		f(d)
		return d
	}
	signer := func(d map[string]any) map[string]any {
		return d["recipients"].(map[string]any)["signers"].([]any)[0].(map[string]any)
	}
	tests := []struct {
		name, method, path string
		body               any
		wantCode           int
		wantError          string
	}{
		{"body not JSON", "POST", "/envelopes", "not an object", 400, "INVALID_REQUEST_BODY"},
		{"unknown status", "POST", "/envelopes", edit(func(d map[string]any) { d["status"] = "completed" }), 400, "INVALID_REQUEST_PARAMETER"},
		{"subject over 100", "POST", "/envelopes", edit(func(d map[string]any) { d["emailSubject"] = strings.Repeat("x", 101) }), 400, "INVALID_REQUEST_PARAMETER"},
		{"no documentId", "POST", "/envelopes", edit(func(d map[string]any) { d["documents"].([]any)[0].(map[string]any)["documentId"] = "" }), 400, "INVALID_REQUEST_PARAMETER"},
		{"no document bytes", "POST", "/envelopes", edit(func(d map[string]any) { d["documents"].([]any)[0].(map[string]any)["documentBase64"] = "" }), 400, "INVALID_REQUEST_PARAMETER"},
		{"no recipientId", "POST", "/envelopes", edit(func(d map[string]any) { signer(d)["recipientId"] = "" }), 400, "INVALID_REQUEST_PARAMETER"},
		{"bad e-mail", "POST", "/envelopes", edit(func(d map[string]any) { signer(d)["email"] = "nobody" }), 400, "INVALID_EMAIL_ADDRESS_FOR_RECIPIENT"},
		{"sent without documents", "POST", "/envelopes", edit(func(d map[string]any) { delete(d, "documents") }), 400, "ENVELOPE_IS_INCOMPLETE"},
		{"custom field value over 100", "POST", "/envelopes", edit(func(d map[string]any) {
			d["customFields"].(map[string]any)["textCustomFields"].([]any)[0].(map[string]any)["value"] = strings.Repeat("v", 101)
		}), 400, "INVALID_REQUEST_PARAMETER"},
		{"numbers where strings belong are read", "POST", "/envelopes", edit(func(d map[string]any) { signer(d)["recipientId"] = 7; signer(d)["routingOrder"] = 2 }), 201, ""},
		{"send an incomplete draft", "PUT", "/envelopes/" + draft, map[string]string{"status": "sent"}, 400, "ENVELOPE_IS_INCOMPLETE"},
		{"void without a reason", "PUT", "/envelopes/" + sent, map[string]string{"status": "voided"}, 400, "INVALID_REQUEST_PARAMETER"},
		{"void a draft", "PUT", "/envelopes/" + draft, map[string]string{"status": "voided", "voidedReason": "no"}, 400, "ENVELOPE_CANNOT_VOID_INVALID_STATE"},
		{"void", "PUT", "/envelopes/" + sent, map[string]string{"status": "voided", "voidedReason": "changed my mind"}, 200, ""},
		{"void again", "PUT", "/envelopes/" + sent, map[string]string{"status": "voided", "voidedReason": "again"}, 400, "ENVELOPE_CANNOT_VOID_INVALID_STATE"},
		{"unknown envelope", "GET", "/envelopes/00000000-0000-4000-8000-000000000000", nil, 400, "ENVELOPE_DOES_NOT_EXIST"},
		{"send an unknown envelope", "PUT", "/envelopes/00000000-0000-4000-8000-000000000000", map[string]string{"status": "sent"}, 400, "ENVELOPE_DOES_NOT_EXIST"},
		{"list without a filter", "GET", "/envelopes", nil, 400, "INVALID_REQUEST_PARAMETER"},
		{"list with a bad from_date", "GET", "/envelopes?from_date=yesterday", nil, 400, "INVALID_REQUEST_PARAMETER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.t = t
			code, out := h.restJSON(tt.method, tt.path, tt.body)
			if code != tt.wantCode || (tt.wantError != "" && (out["errorCode"] != tt.wantError || out["message"] == "")) {
				t.Fatalf("got %d %v, want %d %s", code, out, tt.wantCode, tt.wantError)
			}
		})
	}
	h.t = t
	_, got := h.restJSON("GET", "/envelopes/"+sent, nil)
	if got["status"] != "voided" || got["voidedReason"] != "changed my mind" || got["voidedDateTime"] == nil {
		t.Fatalf("voided envelope = %v", got)
	}
}

func TestTransactionIDLookup(t *testing.T) {
	h := start(t, docusignfake.Config{}, sim.Config{})
	ids := map[string]string{}
	for _, r := range []string{"a", "b", "c"} {
		ids[r] = h.create(definition(r, "created", 1))
	}
	again := h.create(definition("a", "sent", 1)) // the same transactionId is a second envelope
	tests := []struct {
		query string
		want  []string
	}{
		{"transaction_ids=txn-a", []string{ids["a"], again}},
		{"transaction_ids=txn-b,txn-c", []string{ids["b"], ids["c"]}},
		{"transaction_ids=txn-nobody", nil},
		{"envelope_ids=" + ids["c"], []string{ids["c"]}},
		{"envelope_ids=" + ids["c"] + "," + ids["c"] + ",nobody", []string{ids["c"]}},
		{"envelope_ids=" + ids["a"] + "," + again + "&transaction_ids=txn-a,txn-b", []string{ids["a"], again}},
		{"envelope_ids=" + ids["a"] + "&transaction_ids=txn-b", nil},
		{"transaction_ids=txn-a,txn-a&status=sent", []string{again}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			h.t = t
			code, out := h.restJSON("GET", "/envelopes?"+tt.query, nil)
			allStrings(t, "list", out)
			var got []string
			for _, e := range out["envelopes"].([]any) {
				got = append(got, e.(map[string]any)["envelopeId"].(string))
			}
			sort.Strings(got)
			want := append([]string(nil), tt.want...)
			sort.Strings(want)
			if code != 200 || fmt.Sprint(got) != fmt.Sprint(want) || out["totalSetSize"] != strconv.Itoa(len(want)) {
				t.Fatalf("got %d %v (%v), want %v", code, got, out, want)
			}
		})
	}
}

func TestListStatusChangesPaging(t *testing.T) {
	h := start(t, docusignfake.Config{}, sim.Config{})
	since := time.Now().Add(-time.Second).UTC().Format(time.RFC3339)
	var all []string
	for i := range 7 {
		all = append(all, h.create(definition(fmt.Sprint("p", i), "sent", 1)))
	}
	type page struct{ size, total, start, end string }
	var pages []page
	var got []string
	path := "/envelopes?from_date=" + url.QueryEscape(since) + "&count=3&include=recipients"
	for path != "" {
		code, out := h.restJSON("GET", path, nil)
		if code != 200 {
			t.Fatalf("%s: %d %v", path, code, out)
		}
		allStrings(t, "list", out)
		pages = append(pages, page{out["resultSetSize"].(string), out["totalSetSize"].(string), out["startPosition"].(string), out["endPosition"].(string)})
		for _, e := range out["envelopes"].([]any) {
			env := e.(map[string]any)
			if env["recipients"] == nil || env["statusChangedDateTime"] == "" {
				t.Fatalf("listed envelope lacks what include asked: %v", env)
			}
			got = append(got, env["envelopeId"].(string))
		}
		path = out["nextUri"].(string) // relative to the account
		if len(pages) > 5 {
			t.Fatal("nextUri never ends")
		}
	}
	want := []page{{"3", "7", "0", "2"}, {"3", "7", "3", "5"}, {"1", "7", "6", "6"}}
	if fmt.Sprint(pages) != fmt.Sprint(want) {
		t.Fatalf("pages %v, want %v", pages, want)
	}
	sort.Strings(got)
	sort.Strings(all)
	if fmt.Sprint(got) != fmt.Sprint(all) {
		t.Fatalf("paged through %v, want %v", got, all)
	}
	// start_position and count alone page the same way.
	_, out := h.restJSON("GET", "/envelopes?from_date="+url.QueryEscape(since)+"&start_position=6&count=3", nil)
	if out["resultSetSize"] != "1" || out["nextUri"] != "" || out["previousUri"] == "" {
		t.Fatalf("last page: %v", out)
	}
	// A from_date after every change finds none; status filters.
	_, out = h.restJSON("GET", "/envelopes?from_date="+url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339)), nil)
	if out["totalSetSize"] != "0" {
		t.Fatalf("future from_date: %v", out)
	}
	_, out = h.restJSON("GET", "/envelopes?from_date="+url.QueryEscape(since)+"&status=completed", nil)
	if out["totalSetSize"] != "0" {
		t.Fatalf("status=completed: %v", out)
	}
}
