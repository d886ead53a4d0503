package dropboxsign

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/apicall"
	"github.com/esignflow/esignflow/schemas"
)

// Field limits Dropbox Sign documents (SignatureRequestSendRequest).
const (
	maxTitle        = 255
	maxSubject      = 255
	maxMessage      = 5000
	maxMetadataKeys = 10
	maxMetadataName = 40
	maxMetadataVal  = 1000
)

// CreateKeyField is the metadata key under which Create stores the
// request's create key (CreateKey): the term it searches for before a
// retry.
const CreateKeyField = "esignflow_create_key"

// CreateKey is the Idempotency-Key and the CreateKeyField metadata value
// of the signature request for (tenant, key): "esf1" and 32 hex digits of
// SHA-256(tenant, key). It is deterministic (every attempt and every
// replica send the same), distinct across tenants (Dropbox Sign scopes
// the header to the account, which several tenants share), within the
// header's 1 to 255 characters whatever the request id, and a single
// alphanumeric word, which a search matches exactly.
func CreateKey(tenant, key string) string {
	return "esf1" + provider.KeyDigest(tenant, key)
}

// Create sends the signature request of req (POST /signature_request/send)
// so that one request never yields two signature requests, although the
// replay semantics of Dropbox Sign's Idempotency-Key are not documented:
//
//   - every send carries Idempotency-Key: CreateKey(tenant, key), and the
//     same key in the request's metadata (CreateKeyField);
//   - every attempt, the first included (a process that died after
//     sending cannot tell), first looks the key up
//     (GET /signature_request/list?query=<key>, an unfielded term, which
//     Dropbox Sign matches against metadata; the answers are then checked
//     for the exact metadata value) and returns what it finds;
//   - after a send that may have reached Dropbox Sign — a timeout, a
//     dropped connection, a 5xx, a 409 "An identical request is already
//     being processed" — the request is not sent again until the look-up
//     has kept finding nothing for Config.LookupSettle (looking again
//     meanwhile), because the search index lags behind a create. The
//     Client remembers that time per key, so a Create retried by its
//     caller in the same process waits it out too.
//
// So a duplicate needs both Dropbox Sign to ignore the header's replay
// and its index to lag more than LookupSettle; either one alone is
// covered. A 409 in flight is treated as "acting now": wait, look again.
// Refusals (4xx) and rate limits return at once; a rate limit leaves the
// remembered uncertainty in place.
//
// Documents: when every one is an http(s) URI, the body is JSON with
// file_urls[] and Dropbox Sign fetches them (their SHA-256 cannot be
// checked then: esignflow never sees the bytes); otherwise it is
// multipart/form-data with files[N]: inline bytes, file:// paths and, in a
// mixed request, the http(s) documents fetched here, each checked against
// the request's SHA-256. Signers get an order only when their routing
// orders differ: sorted by routing order, numbered 0, 1, 2… (Dropbox Sign
// has no parallel group within a sequence, so equal routing orders among
// different ones sign one after the other, in request order). Viewers (role
// cc, viewer) become cc_email_addresses. SMS authentication sets
// sms_phone_number with sms_phone_number_type authentication; ID
// verification is refused (see sendForm). Metadata carries
// esignflow_request_id, esignflow_tenant and esignflow_create_key, and the
// request's own metadata when all of it fits Dropbox Sign's limits (10
// keys, names up to 40 characters, values up to 1000): a request whose
// metadata does not fit is refused with a *provider.PermanentError naming
// the limit — never silently trimmed. Every refusal is a
// *provider.PermanentError before any call.
func (c *Client) Create(ctx context.Context, key string, req schemas.SigningRequest) (provider.Envelope, error) {
	if key == "" {
		key = req.RequestID
	}
	ck := CreateKey(req.Tenant, key)
	body, ctype, err := c.sendBody(ctx, req, ck)
	if err != nil {
		return provider.Envelope{}, fmt.Errorf("dropboxsign: request %s: %w", req.RequestID, err)
	}
	wrap := func(err error) error {
		return fmt.Errorf("dropboxsign: create signature request for request %s (key %s): %w", req.RequestID, ck, err)
	}
	failures := 0
	var last error
	fail := func(err error) error {
		failures++
		last = err
		if failures >= c.api.Attempts {
			return wrap(err)
		}
		return c.api.Backoff(ctx, failures-1, err)
	}
	for {
		lookedAt := c.cfg.Now()
		found, ok, err := c.lookup(ctx, ck)
		if err != nil {
			if !retryable(err) {
				return provider.Envelope{}, wrap(err)
			}
			if err := fail(err); err != nil {
				return provider.Envelope{}, err
			}
			continue
		}
		if ok {
			c.settled(ck)
			return found, nil
		}
		// Send only after a look-up that started once the index had
		// LookupSettle to catch up with the last uncertain send.
		if since, ok := c.uncertainSince(ck); ok {
			if wait := since.Add(c.cfg.LookupSettle).Sub(lookedAt); wait > 0 {
				step := min(max(since.Add(c.cfg.LookupSettle).Sub(c.cfg.Now()), 0), max(c.api.Delay(failures), c.cfg.LookupSettle/5))
				c.log.Debug("dropbox sign send may have reached it; looking again before sending", "request_id", req.RequestID, "key", ck, "wait", step)
				if err := apicall.Sleep(ctx, step, last); err != nil {
					return provider.Envelope{}, err
				}
				continue
			}
		}
		a, err := c.call(ctx, request{method: http.MethodPost, path: "/signature_request/send", body: body, contentType: ctype,
			idemKey: ck, tier: tierHigh, op: "send"}, 32<<20)
		if err == nil {
			var out struct {
				SignatureRequest APISignatureRequest `json:"signature_request"`
			}
			if err := json.Unmarshal(a.Body, &out); err != nil || out.SignatureRequest.ID == "" {
				// Sent, but the answer is unreadable: the look-up
				// finds it.
				c.markUncertain(ck)
				if err := fail(&provider.TransientError{Err: fmt.Errorf("send answer without a signature_request_id: %.200s", a.Body)}); err != nil {
					return provider.Envelope{}, err
				}
				continue
			}
			c.settled(ck)
			return c.created(out.SignatureRequest, req), nil
		}
		if !retryable(err) {
			return provider.Envelope{}, wrap(err)
		}
		c.markUncertain(ck)
		c.log.Info("dropbox sign send failed and may have reached it; looking the request up before sending again",
			"request_id", req.RequestID, "key", ck, "attempt", failures+1, "err", err)
		if err := fail(err); err != nil {
			return provider.Envelope{}, err
		}
	}
}

