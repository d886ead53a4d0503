package docusign

import (
	"context"
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

// envelopeJSON is the part of DocuSign's envelope (GET /envelopes/{id},
// listStatusChanges entries, Connect's envelopeSummary) esignflow reads.
type envelopeJSON struct {
	EnvelopeID            string     `json:"envelopeId"`
	Status                string     `json:"status"`
	StatusChangedDateTime string     `json:"statusChangedDateTime"`
	StatusDateTime        string     `json:"statusDateTime"`
	LastModifiedDateTime  string     `json:"lastModifiedDateTime"`
	VoidedReason          string     `json:"voidedReason"`
	TransactionID         string     `json:"transactionId"`
	Recipients            recipients `json:"recipients"`
	CustomFields          struct {
		TextCustomFields []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"textCustomFields"`
	} `json:"customFields"`
}

var envelopeStatus = map[string]schemas.Status{
	"created": schemas.StatusCreated, "sent": schemas.StatusSent, "delivered": schemas.StatusDelivered,
	"signed": schemas.StatusPartiallySigned, "completed": schemas.StatusCompleted,
	"declined": schemas.StatusDeclined, "voided": schemas.StatusVoided,
	// List-only values: an envelope being created asynchronously, a
	// deleted draft, a timed-out one.
	"processing": schemas.StatusCreated, "deleted": schemas.StatusVoided, "timedout": schemas.StatusExpired,
}

var recipientStatus = map[string]schemas.RecipientStatus{
	"created": schemas.RecipientCreated, "sent": schemas.RecipientSent,
	"delivered": schemas.RecipientViewed, // DocuSign's delivered means opened
	"signed":    schemas.RecipientSigned, "completed": schemas.RecipientSigned,
	// autoresponded: the invitation bounced or was answered by an
	// auto-reply; the sender can correct the address and resend.
	"declined": schemas.RecipientDeclined, "autoresponded": schemas.RecipientBounced,
	"faxpending": schemas.RecipientSent,
}

// normaliseStatus maps an envelope's status; an expired envelope is voided
// by DocuSign with a reason saying so, and is EXPIRED here.
func normaliseStatus(status, voidedReason string) (schemas.Status, bool) {
	st, ok := envelopeStatus[strings.ToLower(status)]
	if st == schemas.StatusVoided && strings.Contains(strings.ToLower(voidedReason), "expired") {
		st = schemas.StatusExpired
	}
	return st, ok
}

// parseTime reads DocuSign's date-times: RFC 3339 with up to seven
// fractional digits, or without a zone (taken as UTC).
func parseTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), true
	}
	if t, err := time.Parse("2006-01-02T15:04:05.999999999", s); err == nil {
		return t.UTC(), true
	}
	return time.Time{}, false
}

// envelope converts e; false when its status is not one esignflow knows.
func (e envelopeJSON) envelope(fallback time.Time) (provider.Envelope, bool) {
	st, ok := normaliseStatus(e.Status, e.VoidedReason)
	if !ok || e.EnvelopeID == "" {
		return provider.Envelope{}, false
	}
	out := provider.Envelope{ID: e.EnvelopeID, Status: st, StatusAt: fallback.UTC(), Recipients: []schemas.RecipientUpdate{}, Metadata: map[string]string{}}
	for _, s := range []string{e.StatusChangedDateTime, e.StatusDateTime, e.LastModifiedDateTime} {
		if t, ok := parseTime(s); ok {
			out.StatusAt = t
			break
		}
	}
	for _, f := range e.CustomFields.TextCustomFields {
		out.Metadata[f.Name] = f.Value
	}
	for _, r := range e.Recipients.all() {
		u, ok := r.update()
		if ok {
			out.Recipients = append(out.Recipients, u)
		}
	}
	slices.SortStableFunc(out.Recipients, func(a, b schemas.RecipientUpdate) int { return strings.Compare(a.RecipientID, b.RecipientID) })
	return out, true
}

// update converts a recipient; false when its status is unknown.
func (r recipient) update() (schemas.RecipientUpdate, bool) {
	st, ok := recipientStatus[strings.ToLower(r.Status)]
	if !ok || r.RecipientID == "" {
		return schemas.RecipientUpdate{}, false
	}
	return schemas.RecipientUpdate{RecipientID: r.RecipientID, Email: r.Email, Name: r.Name, Status: st}, true
}

// Get returns an envelope's status with its recipients and custom fields
// (GET /envelopes/{id}?include=recipients,custom_fields). ErrNotFound when
// DocuSign does not know it; an *EnvelopeLimitError while the envelope is
// backed off after a per-envelope polling error.
func (c *Client) Get(ctx context.Context, id string) (provider.Envelope, error) {
	var e envelopeJSON
	err := c.do(ctx, request{method: http.MethodGet, path: "/envelopes/" + url.PathEscape(id),
		query: url.Values{"include": {"recipients,custom_fields"}}, envs: []string{id}, op: "get"}, &e)
	if err != nil {
		return provider.Envelope{}, fmt.Errorf("docusign: get envelope %s: %w", id, err)
	}
	if e.EnvelopeID == "" {
		e.EnvelopeID = id
	}
	env, ok := e.envelope(c.cfg.Now())
	if !ok {
		return provider.Envelope{}, &provider.TransientError{Err: fmt.Errorf("docusign: envelope %s has status %q, not one esignflow knows", id, e.Status)}
	}
	return env, nil
}

// listPage is listStatusChanges' answer (envelopesInformation); its
// numbers are strings.
type listPage struct {
	ResultSetSize string         `json:"resultSetSize"`
	TotalSetSize  string         `json:"totalSetSize"`
	StartPosition string         `json:"startPosition"`
	EndPosition   string         `json:"endPosition"`
	NextURI       string         `json:"nextUri"`
	Envelopes     []envelopeJSON `json:"envelopes"`
}

// next returns the start_position of the page after p, or -1.
func (p listPage) next(asked int) int {
	start, _ := strconv.Atoi(p.StartPosition)
	if start == 0 && p.StartPosition == "" {
		start = asked
	}
	n, err := strconv.Atoi(p.ResultSetSize)
	if err != nil {
		n = len(p.Envelopes)
	}
	if n == 0 {
		return -1
	}
	if p.NextURI != "" {
		if u, err := url.Parse(p.NextURI); err == nil {
			if s, err := strconv.Atoi(u.Query().Get("start_position")); err == nil && s > start {
				return s
			}
		}
		return start + n
	}
	if total, err := strconv.Atoi(p.TotalSetSize); err == nil && start+n < total {
		return start + n
	}
	return -1
}

// list asks listStatusChanges for one page.
func (c *Client) list(ctx context.Context, q url.Values, start int, envs []string) ([]provider.Envelope, int, error) {
	q.Set("include", "recipients,custom_fields")
	q.Set("start_position", strconv.Itoa(start))
	q.Set("count", strconv.Itoa(c.cfg.PageSize))
	var p listPage
	if err := c.do(ctx, request{method: http.MethodGet, path: "/envelopes", query: q, envs: envs, op: "list"}, &p); err != nil {
		return nil, -1, err
	}
	now := c.cfg.Now()
	out := make([]provider.Envelope, 0, len(p.Envelopes))
	for _, e := range p.Envelopes {
		if env, ok := e.envelope(now); ok {
			out = append(out, env)
		}
	}
	return out, p.next(start), nil
}

// dateFormat is how esignflow writes DocuSign date-times: ISO 8601 in UTC
// with DocuSign's seven fractional digits.
const dateFormat = "2006-01-02T15:04:05.0000000Z"

// ChangedSince lists envelopes whose status changed at or after since
// (listStatusChanges with from_date, include=recipients,custom_fields,
// oldest first), one page of Config.PageSize at a time. The cursor is the
// next page's start_position; "" when there is none.
func (c *Client) ChangedSince(ctx context.Context, since time.Time, cursor string) ([]provider.Envelope, string, error) {
	start := 0
	if cursor != "" {
		n, err := strconv.Atoi(cursor)
		if err != nil || n < 0 {
			return nil, "", &provider.PermanentError{Reason: fmt.Sprintf("docusign: cursor %q is not one ChangedSince returned", cursor)}
		}
		start = n
	}
	q := url.Values{"from_date": {since.UTC().Format(dateFormat)}, "order": {"asc"}, "order_by": {"last_modified"}}
	envs, next, err := c.list(ctx, q, start, nil)
	if err != nil {
		return nil, "", fmt.Errorf("docusign: list changes since %s: %w", since.UTC().Format(time.RFC3339), err)
	}
	if next < 0 {
		return envs, "", nil
	}
	return envs, strconv.Itoa(next), nil
}

// getManyChunk bounds the envelope ids of one listStatusChanges call (36
// characters each: 100 keep the URL under 4 KiB).
const getManyChunk = 100

// GetMany returns the status of many envelopes with as few calls as
// DocuSign allows: listStatusChanges with envelope_ids, up to 100 ids per
// call, every page read. An id DocuSign does not know is absent from the
// result (no error). Ids backed off after a per-envelope limit error are
// not asked about: GetMany returns the envelopes it read together with an
// *EnvelopeLimitError naming the skipped ones. Any other error returns no
// envelopes.
func (c *Client) GetMany(ctx context.Context, ids []string) ([]provider.Envelope, error) {
	now := c.cfg.Now()
	var ask []string
	var skipped *EnvelopeLimitError
	for _, id := range slices.Compact(slices.Sorted(slices.Values(ids))) {
		err := c.lim.admit(now, []string{id})
		var el *EnvelopeLimitError
		switch {
		case err == nil:
			ask = append(ask, id)
		case errors.As(err, &el):
			if skipped == nil {
				skipped = &EnvelopeLimitError{Code: el.Code}
			}
			skipped.EnvelopeIDs = append(skipped.EnvelopeIDs, id)
			if el.Until.After(skipped.Until) {
				skipped.Until, skipped.Code = el.Until, el.Code
			}
		default:
			return nil, fmt.Errorf("docusign: get %d envelopes: %w", len(ids), err)
		}
	}
	var out []provider.Envelope
	for len(ask) > 0 {
		chunk := ask[:min(len(ask), getManyChunk)]
		ask = ask[len(chunk):]
		for start := 0; start >= 0; {
			q := url.Values{"envelope_ids": {strings.Join(chunk, ",")}}
			envs, next, err := c.list(ctx, q, start, chunk)
			if err != nil {
				return nil, fmt.Errorf("docusign: get %d envelopes: %w", len(chunk), err)
			}
			out = append(out, envs...)
			start = next
		}
	}
	if skipped != nil {
		return out, skipped
	}
	return out, nil
}
