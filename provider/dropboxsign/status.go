package dropboxsign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

// APISignatureRequest is the part of Dropbox Sign's SignatureRequestResponse
// esignflow reads: the object every API answer (send, get, list) carries,
// normalised by Envelope. A callback's "signature_request" is the same
// object, but Parse reads it as Callback and maps it by event type (see
// Envelope); the two share SignerStatus.
type APISignatureRequest struct {
	ID         string                     `json:"signature_request_id"`
	Title      string                     `json:"title"`
	Metadata   map[string]json.RawMessage `json:"metadata"`
	CreatedAt  UnixTime                   `json:"created_at"`
	ExpiresAt  UnixTime                   `json:"expires_at"`
	IsComplete bool                       `json:"is_complete"`
	IsDeclined bool                       `json:"is_declined"`
	HasError   bool                       `json:"has_error"`
	TestMode   bool                       `json:"test_mode"`
	Signatures []APISignature             `json:"signatures"`
}

// APISignature is one signer of an APISignatureRequest.
type APISignature struct {
	ID            string   `json:"signature_id"`
	Email         string   `json:"signer_email_address"`
	Name          string   `json:"signer_name"`
	Order         *int     `json:"order"`
	StatusCode    string   `json:"status_code"`
	SignedAt      UnixTime `json:"signed_at"`
	LastViewedAt  UnixTime `json:"last_viewed_at"`
	DeclineReason string   `json:"decline_reason"`
	Error         string   `json:"error"`
	// ReassignedFrom is the signature this one was reassigned from.
	ReassignedFrom string `json:"reassigned_from"`
}

// UnixTime is one of Dropbox Sign's timestamps: Unix seconds, as a JSON
// number (the API's answers), a string of digits (a callback's
// event_time) or null. The zero value is "none".
type UnixTime struct{ time.Time }

// UnmarshalJSON reads a number, a string of digits or null.
func (u *UnixTime) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" || string(b) == `""` {
		u.Time = time.Time{}
		return nil
	}
	s := strings.Trim(string(b), `"`)
	n, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("dropboxsign: timestamp %s is not Unix seconds", b)
	}
	u.Time = time.Unix(int64(n), 0).UTC()
	return nil
}

// MarshalJSON writes Unix seconds, or null for none.
func (u UnixTime) MarshalJSON() ([]byte, error) {
	if u.IsZero() {
		return []byte("null"), nil
	}
	return []byte(strconv.FormatInt(u.Unix(), 10)), nil
}

// SignerStatus normalises one signature's status_code. viewed is whether
// it has a last_viewed_at; waiting is whether, in an ordered request, an
// earlier signer has yet to sign (Dropbox Sign says awaiting_signature for
// every signer, but invites the next one only when the previous signed).
// error_invalid_email is BOUNCED (the sender may correct the address);
// the other error_* codes (error_file, error_converting, …) are FAILED.
// false for a code esignflow does not know. Callbacks (Parse) and API
// answers (Envelope) both read signatures with it.
func SignerStatus(code string, viewed, waiting bool) (schemas.RecipientStatus, bool) {
	switch code = strings.ToLower(code); {
	case code == "awaiting_signature" && waiting:
		return schemas.RecipientCreated, true
	case code == "awaiting_signature" && viewed:
		return schemas.RecipientViewed, true
	case code == "awaiting_signature":
		return schemas.RecipientSent, true
	case code == "on_hold":
		// The request is held (e.g. for the sender's approval): nobody
		// has been invited yet.
		return schemas.RecipientCreated, true
	case code == "signed":
		return schemas.RecipientSigned, true
	case code == "declined":
		return schemas.RecipientDeclined, true
	case code == "error_invalid_email":
		// The invitation bounced: not final, the sender can correct
		// the address.
		return schemas.RecipientBounced, true
	case strings.HasPrefix(code, "error"):
		return schemas.RecipientFailed, true
	}
	return "", false
}

