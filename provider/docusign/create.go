package docusign

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/apicall"
	"github.com/esignflow/esignflow/schemas"
)

// Field limits DocuSign documents (envelopeDefinition, textCustomField).
const (
	maxSubject     = 100
	maxBlurb       = 10000
	maxCustomValue = 100
)

// TransactionID is the transactionId esignflow gives the envelope of a
// request: "esf1-" and 32 hex digits of SHA-256(tenant, request id), so it
// is deterministic, the same for every attempt and every replica, distinct
// across tenants, and 37 characters whatever the request id's length (the
// exact maximum DocuSign accepts is not documented; 37 stays well under
// the 100 of its other identifiers).
func TransactionID(tenant, requestID string) string {
	return "esf1-" + provider.KeyDigest(tenant, requestID)
}

// envelopeDefinition is the create body (the fields esignflow sets).
type envelopeDefinition struct {
	EmailSubject  string        `json:"emailSubject"`
	EmailBlurb    string        `json:"emailBlurb,omitempty"`
	Status        string        `json:"status"`
	TransactionID string        `json:"transactionId"`
	Documents     []document    `json:"documents"`
	Recipients    recipients    `json:"recipients"`
	CustomFields  customFields  `json:"customFields"`
	Notification  *notification `json:"notification,omitempty"`
}

type document struct {
	DocumentBase64 string `json:"documentBase64"`
	DocumentID     string `json:"documentId"`
	Name           string `json:"name"`
	FileExtension  string `json:"fileExtension"`
	Order          string `json:"order"`
}

type recipients struct {
	Signers      []recipient `json:"signers,omitempty"`
	CarbonCopies []recipient `json:"carbonCopies,omitempty"`
	// Read only: the other recipient types, reported with their status.
	CertifiedDeliveries []recipient `json:"certifiedDeliveries,omitempty"`
	Agents              []recipient `json:"agents,omitempty"`
	Editors             []recipient `json:"editors,omitempty"`
	Intermediaries      []recipient `json:"intermediaries,omitempty"`
	InPersonSigners     []recipient `json:"inPersonSigners,omitempty"`
	Witnesses           []recipient `json:"witnesses,omitempty"`
}

// all lists every recipient, of every type.
func (r recipients) all() []recipient {
	return slices.Concat(r.Signers, r.CarbonCopies, r.CertifiedDeliveries, r.Agents, r.Editors,
		r.Intermediaries, r.InPersonSigners, r.Witnesses)
}

// recipient is a signer or carbon copy, as sent and as read.
type recipient struct {
	RecipientID              string                `json:"recipientId"`
	RoutingOrder             string                `json:"routingOrder,omitempty"`
	Name                     string                `json:"name"`
	Email                    string                `json:"email"`
	IDCheckConfigurationName string                `json:"idCheckConfigurationName,omitempty"`
	SMSAuthentication        *smsAuthentication    `json:"smsAuthentication,omitempty"`
	IdentityVerification     *identityVerification `json:"identityVerification,omitempty"`
	CustomFields             []string              `json:"customFields,omitempty"`
	// Read only.
	Status              string `json:"status,omitempty"`
	SentDateTime        string `json:"sentDateTime,omitempty"`
	DeliveredDateTime   string `json:"deliveredDateTime,omitempty"`
	SignedDateTime      string `json:"signedDateTime,omitempty"`
	DeclinedDateTime    string `json:"declinedDateTime,omitempty"`
	DeclinedReason      string `json:"declinedReason,omitempty"`
	AutoRespondedReason string `json:"autoRespondedReason,omitempty"`
}

type smsAuthentication struct {
	SenderProvidedNumbers []string `json:"senderProvidedNumbers"`
}

type identityVerification struct {
	WorkflowID string `json:"workflowId"`
}

type customFields struct {
	TextCustomFields []textCustomField `json:"textCustomFields"`
}

type textCustomField struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	Show     string `json:"show,omitempty"`
	Required string `json:"required,omitempty"`
}

type notification struct {
	UseAccountDefaults string      `json:"useAccountDefaults"`
	Expirations        expirations `json:"expirations"`
}

type expirations struct {
	ExpireEnabled string `json:"expireEnabled"`
	ExpireAfter   string `json:"expireAfter"`
}

// RecipientIDField prefixes the signer custom field that keeps the
// request's own recipient id when DocuSign's recipientId differs from it.
const RecipientIDField = "esignflow_recipient_id="

