package docusign

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/apicall"
)

// jwtLifetime is the assertion's exp - iat: DocuSign takes at most an hour.
const jwtLifetime = time.Hour

// tokenMargin is how long before its expiry a token is renewed (at most a
// tenth of its lifetime for short-lived tokens).
const tokenMargin = 5 * time.Minute

// parseRSAKey parses the first PEM block: PKCS#1 or PKCS#8 RSA.
func parseRSAKey(raw []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, errors.New("no PEM block (want an RSA private key, PKCS#1 or PKCS#8)")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("PKCS#8 key is a %T, not RSA", k)
		}
		return rk, nil
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("the key is encrypted; DocuSign keys are used unencrypted")
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key (want RSA PRIVATE KEY or PRIVATE KEY)", block.Type)
	}
}

// token is an access token and when it stops being used.
type token struct {
	access string
	renew  time.Time // renewed from then on
}

// flight is one token request that concurrent callers wait for.
type flight struct {
	done chan struct{}
	tok  token
	err  error
}

// tokens mints and caches access tokens. Safe for concurrent use: callers
// that need a token while one is being obtained wait for that one.
type tokens struct {
	c *Client

	mu     sync.Mutex
	cur    token
	flight *flight
}

// get returns a valid access token, obtaining one when there is none or
// the cached one is due for renewal.
func (t *tokens) get(ctx context.Context) (string, error) {
	t.mu.Lock()
	if t.cur.access != "" && t.c.cfg.Now().Before(t.cur.renew) {
		tok := t.cur.access
		t.mu.Unlock()
		return tok, nil
	}
	f := t.flight
	if f == nil {
		f = &flight{done: make(chan struct{})}
		t.flight = f
		go t.fetch(f)
	}
	t.mu.Unlock()
	select {
	case <-f.done:
		return f.tok.access, f.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// fetch obtains a token for f. It runs on its own goroutine, bounded by
// the call timeout, so a caller that gives up does not fail the others;
// it exits when the token call ends.
func (t *tokens) fetch(f *flight) {
	ctx, cancel := context.WithTimeout(context.Background(), t.c.api.Timeout)
	defer cancel()
	f.tok, f.err = t.c.requestToken(ctx)
	t.mu.Lock()
	if f.err == nil {
		t.cur = f.tok
	}
	t.flight = nil
	t.mu.Unlock()
	close(f.done)
}

// drop forgets the cached token if it is still access (a 401 said it no
// longer works).
func (t *tokens) drop(access string) {
	t.mu.Lock()
	if t.cur.access == access {
		t.cur = token{}
	}
	t.mu.Unlock()
}

// assertion builds and signs the JWT grant's assertion.
func (c *Client) assertion() (string, error) {
	key, err := c.key.Get() // a key, always: New loaded one, and a bad file keeps it
	if err != nil {
		c.log.Error("docusign private key changed but does not load; keeping the previous one", "err", err)
	}
	now := c.cfg.Now()
	claims := jwt.MapClaims{
		"iss":   c.cfg.IntegrationKey,
		"sub":   c.cfg.UserID,
		"aud":   c.auth.Host,
		"iat":   now.Unix(),
		"exp":   now.Add(jwtLifetime).Unix(),
		"scope": "signature impersonation",
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key)
	if err != nil {
		return "", &provider.PermanentError{Reason: "docusign: sign JWT assertion: " + err.Error()}
	}
	return s, nil
}

// requestToken runs the JWT grant: POST <auth>/oauth/token, made with
// apicall.Call like every call (timeout, metrics, typed transport errors,
// the answer read within 1 MiB); the answer is read by tokenAnswer.
func (c *Client) requestToken(ctx context.Context) (token, error) {
	assertion, err := c.assertion()
	if err != nil {
		return token{}, err
	}
	form := url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"},
		"assertion":  {assertion},
	}
	var status int
	a, err := c.api.Call(ctx, apicall.Request{Method: http.MethodPost, URL: c.auth.String() + "/oauth/token",
		Body: []byte(form.Encode()), ContentType: "application/x-www-form-urlencoded", Op: "token", Limit: 1 << 20,
		Answered: func(resp *http.Response) { status = resp.StatusCode },
		Refused: func(resp *http.Response, raw []byte) error {
			_, err := c.tokenAnswer(resp.StatusCode, raw)
			return err
		}})
	if err != nil {
		return token{}, err
	}
	return c.tokenAnswer(status, a.Body)
}

// tokenAnswer reads the token answer of HTTP status status: the token, or
// an *AuthError for an OAuth error (consent_required names ConsentURL), a
// *provider.TransientError for a 5xx or 429, a *provider.PermanentError
// for anything else without an access token.
func (c *Client) tokenAnswer(status int, raw []byte) (token, error) {
	var body struct {
		AccessToken string          `json:"access_token"`
		TokenType   string          `json:"token_type"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
		Error       string          `json:"error"`
		Description string          `json:"error_description"`
	}
	_ = json.Unmarshal(raw, &body)
	switch {
	case status/100 == 2 && body.AccessToken != "":
	case body.Error != "" && status < 500:
		e := &AuthError{Code: body.Error, Description: body.Description, Status: status}
		if e.Code == "consent_required" {
			e.ConsentURL = c.ConsentURL()
		}
		return token{}, e
	case status >= 500 || status == http.StatusTooManyRequests:
		return token{}, &provider.TransientError{Err: fmt.Errorf("docusign: token answer HTTP %d", status)}
	default:
		return token{}, &provider.PermanentError{Status: status, Reason: fmt.Sprintf("docusign: token answer HTTP %d without an access token", status)}
	}
	lifetime := time.Hour
	if n, ok := jsonInt(body.ExpiresIn); ok && n > 0 {
		lifetime = time.Duration(n) * time.Second
	}
	margin := min(tokenMargin, lifetime/10)
	return token{access: body.AccessToken, renew: c.cfg.Now().Add(lifetime - margin)}, nil
}

// ConsentURL is the page that grants the integration key consent to
// impersonate users (scope signature impersonation): the URL a
// consent_required error names.
func (c *Client) ConsentURL() string {
	q := url.Values{
		"response_type": {"code"},
		"scope":         {"signature impersonation"},
		"client_id":     {c.cfg.IntegrationKey},
	}
	redirect := "redirect_uri=<a redirect URI registered for the integration key>"
	if c.cfg.ConsentRedirectURI != "" {
		redirect = "redirect_uri=" + url.QueryEscape(c.cfg.ConsentRedirectURI)
	}
	// url.Values encodes a space as +; DocuSign's documented form is %20.
	return c.auth.String() + "/oauth/auth?" + strings.ReplaceAll(q.Encode(), "+", "%20") + "&" + redirect
}

// jsonInt reads a JSON number or a string holding one (DocuSign types
// most numbers as strings).
func jsonInt(raw json.RawMessage) (int64, bool) {
	var n json.Number
	s := strings.Trim(string(raw), `"`)
	n = json.Number(s)
	v, err := n.Int64()
	return v, err == nil
}

// restBase returns <base>/restapi/v2.1/accounts/<account>, asking
// /oauth/userinfo once when no BaseURL was configured.
func (c *Client) restBase(ctx context.Context) (string, error) {
	c.baseMu.Lock()
	defer c.baseMu.Unlock()
	if c.base != "" {
		return c.base, nil
	}
	base, err := c.userInfoBase(ctx)
	if err != nil {
		return "", err
	}
	c.base = base + "/restapi/v2.1/accounts/" + url.PathEscape(c.cfg.AccountID)
	c.log.Info("docusign account found", "account_id", c.cfg.AccountID, "base_uri", base)
	return c.base, nil
}

// userInfoBase asks /oauth/userinfo for the base_uri of the account.
func (c *Client) userInfoBase(ctx context.Context) (string, error) {
	var base string
	err := c.api.Retry(ctx, func(ctx context.Context) error {
		tok, err := c.tokens.get(ctx)
		if err != nil {
			return err
		}
		a, err := c.api.Call(ctx, apicall.Request{Method: http.MethodGet, URL: c.auth.String() + "/oauth/userinfo",
			Header: http.Header{"Authorization": {"Bearer " + tok}}, Op: "userinfo", Limit: 1 << 20,
			Refused: func(resp *http.Response, _ []byte) error {
				switch {
				case resp.StatusCode == http.StatusUnauthorized:
					c.tokens.drop(tok)
					return &provider.TransientError{Err: errors.New("docusign: userinfo: HTTP 401")}
				case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
					return &provider.TransientError{Err: fmt.Errorf("docusign: userinfo: HTTP %d", resp.StatusCode)}
				}
				return &provider.PermanentError{Status: resp.StatusCode, Reason: fmt.Sprintf("docusign: userinfo: HTTP %d", resp.StatusCode)}
			}})
		if err != nil {
			return err
		}
		var info struct {
			Accounts []struct {
				AccountID string `json:"account_id"`
				BaseURI   string `json:"base_uri"`
			} `json:"accounts"`
		}
		if err := json.Unmarshal(a.Body, &info); err != nil {
			return &provider.TransientError{Err: fmt.Errorf("docusign: userinfo: decode: %w", err)}
		}
		var ids []string
		for _, a := range info.Accounts {
			if strings.EqualFold(a.AccountID, c.cfg.AccountID) {
				u, err := provider.ParseBaseURL(a.BaseURI)
				if err != nil {
					return &provider.PermanentError{Reason: fmt.Sprintf("docusign: userinfo: account %s: base_uri: %v", a.AccountID, err)}
				}
				base = u.String()
				return nil
			}
			ids = append(ids, a.AccountID)
		}
		return &provider.PermanentError{Reason: fmt.Sprintf("docusign: userinfo: the user %s has no account %s (accounts: %s)",
			c.cfg.UserID, c.cfg.AccountID, strings.Join(ids, ", "))}
	})
	return base, err
}