// Envelope normalises r as Dropbox Sign describes it at now. The answer
// has no status field, so the status is derived, first match wins:
//
//   - is_complete: COMPLETED (at the last signed_at);
//   - is_declined, or a signature declined: DECLINED;
//   - has_error: FAILED (Dropbox Sign could not process the request);
//   - expires_at passed: EXPIRED (at expires_at);
//   - a signature signed: PARTIALLY_SIGNED (at the last signed_at);
//   - a signature viewed: VIEWED (at the last last_viewed_at);
//   - otherwise SENT (at created_at).
//
// A decline or an error carries no time of its own: its StatusAt is the
// latest time the answer holds. Cancellation is not in the answer at all
// (a canceled request answers 410; see Get). Metadata values come back as
// strings; any other JSON value is kept as its JSON text. Recipients are
// the signatures, recipient_id = signature_id, in the order of the
// answer; a signature reassigned from another replaces it (Replaces =
// reassigned_from).
//
// A callback says more than its signature_request does (the event type:
// a cancellation, a bounce, which signature was viewed), so Parse maps it
// by event type and reads its signatures with SignerStatus.
func (r APISignatureRequest) Envelope(now time.Time) provider.Envelope {
	out := provider.Envelope{ID: r.ID, Recipients: []schemas.RecipientUpdate{}, Metadata: map[string]string{}}
	for k, raw := range r.Metadata {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			out.Metadata[k] = s
		} else if string(raw) != "null" {
			out.Metadata[k] = string(raw)
		}
	}
	// In an ordered request (signers with distinct orders), the signers
	// after the first one still awaiting have not been invited yet.
	turn, orders := -1, map[int]bool{}
	for _, s := range r.Signatures {
		if s.Order == nil {
			continue
		}
		orders[*s.Order] = true
		if strings.EqualFold(s.StatusCode, "awaiting_signature") && (turn < 0 || *s.Order < turn) {
			turn = *s.Order
		}
	}
	ordered := len(orders) > 1
	var signed, viewed, latest time.Time
	var anySigned, anyViewed, anyDeclined bool
	latest = r.CreatedAt.Time
	for _, s := range r.Signatures {
		if s.SignedAt.After(signed) {
			signed = s.SignedAt.Time
		}
		if s.LastViewedAt.After(viewed) {
			viewed = s.LastViewedAt.Time
		}
		code := strings.ToLower(s.StatusCode)
		anySigned = anySigned || code == "signed"
		anyViewed = anyViewed || !s.LastViewedAt.IsZero()
		anyDeclined = anyDeclined || code == "declined"
		waiting := ordered && s.Order != nil && turn >= 0 && *s.Order > turn
		st, ok := SignerStatus(code, !s.LastViewedAt.IsZero(), waiting)
		if !ok || s.ID == "" {
			continue
		}
		u := schemas.RecipientUpdate{RecipientID: s.ID, Email: s.Email, Name: s.Name, Status: st}
		if s.ReassignedFrom != "" && s.ReassignedFrom != s.ID {
			u.Replaces = &s.ReassignedFrom
		}
		out.Recipients = append(out.Recipients, u)
	}
	for _, t := range []time.Time{signed, viewed} {
		if t.After(latest) {
			latest = t
		}
	}
	at := func(ts ...time.Time) time.Time {
		for _, t := range ts {
			if !t.IsZero() {
				return t.UTC()
			}
		}
		return now.UTC()
	}
	switch {
	case r.IsComplete:
		out.Status, out.StatusAt = schemas.StatusCompleted, at(signed, latest)
	case r.IsDeclined || anyDeclined:
		out.Status, out.StatusAt = schemas.StatusDeclined, at(latest)
	case r.HasError:
		out.Status, out.StatusAt = schemas.StatusFailed, at(latest)
	case !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt.Time):
		out.Status, out.StatusAt = schemas.StatusExpired, at(r.ExpiresAt.Time)
	case anySigned:
		out.Status, out.StatusAt = schemas.StatusPartiallySigned, at(signed, latest)
	case anyViewed:
		out.Status, out.StatusAt = schemas.StatusViewed, at(viewed, latest)
	default:
		out.Status, out.StatusAt = schemas.StatusSent, at(r.CreatedAt.Time)
	}
	return out
}