// Create creates the envelope of req idempotently, without an idempotency
// key (DocuSign has none): as a draft (status created) carrying a
// transactionId derived from the tenant and key (the request id), then
// sent with PUT {"status":"sent"} in a second call, so a stray draft can
// never reach a signer. Every attempt — the first included, since a
// process that died after creating cannot tell — first looks the
// transaction id up and finishes what it finds: a draft is sent, a sent
// envelope is returned as it is; only when it finds none does it create.
// A failed or timed-out create or send is retried the same way, so one
// request never yields two envelopes.
//
// Documents go inline (documentBase64): the request's bytes, or the bytes
// fetched from an http(s):// or file:// URI, checked against the request's
// SHA-256. Anything DocuSign cannot take, or a document that does not
// match its hash, is a *provider.PermanentError before any call.
func (c *Client) Create(ctx context.Context, key string, req schemas.SigningRequest) (provider.Envelope, error) {
	if key == "" {
		key = req.RequestID
	}
	def, out, err := c.definition(ctx, req)
	if err != nil {
		return provider.Envelope{}, fmt.Errorf("docusign: request %s: %w", req.RequestID, err)
	}
	def.TransactionID = TransactionID(req.Tenant, key)
	var last error
	for attempt := 0; attempt < c.api.Attempts; attempt++ {
		if attempt > 0 {
			if err := c.api.Backoff(ctx, attempt-1, last); err != nil {
				return provider.Envelope{}, err
			}
		}
		env, err := c.createOnce(ctx, def, out)
		if err == nil {
			return env, nil
		}
		last = fmt.Errorf("docusign: create envelope for request %s (transaction %s): %w", req.RequestID, def.TransactionID, err)
		if !retryable(err) {
			return provider.Envelope{}, last
		}
		c.log.Info("docusign create attempt failed; looking the transaction up before trying again",
			"request_id", req.RequestID, "transaction_id", def.TransactionID, "attempt", attempt+1, "err", err)
	}
	return provider.Envelope{}, last
}

// retryable reports whether an error is worth another attempt now:
// apicall's default (a transient failure, not a rate limit), nor a
// per-envelope limit; the caller schedules both limits.
func retryable(err error) bool {
	var el *EnvelopeLimitError
	return apicall.Transient(err) && !errors.As(err, &el)
}

// createOnce is one attempt: look up, then create and/or send as needed.
func (c *Client) createOnce(ctx context.Context, def *envelopeDefinition, out provider.Envelope) (provider.Envelope, error) {
	found, err := c.lookupTransaction(ctx, def.TransactionID)
	if err != nil {
		return provider.Envelope{}, err
	}
	id, status := found.EnvelopeID, strings.ToLower(found.Status)
	if id == "" {
		a, err := c.call(ctx, request{method: http.MethodPost, path: "/envelopes", body: def, op: "create"}, 1<<20)
		if err != nil {
			return provider.Envelope{}, err
		}
		var sum struct {
			EnvelopeID string `json:"envelopeId"`
			Status     string `json:"status"`
		}
		if err := json.Unmarshal(a.Body, &sum); err != nil || sum.EnvelopeID == "" {
			// Created, but the answer is unreadable: the next
			// attempt's look-up finds it.
			return provider.Envelope{}, &provider.TransientError{Err: fmt.Errorf("create answer without an envelopeId: %s", a.Body[:min(len(a.Body), 200)])}
		}
		id, status = sum.EnvelopeID, strings.ToLower(sum.Status)
		c.log.Debug("docusign draft created", "envelope_id", id, "transaction_id", def.TransactionID)
	}
	if status == "created" || status == "" {
		_, err := c.call(ctx, request{method: http.MethodPut, path: "/envelopes/" + url.PathEscape(id),
			body: map[string]string{"status": "sent"}, envs: []string{id}, op: "send"}, 1<<20)
		if err != nil {
			return provider.Envelope{}, fmt.Errorf("send draft %s: %w", id, err)
		}
		out.ID = id
		out.StatusAt = c.cfg.Now().UTC()
		return out, nil
	}
	// Sent (or further) by an earlier attempt: report what DocuSign says.
	env, err := c.Get(ctx, id)
	if err != nil {
		c.log.Info("docusign envelope found by its transaction id but not read; reporting it from the look-up",
			"envelope_id", id, "status", status, "err", err)
		st, ok := envelopeStatus[status]
		if !ok {
			st = schemas.StatusSent
		}
		out.ID, out.Status, out.StatusAt = id, st, c.cfg.Now().UTC()
		return out, nil
	}
	return env, nil
}

// transactionStatus is one entry of a transaction_ids look-up.
type transactionStatus struct {
	EnvelopeID    string `json:"envelopeId"`
	Status        string `json:"status"`
	TransactionID string `json:"transactionId"`
}