// created is the Envelope of a signature request just sent or found: its
// metadata completed with the request's ids when the answer lacks them.
func (c *Client) created(sr APISignatureRequest, req schemas.SigningRequest) provider.Envelope {
	env := sr.Envelope(c.cfg.Now())
	for k, v := range map[string]string{provider.RequestIDKey: req.RequestID, provider.TenantKey: req.Tenant} {
		if _, ok := env.Metadata[k]; !ok {
			env.Metadata[k] = v
		}
	}
	return env
}

func (c *Client) markUncertain(ck string) {
	now := c.cfg.Now()
	c.uncertainMu.Lock()
	defer c.uncertainMu.Unlock()
	for k, t := range c.uncertain {
		if now.Sub(t) > c.cfg.LookupSettle {
			delete(c.uncertain, k)
		}
	}
	c.uncertain[ck] = now
}

func (c *Client) uncertainSince(ck string) (time.Time, bool) {
	c.uncertainMu.Lock()
	defer c.uncertainMu.Unlock()
	t, ok := c.uncertain[ck]
	return t, ok
}

func (c *Client) settled(ck string) {
	c.uncertainMu.Lock()
	delete(c.uncertain, ck)
	c.uncertainMu.Unlock()
}

// lookup finds the signature request whose metadata carries the create
// key ck, in one call (Create retries it). Several (which only an ignored
// Idempotency-Key and a lagging index could cause) resolve to the one
// created first, so every attempt picks the same; the others are logged.
func (c *Client) lookup(ctx context.Context, ck string) (provider.Envelope, bool, error) {
	p, err := c.list(ctx, ck, 1, 100, "lookup")
	if err != nil {
		return provider.Envelope{}, false, fmt.Errorf("look up %s: %w", ck, err)
	}
	var found []APISignatureRequest
	for _, sr := range p.SignatureRequests {
		var v string
		if raw, ok := sr.Metadata[CreateKeyField]; ok && json.Unmarshal(raw, &v) == nil && v == ck && sr.ID != "" {
			found = append(found, sr)
		}
	}
	if len(found) == 0 {
		return provider.Envelope{}, false, nil
	}
	slices.SortFunc(found, func(a, b APISignatureRequest) int {
		if n := a.CreatedAt.Compare(b.CreatedAt.Time); n != 0 {
			return n
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(found) > 1 {
		ids := make([]string, len(found))
		for i, sr := range found {
			ids[i] = sr.ID
		}
		c.log.Error("several dropbox sign signature requests carry one create key; using the first, cancel the others by hand",
			"key", ck, "signature_request_ids", ids, "using", found[0].ID)
	}
	env := found[0].Envelope(c.cfg.Now())
	return env, true, nil
}

// signer is one entry of signers[].
type signer struct {
	Name     string `json:"name"`
	Email    string `json:"email_address"`
	Order    *int   `json:"order,omitempty"`
	SMSPhone string `json:"sms_phone_number,omitempty"`
	SMSType  string `json:"sms_phone_number_type,omitempty"`
	rank     int32  // the request's routing order (at least 1)
}

// sendForm is the send body, before encoding.
type sendForm struct {
	Title     string            `json:"title"`
	Subject   string            `json:"subject,omitempty"`
	Message   string            `json:"message,omitempty"`
	Signers   []signer          `json:"signers"`
	CC        []string          `json:"cc_email_addresses,omitempty"`
	FileURLs  []string          `json:"file_urls,omitempty"`
	Metadata  map[string]string `json:"metadata"`
	TestMode  bool              `json:"test_mode"`
	ExpiresAt *int64            `json:"expires_at,omitempty"`
	files     []file            // multipart only
}

type file struct {
	name, contentType string
	body              []byte
}

// sendBody builds the send body of req: JSON, or multipart when a
// document is uploaded. Refusals are *provider.PermanentError; only a
// document fetch can fail transiently. ID verification is refused: Dropbox
// Sign's API has no per-signer identity verification (a PIN is a shared
// secret, not an identity check; is_eid is request-wide, in beta and for
// some plans only).
func (c *Client) sendBody(ctx context.Context, req schemas.SigningRequest, ck string) ([]byte, string, error) {
	refuse := func(format string, a ...any) ([]byte, string, error) {
		return nil, "", &provider.PermanentError{Reason: "dropboxsign: " + fmt.Sprintf(format, a...)}
	}
	if err := (provider.RequestLimits{Provider: "dropboxsign", Name: "Dropbox Sign", Subject: maxSubject, Message: maxMessage}).Check(req); err != nil {
		return nil, "", err
	}
	f := sendForm{Title: req.Subject, Subject: req.Subject, Message: req.Message, TestMode: c.cfg.TestMode}
	if f.Title == "" {
		f.Title = provider.DefaultSubject(req, maxTitle)
	}
	if req.ExpiresAt != nil {
		if !req.ExpiresAt.After(c.cfg.Now()) {
			return refuse("expires_at %s is not in the future", req.ExpiresAt.UTC().Format(time.RFC3339))
		}
		at := req.ExpiresAt.Unix()
		f.ExpiresAt = &at
	}

	// Metadata: esignflow's keys, then the request's, all within limits.
	f.Metadata = provider.Metadata(req)
	f.Metadata[CreateKeyField] = ck // esignflow's too: the request's cannot override it
	if len(f.Metadata) > maxMetadataKeys {
		return refuse("the request has %d metadata keys; Dropbox Sign takes %d per request, and esignflow uses 3 of them (%s, %s, %s)",
			len(req.Metadata), maxMetadataKeys, provider.RequestIDKey, provider.TenantKey, CreateKeyField)
	}
	for _, k := range slices.Sorted(maps.Keys(f.Metadata)) {
		if n := utf8.RuneCountInString(k); n > maxMetadataName {
			return refuse("metadata key %q has %d characters; Dropbox Sign takes at most %d", k, n, maxMetadataName)
		}
		if n := utf8.RuneCountInString(f.Metadata[k]); n > maxMetadataVal {
			return refuse("metadata %q has %d characters; Dropbox Sign takes at most %d", k, n, maxMetadataVal)
		}
	}

	// Recipients: signers, in routing order when the orders differ.
	orders := map[int32]bool{}
	for _, r := range req.Recipients {
		if r.Name == "" || r.Email == "" {
			return refuse("recipient %q needs a name and an e-mail address", r.ID)
		}
		switch strings.ToLower(r.Role) {
		case "", "signer":
		case "cc", "viewer", "carbon_copy", "carboncopy":
			if r.Auth != "" && r.Auth != schemas.AuthEmail {
				return refuse("recipient %q: a %s does not authenticate", r.ID, r.Role)
			}
			f.CC = append(f.CC, r.Email)
			continue
		default:
			return refuse("recipient %q: role %q is not supported (signer, cc, viewer)", r.ID, r.Role)
		}
		s := signer{Name: r.Name, Email: r.Email, rank: max(r.RoutingOrder, 1)}
		switch r.Auth {
		case "", schemas.AuthEmail:
		case schemas.AuthSMS:
			if r.Phone == nil || *r.Phone == "" {
				return refuse("recipient %q: SMS authentication needs a phone number", r.ID)
			}
			if !e164(*r.Phone) {
				return refuse("recipient %q: phone %q is not in E.164 form (+ and up to 15 digits)", r.ID, *r.Phone)
			}
			s.SMSPhone, s.SMSType = *r.Phone, "authentication"
		case schemas.AuthIDVerification:
			return refuse("recipient %q asks for ID verification, which Dropbox Sign's API does not offer per signer (a PIN is not identity verification; is_eid is request-wide and in beta): send it with another provider", r.ID)
		default:
			return refuse("recipient %q: authentication %q is not supported", r.ID, r.Auth)
		}
		f.Signers = append(f.Signers, s)
		orders[s.rank] = true
	}
	if len(f.Signers) == 0 {
		return refuse("the request has no signer (only viewers)")
	}
	if len(orders) > 1 {
		slices.SortStableFunc(f.Signers, func(a, b signer) int { return cmp.Compare(a.rank, b.rank) })
		for n := range f.Signers {
			f.Signers[n].Order = &n
		}
	}

	// Documents.
	byURL := true
	for _, d := range req.Documents {
		if len(d.Content) > 0 || d.URI == nil || !isHTTP(*d.URI) {
			byURL = false
		}
	}
	if byURL {
		for _, d := range req.Documents {
			f.FileURLs = append(f.FileURLs, *d.URI)
		}
		b, err := json.Marshal(f)
		if err != nil {
			return refuse("encode the request: %v", err)
		}
		return b, "application/json", nil
	}
	for i, d := range req.Documents {
		b, err := c.docs.Bytes(ctx, d)
		if err != nil {
			return nil, "", fmt.Errorf("document %d (%q): %w", i+1, d.Name, err)
		}
		f.files = append(f.files, file{name: d.Name, contentType: d.ContentType, body: b})
	}
	return f.multipart()
}

func isHTTP(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (strings.EqualFold(u.Scheme, "http") || strings.EqualFold(u.Scheme, "https")) && u.Host != ""
}

// e164 reports whether s looks like an E.164 number: + and 8 to 15
// digits.
func e164(s string) bool {
	if len(s) < 9 || len(s) > 16 || s[0] != '+' {
		return false
	}
	for _, r := range s[1:] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// multipart encodes f as multipart/form-data in Dropbox Sign's bracket
// form: title, signers[0][email_address], metadata[key], files[0], ….
// Booleans are 1 or 0.
func (f sendForm) multipart() ([]byte, string, error) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	field := func(name, value string) {
		_ = w.WriteField(name, value) // writes to a bytes.Buffer cannot fail
	}
	field("title", f.Title)
	if f.Subject != "" {
		field("subject", f.Subject)
	}
	if f.Message != "" {
		field("message", f.Message)
	}
	for i, s := range f.Signers {
		p := fmt.Sprintf("signers[%d]", i)
		field(p+"[name]", s.Name)
		field(p+"[email_address]", s.Email)
		if s.Order != nil {
			field(p+"[order]", strconv.Itoa(*s.Order))
		}
		if s.SMSPhone != "" {
			field(p+"[sms_phone_number]", s.SMSPhone)
			field(p+"[sms_phone_number_type]", s.SMSType)
		}
	}
	for i, e := range f.CC {
		field(fmt.Sprintf("cc_email_addresses[%d]", i), e)
	}
	for _, k := range slices.Sorted(maps.Keys(f.Metadata)) {
		field("metadata["+k+"]", f.Metadata[k])
	}
	if f.TestMode {
		field("test_mode", "1")
	} else {
		field("test_mode", "0")
	}
	if f.ExpiresAt != nil {
		field("expires_at", strconv.FormatInt(*f.ExpiresAt, 10))
	}
	for i, fl := range f.files {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="files[%d]"; filename=%q`, i, fl.name))
		ct := fl.contentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		h.Set("Content-Type", ct)
		pw, err := w.CreatePart(h)
		if err != nil {
			return nil, "", err
		}
		_, _ = pw.Write(fl.body)
	}
	if err := w.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), w.FormDataContentType(), nil
}