// Get returns a signature request's status with its signers and metadata
// (GET /signature_request/{id}). ErrNotFound when Dropbox Sign does not
// know it (404). A request canceled by its sender answers 410 deleted
// (signature_request/cancel; a completed one removed from the account
// answers the same, but the reconciler does not poll settled envelopes):
// Get reports it VOIDED, without signers or metadata, at now.
func (c *Client) Get(ctx context.Context, id string) (provider.Envelope, error) {
	var out struct {
		SignatureRequest APISignatureRequest `json:"signature_request"`
	}
	err := c.do(ctx, request{method: http.MethodGet, path: "/signature_request/" + url.PathEscape(id), op: "get", tier: tierStandard}, &out)
	switch {
	case errors.Is(err, errGone):
		return provider.Envelope{ID: id, Status: schemas.StatusVoided, StatusAt: c.cfg.Now().UTC(),
			Recipients: []schemas.RecipientUpdate{}, Metadata: map[string]string{}}, nil
	case err != nil:
		return provider.Envelope{}, fmt.Errorf("dropboxsign: get signature request %s: %w", id, err)
	}
	if out.SignatureRequest.ID == "" {
		out.SignatureRequest.ID = id
	}
	return out.SignatureRequest.Envelope(c.cfg.Now()), nil
}

// listPage is GET /signature_request/list's answer.
type listPage struct {
	SignatureRequests []APISignatureRequest `json:"signature_requests"`
	ListInfo          struct {
		NumPages   int `json:"num_pages"`
		NumResults int `json:"num_results"`
		Page       int `json:"page"`
		PageSize   int `json:"page_size"`
	} `json:"list_info"`
}

// list asks for one page of the account's signature requests matching
// query ("" for all).
func (c *Client) list(ctx context.Context, query string, page, size int, op string) (listPage, error) {
	q := url.Values{"page": {strconv.Itoa(page)}, "page_size": {strconv.Itoa(size)}}
	if query != "" {
		q.Set("query", query)
	}
	var p listPage
	err := c.do(ctx, request{method: http.MethodGet, path: "/signature_request/list", query: q, op: op, tier: tierStandard}, &p)
	return p, err
}

// ChangedSince approximates "what changed since" with what Dropbox Sign
// offers, which is no such filter: its list (GET /signature_request/list,
// Config.PageSize a page, the cursor is the next page number) walks every
// signature request of the account, newest created first, and ChangedSince
// keeps those whose latest time in the answer — created_at, a signed_at, a
// last_viewed_at, an expires_at passed — is at or after since, each page
// sorted oldest first by that time (not the whole listing: pages are read
// in Dropbox Sign's order, which is safer, since a request created while
// paging pushes the others to later pages: it can repeat one, never skip
// one). Its limits, honestly: a decline, an error or a cancellation
// carries no time, so a request declined after since whose other times
// are older is not returned; and every call walks the whole account, one
// standard-tier call a page. Webhooks and Get are what catch changes;
// this is a safety net.
func (c *Client) ChangedSince(ctx context.Context, since time.Time, cursor string) ([]provider.Envelope, string, error) {
	page := 1
	if cursor != "" {
		n, err := strconv.Atoi(cursor)
		if err != nil || n < 1 {
			return nil, "", &provider.PermanentError{Reason: fmt.Sprintf("dropboxsign: cursor %q is not one ChangedSince returned", cursor)}
		}
		page = n
	}
	p, err := c.list(ctx, "", page, c.cfg.PageSize, "list")
	if err != nil {
		return nil, "", fmt.Errorf("dropboxsign: list changes since %s: %w", since.UTC().Format(time.RFC3339), err)
	}
	now := c.cfg.Now()
	var out []provider.Envelope
	for _, sr := range p.SignatureRequests {
		if sr.ID == "" {
			continue
		}
		if !sr.lastTime(now).Before(since) {
			out = append(out, sr.Envelope(now))
		}
	}
	slices.SortStableFunc(out, func(a, b provider.Envelope) int { return a.StatusAt.Compare(b.StatusAt) })
	if len(p.SignatureRequests) == 0 || page >= p.ListInfo.NumPages {
		return out, "", nil
	}
	return out, strconv.Itoa(page + 1), nil
}

// lastTime is the latest time r's answer holds.
func (r APISignatureRequest) lastTime(now time.Time) time.Time {
	t := r.CreatedAt.Time
	for _, s := range r.Signatures {
		for _, u := range []time.Time{s.SignedAt.Time, s.LastViewedAt.Time} {
			if u.After(t) {
				t = u
			}
		}
	}
	if e := r.ExpiresAt.Time; !e.IsZero() && !now.Before(e) && e.After(t) {
		t = e
	}
	return t
}