// lookupTransaction finds the envelope created with transactionId txid
// (GET /envelopes?transaction_ids=), in one call (Create retries it); the
// zero value when there is none.
// Several (which only a lagging index or a concurrent creator could
// cause) resolve to a sent one if any, else the smallest id, so every
// attempt picks the same.
func (c *Client) lookupTransaction(ctx context.Context, txid string) (transactionStatus, error) {
	var page struct {
		EnvelopeTransactionStatuses []transactionStatus `json:"envelopeTransactionStatuses"`
		Envelopes                   []transactionStatus `json:"envelopes"`
	}
	a, err := c.call(ctx, request{method: http.MethodGet, path: "/envelopes", query: url.Values{"transaction_ids": {txid}}, op: "lookup"}, 32<<20)
	if err != nil {
		return transactionStatus{}, fmt.Errorf("look up transaction %s: %w", txid, err)
	}
	if err := json.Unmarshal(a.Body, &page); err != nil {
		return transactionStatus{}, &provider.TransientError{Err: fmt.Errorf("look up transaction %s: decode: %w", txid, err)}
	}
	var found []transactionStatus
	for _, s := range slices.Concat(page.EnvelopeTransactionStatuses, page.Envelopes) {
		if s.EnvelopeID != "" && (s.TransactionID == "" || s.TransactionID == txid) {
			found = append(found, s)
		}
	}
	if len(found) == 0 {
		return transactionStatus{}, nil
	}
	slices.SortFunc(found, func(a, b transactionStatus) int {
		ad, bd := strings.EqualFold(a.Status, "created"), strings.EqualFold(b.Status, "created")
		switch {
		case ad && !bd:
			return 1
		case !ad && bd:
			return -1
		}
		return strings.Compare(a.EnvelopeID, b.EnvelopeID)
	})
	if ids := distinctIDs(found); len(ids) > 1 {
		c.log.Warn("several docusign envelopes carry one transaction id; using one, the other drafts are never sent",
			"transaction_id", txid, "envelope_ids", ids, "using", found[0].EnvelopeID)
	}
	return found[0], nil
}

func distinctIDs(ss []transactionStatus) []string {
	var ids []string
	for _, s := range ss {
		if !slices.Contains(ids, s.EnvelopeID) {
			ids = append(ids, s.EnvelopeID)
		}
	}
	return ids
}

