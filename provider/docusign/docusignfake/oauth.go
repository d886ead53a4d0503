package docusignfake

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// jwtBearer is the JWT grant's grant_type.
const jwtBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// maxAssertionLife is the longest exp − iat DocuSign accepts.
const maxAssertionLife = time.Hour

// clockSkew is how far in the future an iat may be.
const clockSkew = time.Minute

// Claims are a JWT grant assertion's claims, as DocuSign's SDKs build
// them.
type Claims struct {
	Issuer   string    // iss: the integration key
	Subject  string    // sub: the user id to impersonate
	Audience string    // aud: the OAuth host, no scheme (host[:port])
	IssuedAt time.Time // iat
	Expires  time.Time // exp, at most an hour after iat
	Scope    string    // "signature impersonation"
}

// SignAssertion returns c as an RS256 JWT signed with key: what a DocuSign
// client posts as the assertion of the JWT grant. Tests use it to talk to
// the dialect without a client.
func SignAssertion(key *rsa.PrivateKey, c Claims) (string, error) {
	head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	body, err := json.Marshal(map[string]any{"iss": c.Issuer, "sub": c.Subject, "aud": c.Audience,
		"iat": c.IssuedAt.Unix(), "exp": c.Expires.Unix(), "scope": c.Scope})
	if err != nil {
		return "", err
	}
	signing := head + "." + base64.RawURLEncoding.EncodeToString(body)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("docusignfake: sign assertion: %w", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// oauthError is the token endpoint's refusal: {"error", "error_description"}.
type oauthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func invalidGrant(desc string) *oauthError {
	return &oauthError{Code: "invalid_grant", Description: desc}
}

// token answers POST /oauth/token for the JWT-bearer grant.
func (d *Dialect) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		d.refuse(w, &oauthError{Code: "invalid_request", Description: "the body is not a form: " + err.Error()})
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != jwtBearer {
		d.refuse(w, &oauthError{Code: "unsupported_grant_type", Description: fmt.Sprintf("grant_type %q is not supported; use %s", gt, jwtBearer)})
		return
	}
	if err := d.verify(r.PostForm.Get("assertion"), r.Host, time.Now()); err != nil {
		d.refuse(w, err)
		return
	}
	d.mu.Lock()
	consent := d.consent
	d.mu.Unlock()
	if !consent {
		d.refuse(w, &oauthError{Code: "consent_required", Description: "the user has not consented to the integration key's scopes"})
		return
	}
	tok, now := randomToken(), time.Now()
	d.mu.Lock()
	for t, exp := range d.tokens {
		if now.After(exp) {
			delete(d.tokens, t)
		}
	}
	d.tokens[tok] = now.Add(d.cfg.TokenTTL)
	d.mu.Unlock()
	d.stats.tokens.Add(1)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int64(d.cfg.TokenTTL / time.Second)})
}

func (d *Dialect) refuse(w http.ResponseWriter, e *oauthError) {
	d.stats.refused.Add(1)
	writeJSON(w, http.StatusBadRequest, e)
}

// verify checks an RS256 assertion's signature with the configured key and
// its claims against the configuration; host is what the call was sent to
// (the expected aud).
func (d *Dialect) verify(assertion, host string, now time.Time) *oauthError {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return &oauthError{Code: "invalid_request", Description: "the assertion is not a JWT"}
	}
	var head struct {
		Alg string `json:"alg"`
	}
	if err := decodeSegment(parts[0], &head); err != nil || head.Alg != "RS256" {
		return invalidGrant("no_valid_keys_or_signatures: the assertion must be signed RS256")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err != nil || rsa.VerifyPKCS1v15(d.cfg.PublicKey, crypto.SHA256, sum[:], sig) != nil {
		return invalidGrant("no_valid_keys_or_signatures")
	}
	var c struct {
		Iss   string          `json:"iss"`
		Sub   string          `json:"sub"`
		Aud   json.RawMessage `json:"aud"`
		Iat   *float64        `json:"iat"`
		Exp   *float64        `json:"exp"`
		Scope string          `json:"scope"`
	}
	if err := decodeSegment(parts[1], &c); err != nil {
		return &oauthError{Code: "invalid_request", Description: "the assertion's claims are not JSON"}
	}
	switch {
	case c.Iss != d.cfg.IntegrationKey:
		return invalidGrant("issuer_not_found")
	case c.Sub == "":
		return invalidGrant("the assertion has no sub: application tokens cannot use the eSignature API")
	case c.Sub != d.cfg.UserID:
		return invalidGrant("user_not_found")
	case !audience(c.Aud, host):
		return invalidGrant(fmt.Sprintf("aud must be %q, the host the token was requested from", host))
	case c.Iat == nil || c.Exp == nil:
		return invalidGrant("the assertion needs iat and exp")
	}
	iat, exp := time.Unix(int64(*c.Iat), 0), time.Unix(int64(*c.Exp), 0)
	switch {
	case iat.After(now.Add(clockSkew)):
		return invalidGrant("iat is in the future")
	case !exp.After(now):
		return invalidGrant("expired_grant: exp has passed")
	case exp.Sub(iat) > maxAssertionLife:
		return invalidGrant("exp must be at most 3600 seconds after iat")
	}
	scopes := strings.Fields(c.Scope)
	if !contains(scopes, "signature") || !contains(scopes, "impersonation") {
		return &oauthError{Code: "invalid_scope", Description: "scope must include signature and impersonation"}
	}
	return nil
}

func decodeSegment(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.NewDecoder(bytes.NewReader(raw)).Decode(v)
}

// audience reports whether aud (a string or an array of them) names host.
func audience(aud json.RawMessage, host string) bool {
	var one string
	if json.Unmarshal(aud, &one) == nil {
		return one == host
	}
	var many []string
	return json.Unmarshal(aud, &many) == nil && contains(many, host)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// authorized reports whether r carries a live bearer token.
func (d *Dialect) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return false
	}
	d.mu.Lock()
	exp, ok := d.tokens[tok]
	d.mu.Unlock()
	return ok && time.Now().Before(exp)
}

// userinfo answers GET /oauth/userinfo: the user and its one account,
// whose base_uri is the simulator's own URL.
func (d *Dialect) userinfo(w http.ResponseWriter, r *http.Request) {
	if !d.authorized(r) {
		d.stats.unauthorized.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, &oauthError{Code: "invalid_request", Description: "a valid bearer token is required"})
		return
	}
	d.stats.userinfo.Add(1)
	given, family, _ := strings.Cut(d.cfg.UserName, " ")
	writeJSON(w, http.StatusOK, map[string]any{
		"sub": d.cfg.UserID, "name": d.cfg.UserName, "given_name": given, "family_name": family,
		"created": "2024-01-01T00:00:00.000", "email": d.cfg.UserEmail,
		"accounts": []map[string]any{{"account_id": d.cfg.AccountID, "is_default": true, "account_name": d.cfg.AccountName, "base_uri": d.sim.URL()}},
	})
}