// definition builds the create body and the Envelope Create returns once
// sent. Every error is a *provider.PermanentError except a transient
// failure to fetch a document.
func (c *Client) definition(ctx context.Context, req schemas.SigningRequest) (*envelopeDefinition, provider.Envelope, error) {
	refuse := func(format string, a ...any) (*envelopeDefinition, provider.Envelope, error) {
		return nil, provider.Envelope{}, &provider.PermanentError{Reason: "docusign: " + fmt.Sprintf(format, a...)}
	}
	if err := (provider.RequestLimits{Provider: "docusign", Name: "DocuSign", Subject: maxSubject, Message: maxBlurb}).Check(req); err != nil {
		return nil, provider.Envelope{}, err
	}
	def := &envelopeDefinition{Status: "created", EmailSubject: req.Subject, EmailBlurb: req.Message}
	if def.EmailSubject == "" {
		def.EmailSubject = provider.DefaultSubject(req, maxSubject)
	}
	meta := provider.Metadata(req)
	names := make([]string, 0, len(meta))
	for k := range meta {
		names = append(names, k)
	}
	slices.Sort(names)
	def.CustomFields.TextCustomFields = []textCustomField{}
	for _, k := range names {
		if n := utf8.RuneCountInString(meta[k]); n > maxCustomValue {
			return refuse("metadata %q has %d characters; a DocuSign custom field takes at most %d", k, n, maxCustomValue)
		}
		def.CustomFields.TextCustomFields = append(def.CustomFields.TextCustomFields,
			textCustomField{Name: k, Value: meta[k], Show: "false", Required: "false"})
	}
	if req.ExpiresAt != nil {
		days := int(math.Ceil(req.ExpiresAt.Sub(c.cfg.Now()).Hours() / 24))
		if days < 1 {
			return refuse("expires_at %s is not in the future", req.ExpiresAt.UTC().Format(time.RFC3339))
		}
		def.Notification = &notification{UseAccountDefaults: "false",
			Expirations: expirations{ExpireEnabled: "true", ExpireAfter: strconv.Itoa(days)}}
	}
	for i, d := range req.Documents {
		b, err := c.docs.Bytes(ctx, d)
		if err != nil {
			return nil, provider.Envelope{}, fmt.Errorf("document %d (%q): %w", i+1, d.Name, err)
		}
		def.Documents = append(def.Documents, document{
			DocumentBase64: base64.StdEncoding.EncodeToString(b), DocumentID: strconv.Itoa(i + 1),
			Name: d.Name, FileExtension: fileExtension(d), Order: strconv.Itoa(i + 1),
		})
	}
	ids := recipientIDs(req.Recipients)
	out := provider.Envelope{Status: schemas.StatusSent, Metadata: meta}
	first := int32(math.MaxInt32)
	for _, r := range req.Recipients {
		first = min(first, max(r.RoutingOrder, 1))
	}
	for i, r := range req.Recipients {
		order := max(r.RoutingOrder, 1)
		rc := recipient{RecipientID: ids[i], RoutingOrder: strconv.Itoa(int(order)), Name: r.Name, Email: r.Email}
		if rc.Name == "" || rc.Email == "" {
			return refuse("recipient %q needs a name and an e-mail address", r.ID)
		}
		if ids[i] != r.ID {
			rc.CustomFields = []string{RecipientIDField + r.ID}
		}
		switch r.Auth {
		case "", schemas.AuthEmail:
		case schemas.AuthSMS:
			if r.Phone == nil || *r.Phone == "" {
				return refuse("recipient %q: SMS authentication needs a phone number", r.ID)
			}
			rc.IDCheckConfigurationName = "SMS Auth $"
			rc.SMSAuthentication = &smsAuthentication{SenderProvidedNumbers: []string{*r.Phone}}
		case schemas.AuthIDVerification:
			if c.cfg.IDVerificationWorkflow == "" {
				return refuse("recipient %q asks for ID verification, and no identity-verification workflow is configured (Config.IDVerificationWorkflow)", r.ID)
			}
			rc.IdentityVerification = &identityVerification{WorkflowID: c.cfg.IDVerificationWorkflow}
		default:
			return refuse("recipient %q: authentication %q is not supported", r.ID, r.Auth)
		}
		switch strings.ToLower(r.Role) {
		case "", "signer":
			def.Recipients.Signers = append(def.Recipients.Signers, rc)
		case "cc", "viewer", "carbon_copy", "carboncopy":
			if rc.SMSAuthentication != nil || rc.IdentityVerification != nil {
				return refuse("recipient %q: a %s does not authenticate", r.ID, r.Role)
			}
			def.Recipients.CarbonCopies = append(def.Recipients.CarbonCopies, rc)
		default:
			return refuse("recipient %q: role %q is not supported (signer, cc, viewer)", r.ID, r.Role)
		}
		st := schemas.RecipientCreated
		if order == first {
			st = schemas.RecipientSent
		}
		out.Recipients = append(out.Recipients, schemas.RecipientUpdate{RecipientID: ids[i], Email: r.Email, Name: r.Name, Status: st})
	}
	return def, out, nil
}

// recipientIDs gives each recipient DocuSign's recipientId: the request's
// own ids when all of them are distinct integers DocuSign takes (1 to
// 2147483647), else 1, 2, 3… in request order (the request's id then
// travels in the signer's custom fields). Events and polls report these.
func recipientIDs(rs []schemas.Recipient) []string {
	ids := make([]string, len(rs))
	seen := map[string]bool{}
	own := true
	for i, r := range rs {
		n, err := strconv.ParseInt(r.ID, 10, 32)
		if err != nil || n < 1 || strconv.FormatInt(n, 10) != r.ID || seen[r.ID] {
			own = false
			break
		}
		seen[r.ID] = true
		ids[i] = r.ID
	}
	if !own {
		for i := range ids {
			ids[i] = strconv.Itoa(i + 1)
		}
	}
	return ids
}

var extensions = map[string]string{
	"application/pdf": "pdf", "application/msword": "doc", "text/plain": "txt", "text/html": "html",
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":       "xlsx",
	"image/png": "png", "image/jpeg": "jpg",
}

// fileExtension is the document's extension: from its name, else its
// content type, else pdf (DocuSign requires it for anything not a PDF).
func fileExtension(d schemas.Document) string {
	if ext := strings.TrimPrefix(path.Ext(d.Name), "."); ext != "" && len(ext) <= 5 {
		return strings.ToLower(ext)
	}
	ct, _, _ := strings.Cut(d.ContentType, ";")
	if ext, ok := extensions[strings.ToLower(strings.TrimSpace(ct))]; ok {
		return ext
	}
	return "pdf"
}
