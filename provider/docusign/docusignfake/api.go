package docusignfake

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/provider/sim"
)

const (
	restPrefix = "/restapi/v2.1/accounts/{accountId}"
	maxBody    = 32 << 20
	// lookupWindow is how long transaction_ids finds an envelope.
	lookupWindow = 7 * 24 * time.Hour
)

// Envelope attributes the dialect keeps in the engine (sim.EnvelopeInfo.Attrs).
const (
	attrBlurb        = "emailBlurb"
	attrDocumentIDs  = "documentIds"  // comma-separated, one per document
	attrCustomFields = "customFields" // textCustomFields as JSON
	attrGUID         = "recipientIdGuid"
	attrClientUserID = "clientUserId"
	attrIDCheck      = "idCheckConfigurationName"
	attrSMSNumbers   = "smsNumbers" // JSON array
	attrWorkflowID   = "workflowId"
)

// apiFunc handles one REST call after authentication, limits and faults;
// it returns the status and a JSON value, an errorDetails or a rawBody.
type apiFunc func(r *http.Request, body []byte) (int, any)

type rawBody struct {
	header http.Header
	body   []byte
}

func fail(code int, errorCode, msg string) (int, any) {
	return code, errorDetails{ErrorCode: errorCode, Message: msg}
}

func invalidParam(msg string) (int, any) {
	return fail(http.StatusBadRequest, "INVALID_REQUEST_PARAMETER", "The request contained at least one invalid parameter. "+msg)
}

func noEnvelope() (int, any) {
	return fail(http.StatusBadRequest, "ENVELOPE_DOES_NOT_EXIST", "The envelope specified either does not exist or you have no rights to the envelope.")
}

// Handler is the dialect's HTTP API over s; the simulator calls it once.
func (d *Dialect) Handler(s *sim.Simulator) http.Handler {
	d.sim = s
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", d.token)
	mux.HandleFunc("GET /oauth/userinfo", d.userinfo)
	route := func(pattern string, fn apiFunc) { mux.Handle(pattern, d.rest(fn)) }
	route("POST "+restPrefix+"/envelopes", d.create)
	route("GET "+restPrefix+"/envelopes", d.list)
	route("GET "+restPrefix+"/envelopes/{envelopeId}", d.get)
	route("PUT "+restPrefix+"/envelopes/{envelopeId}", d.update)
	route("GET "+restPrefix+"/envelopes/{envelopeId}/recipients", d.recipients)
	route("GET "+restPrefix+"/envelopes/{envelopeId}/documents", d.documents)
	route("GET "+restPrefix+"/envelopes/{envelopeId}/documents/{documentId}", d.download)
	route("GET "+restPrefix+"/envelopes/{envelopeId}/audit_events", d.auditEvents)
	route(restPrefix+"/", func(*http.Request, []byte) (int, any) {
		return fail(http.StatusNotFound, "RESOURCE_NOT_FOUND", "The simulator does not serve this resource.")
	})
	return mux
}

// rest wraps fn with what every REST call goes through, in DocuSign's
// order: the bearer token (401 otherwise, not counted), the account, the
// hourly and burst limits (headers on every answer), then the simulator's
// injected faults (503 before acting, or acting and never answering).
func (d *Dialect) rest(fn apiFunc) http.Handler {
	inner := d.sim.WithFaults(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorDetails{ErrorCode: "INVALID_REQUEST_BODY", Message: "The request body is too large."})
			return
		}
		code, out := fn(r, body)
		if raw, ok := out.(rawBody); ok {
			for k, vs := range raw.header {
				w.Header()[k] = vs
			}
			w.WriteHeader(code)
			_, _ = w.Write(raw.body)
			return
		}
		writeJSON(w, code, out)
	}), func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusServiceUnavailable, errorDetails{ErrorCode: "SERVICE_UNAVAILABLE", Message: "The service is temporarily unavailable (injected failure)."})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		if !d.authorized(r) {
			d.stats.unauthorized.Add(1)
			d.admit(w, now, false)
			writeJSON(w, http.StatusUnauthorized, errorDetails{ErrorCode: "USER_AUTHENTICATION_FAILED",
				Message: "One or both of Username and Password are invalid. Invalid access token"})
			return
		}
		if !d.admit(w, now, true) {
			return
		}
		if r.PathValue("accountId") != d.cfg.AccountID {
			writeJSON(w, http.StatusBadRequest, errorDetails{ErrorCode: "USER_LACKS_PERMISSIONS",
				Message: "This user lacks sufficient permissions to access this resource."})
			return
		}
		inner.ServeHTTP(w, r)
	})
}

// EnvelopeID names envelopes with GUIDs drawn from their sequence and key.
func (d *Dialect) EnvelopeID(seq uint64, key string) string {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	h.Write(b[:])
	h.Write([]byte(key))
	return guid(h.Sum(nil))
}

// guid formats 16 bytes of sum as a version 4 UUID.
func guid(sum []byte) string {
	u := append([]byte(nil), sum[:16]...)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	x := hex.EncodeToString(u)
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// create answers POST envelopes: a draft (status created or none) or sent
// at once (status sent). transactionId is kept, not deduplicated: a second
// create with it makes a second envelope, which GET
// envelopes?transaction_ids= finds beside the first.
func (d *Dialect) create(r *http.Request, body []byte) (int, any) {
	var in envelopeDefinition
	if err := json.Unmarshal(body, &in); err != nil {
		return fail(http.StatusBadRequest, "INVALID_REQUEST_BODY", "The request body is missing or improperly formatted. "+err.Error())
	}
	send := false
	switch in.Status {
	case "", "created":
	case "sent":
		send = true
	default:
		return invalidParam(fmt.Sprintf("Value %q for 'status' is not valid on create: use 'created' or 'sent'.", in.Status))
	}
	if n := len([]rune(string(in.EmailSubject))); n > 100 {
		return invalidParam(fmt.Sprintf("The email subject is %d characters long; the limit is 100.", n))
	}
	if n := len([]rune(string(in.EmailBlurb))); n > 10000 {
		return invalidParam(fmt.Sprintf("The email blurb is %d characters long; the limit is 10000.", n))
	}
	spec := sim.EnvelopeSpec{Key: string(in.TransactionID), Subject: string(in.EmailSubject),
		Metadata: map[string]string{}, Attrs: map[string]string{}}
	if in.EmailBlurb != "" {
		spec.Attrs[attrBlurb] = string(in.EmailBlurb)
	}
	var docIDs []string
	for i, doc := range in.Documents {
		id, err := strconv.ParseInt(string(doc.DocumentID), 10, 32)
		if err != nil || id < 1 {
			return invalidParam(fmt.Sprintf("documents[%d].documentId %q must be an integer from 1 to 2147483647.", i, doc.DocumentID))
		}
		if contains(docIDs, string(doc.DocumentID)) {
			return invalidParam(fmt.Sprintf("documents[%d].documentId %s is repeated.", i, doc.DocumentID))
		}
		if doc.Name == "" {
			return invalidParam(fmt.Sprintf("documents[%d].name is required.", i))
		}
		content, err := base64.StdEncoding.DecodeString(doc.DocumentBase64)
		if err != nil || len(content) == 0 {
			return invalidParam(fmt.Sprintf("documents[%d].documentBase64 must hold the document's bytes in base64 (the simulator takes documents inline).", i))
		}
		sum := sha256.Sum256(content)
		docIDs = append(docIDs, string(doc.DocumentID))
		spec.Documents = append(spec.Documents, sim.Document{Name: string(doc.Name), ContentType: "application/pdf", SHA256: hex.EncodeToString(sum[:]), Content: content})
	}
	spec.Attrs[attrDocumentIDs] = strings.Join(docIDs, ",")
	if in.Recipients != nil {
		for i, sg := range in.Recipients.Signers {
			rs, code, out := signerSpec(i, sg)
			if code != 0 {
				return code, out
			}
			for _, prev := range spec.Recipients {
				if prev.ID == rs.ID {
					return invalidParam(fmt.Sprintf("signers[%d].recipientId %s is repeated: recipient ids are unique in an envelope.", i, rs.ID))
				}
			}
			rs.Attrs[attrGUID] = guid(sha256Of(spec.Key, rs.ID, randomToken()))
			spec.Recipients = append(spec.Recipients, rs)
		}
	}
	if in.CustomFields != nil {
		fields := make([]textCustomField, 0, len(in.CustomFields.TextCustomFields))
		for i, f := range in.CustomFields.TextCustomFields {
			if f.Name == "" {
				return invalidParam(fmt.Sprintf("textCustomFields[%d].name is required.", i))
			}
			if n := len([]rune(string(f.Value))); n > 100 {
				return invalidParam(fmt.Sprintf("textCustomFields[%d].value is %d characters long; the limit is 100.", i, n))
			}
			f.FieldID = str(strconv.Itoa(i + 1))
			if f.Show == "" {
				f.Show = "true"
			}
			if f.Required == "" {
				f.Required = "false"
			}
			fields = append(fields, f)
			spec.Metadata[string(f.Name)] = string(f.Value)
		}
		raw, _ := json.Marshal(fields)
		spec.Attrs[attrCustomFields] = string(raw)
	}
	if send && (spec.Subject == "" || len(spec.Documents) == 0 || len(spec.Recipients) == 0) {
		return incomplete()
	}
	e, err := d.sim.CreateEnvelope(spec, send)
	switch {
	case errors.Is(err, sim.ErrInvalid):
		return fail(http.StatusBadRequest, "INVALID_EMAIL_ADDRESS_FOR_RECIPIENT", "The email address for the recipient is invalid. "+err.Error())
	case errors.Is(err, sim.ErrIncomplete):
		return incomplete()
	case err != nil:
		return fail(http.StatusInternalServerError, "UNSPECIFIED_ERROR", err.Error())
	}
	return http.StatusCreated, map[string]string{"envelopeId": e.ID, "uri": "/envelopes/" + e.ID,
		"statusDateTime": dsTime(e.StatusAt), "status": envelopeStatus(e.Status)}
}

func incomplete() (int, any) {
	return fail(http.StatusBadRequest, "ENVELOPE_IS_INCOMPLETE",
		"The Envelope is not Complete. A Complete Envelope Requires Documents, Recipients, Tabs, and a Subject Line.")
}

func sha256Of(parts ...string) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum(nil)
}

// signerSpec turns signers[i] into the engine's recipient; code is non-zero
// with the answer when it is refused.
func signerSpec(i int, sg signerIn) (sim.RecipientSpec, int, any) {
	if sg.RecipientID == "" {
		code, out := invalidParam(fmt.Sprintf("signers[%d].recipientId is required.", i))
		return sim.RecipientSpec{}, code, out
	}
	if sg.Name == "" {
		code, out := invalidParam(fmt.Sprintf("signers[%d].name is required.", i))
		return sim.RecipientSpec{}, code, out
	}
	if len([]rune(string(sg.Name))) > 100 || len([]rune(string(sg.Email))) > 100 {
		code, out := invalidParam(fmt.Sprintf("signers[%d]: name and email are limited to 100 characters.", i))
		return sim.RecipientSpec{}, code, out
	}
	order := 1
	if sg.RoutingOrder != "" {
		n, err := strconv.Atoi(string(sg.RoutingOrder))
		if err != nil || n < 1 {
			code, out := invalidParam(fmt.Sprintf("signers[%d].routingOrder %q must be a positive integer.", i, sg.RoutingOrder))
			return sim.RecipientSpec{}, code, out
		}
		order = n
	}
	rs := sim.RecipientSpec{ID: string(sg.RecipientID), Name: string(sg.Name), Email: string(sg.Email), Role: "signer",
		RoutingOrder: order, Auth: "email", Attrs: map[string]string{}}
	if sg.ClientUserID != "" {
		rs.Attrs[attrClientUserID] = string(sg.ClientUserID)
	}
	if sg.IDCheckConfigurationName != "" {
		rs.Attrs[attrIDCheck] = string(sg.IDCheckConfigurationName)
	}
	switch {
	case sg.IdentityVerification != nil && sg.IdentityVerification.WorkflowID != "":
		rs.Auth = "id_verification"
		rs.Attrs[attrWorkflowID] = string(sg.IdentityVerification.WorkflowID)
	case sg.SMSAuthentication != nil || sg.IDCheckConfigurationName == "SMS Auth $":
		rs.Auth = "sms"
		var nums []string
		if sg.SMSAuthentication != nil {
			for _, n := range sg.SMSAuthentication.SenderProvidedNumbers {
				nums = append(nums, string(n))
			}
		}
		raw, _ := json.Marshal(nums)
		rs.Attrs[attrSMSNumbers] = string(raw)
	case len(sg.PhoneAuthentication) > 0 && string(sg.PhoneAuthentication) != "null":
		rs.Auth = "phone"
	case sg.AccessCode != "":
		rs.Auth = "access_code"
	}
	return rs, 0, nil
}

// includes parses ?include=a,b.
func includes(r *http.Request) map[string]bool {
	m := map[string]bool{}
	for _, v := range strings.Split(r.URL.Query().Get("include"), ",") {
		if v = strings.TrimSpace(v); v != "" {
			m[v] = true
		}
	}
	return m
}

// get answers GET envelopes/{id}: recipients and custom fields only when
// include asks for them.
func (d *Dialect) get(r *http.Request, _ []byte) (int, any) {
	id := r.PathValue("envelopeId")
	e, ok := d.sim.Envelope(id)
	if !ok {
		return noEnvelope()
	}
	if ed := d.pollLimited(id, time.Now()); ed != nil {
		return http.StatusBadRequest, *ed
	}
	inc := includes(r)
	return http.StatusOK, envelopeView(e, inc["recipients"], inc["custom_fields"])
}

func (d *Dialect) recipients(r *http.Request, _ []byte) (int, any) {
	id := r.PathValue("envelopeId")
	e, ok := d.sim.Envelope(id)
	if !ok {
		return noEnvelope()
	}
	if ed := d.pollLimited(id, time.Now()); ed != nil {
		return http.StatusBadRequest, *ed
	}
	return http.StatusOK, recipientsView(e)
}

// update answers PUT envelopes/{id}: {"status":"sent"} sends a draft
// (sending a sent envelope again changes nothing and is answered 200);
// {"status":"voided","voidedReason":…} voids one in progress.
func (d *Dialect) update(r *http.Request, body []byte) (int, any) {
	var in struct {
		Status       str `json:"status"`
		VoidedReason str `json:"voidedReason"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return fail(http.StatusBadRequest, "INVALID_REQUEST_BODY", "The request body is missing or improperly formatted. "+err.Error())
	}
	id := r.PathValue("envelopeId")
	var err error
	switch in.Status {
	case "sent":
		_, err = d.sim.Send(id)
		if errors.Is(err, sim.ErrNotDraft) {
			err = nil
		}
	case "voided":
		if in.VoidedReason == "" {
			return invalidParam("Value for 'voidedReason' must be specified when voiding an envelope.")
		}
		_, err = d.sim.Void(id, string(in.VoidedReason))
	case "":
		_, ok := d.sim.Envelope(id)
		if !ok {
			err = sim.ErrNotFound
		}
	default:
		return invalidParam(fmt.Sprintf("Value %q for 'status' cannot be set: use 'sent' or 'voided'.", in.Status))
	}
	switch {
	case errors.Is(err, sim.ErrNotFound):
		return noEnvelope()
	case errors.Is(err, sim.ErrIncomplete):
		return incomplete()
	case errors.Is(err, sim.ErrDraft), errors.Is(err, sim.ErrFinal):
		return fail(http.StatusBadRequest, "ENVELOPE_CANNOT_VOID_INVALID_STATE", "Only envelopes in the 'Sent' or 'Delivered' states may be voided.")
	case err != nil:
		return fail(http.StatusInternalServerError, "UNSPECIFIED_ERROR", err.Error())
	}
	return http.StatusOK, map[string]any{"envelopeId": id}
}

// list answers listStatusChanges (GET envelopes): by from_date (and
// to_date, from_to_status, status, custom_field), envelope_ids or
// transaction_ids; oldest change first (order=desc reverses), paged by
// start_position and count.
func (d *Dialect) list(r *http.Request, _ []byte) (int, any) {
	q := r.URL.Query()
	now := time.Now()
	ids, txns := splitList(q.Get("envelope_ids")), splitList(q.Get("transaction_ids"))
	from, hasFrom, err := parseDate(q.Get("from_date"))
	if err != nil {
		return invalidParam("Query parameter 'from_date' must be set to a valid DateTime, or 'envelope_ids' or 'transaction_ids' must be specified.")
	}
	if !hasFrom && len(ids) == 0 && len(txns) == 0 {
		return invalidParam("Query parameter 'from_date' must be set to a valid DateTime, or 'envelope_ids' or 'transaction_ids' must be specified.")
	}
	to, hasTo, err := parseDate(q.Get("to_date"))
	if err != nil {
		return invalidParam("Query parameter 'to_date' must be a valid DateTime.")
	}
	if !hasTo {
		to = now
	}
	var cfName, cfValue string
	if cf := q.Get("custom_field"); cf != "" {
		var ok bool
		if cfName, cfValue, ok = strings.Cut(cf, "="); !ok || !hasFrom {
			return invalidParam("Query parameter 'custom_field' must be name=value, with 'from_date'.")
		}
	}
	fromTo := strings.ToLower(q.Get("from_to_status"))
	if fromTo == "" {
		fromTo = "changed"
	}
	statuses := map[string]bool{}
	for _, s := range splitList(strings.ToLower(q.Get("status"))) {
		if s != "any" {
			statuses[s] = true
		}
	}
	start, err := nonNegative(q.Get("start_position"), 0)
	if err != nil {
		return invalidParam("Query parameter 'start_position' must be a non-negative integer.")
	}
	count, err := nonNegative(q.Get("count"), d.cfg.PageSize)
	if err != nil {
		return invalidParam("Query parameter 'count' must be a non-negative integer.")
	}
	count = min(count, d.cfg.MaxPageSize)
	// envelope_ids and transaction_ids are looked up in the engine's
	// indexes (every create looks its transaction id up first, the
	// reconciler polls by envelope_ids: a scan of every envelope per call
	// made a run quadratic in its envelopes); only from_date alone scans.
	lookup := d.sim.Envelopes
	switch {
	case len(ids) > 0:
		lookup = func(m func(*sim.EnvelopeInfo) bool) []sim.EnvelopeInfo { return d.sim.EnvelopesByID(ids, m) }
	case len(txns) > 0:
		lookup = func(m func(*sim.EnvelopeInfo) bool) []sim.EnvelopeInfo { return d.sim.EnvelopesByKey(txns, m) }
	}
	hits := lookup(func(e *sim.EnvelopeInfo) bool {
		switch {
		case len(ids) > 0 && !contains(ids, e.ID):
			return false
		case len(txns) > 0 && (e.Key == "" || !contains(txns, e.Key) || now.Sub(e.CreatedAt) > lookupWindow):
			return false
		case len(statuses) > 0 && !statuses[envelopeStatus(e.Status)]:
			return false
		case cfName != "" && e.Metadata[cfName] != cfValue:
			return false
		}
		if hasFrom {
			at, ok := statusTime(e, fromTo)
			return ok && !at.Before(from) && !at.After(to)
		}
		return true
	})
	if strings.EqualFold(q.Get("order"), "desc") {
		for i, j := 0, len(hits)-1; i < j; i, j = i+1, j-1 {
			hits[i], hits[j] = hits[j], hits[i]
		}
	}
	inc := includes(r)
	page := hits[min(start, len(hits)):min(start+count, len(hits))]
	out := struct {
		ResultSetSize       string        `json:"resultSetSize"`
		TotalSetSize        string        `json:"totalSetSize"`
		StartPosition       string        `json:"startPosition"`
		EndPosition         string        `json:"endPosition"`
		NextURI             string        `json:"nextUri"`
		PreviousURI         string        `json:"previousUri"`
		LastQueriedDateTime string        `json:"lastQueriedDateTime"`
		Envelopes           []envelopeOut `json:"envelopes"`
	}{ResultSetSize: strconv.Itoa(len(page)), TotalSetSize: strconv.Itoa(len(hits)), StartPosition: strconv.Itoa(start),
		EndPosition: strconv.Itoa(start + len(page) - 1), LastQueriedDateTime: dsTime(now), Envelopes: []envelopeOut{}}
	if len(page) == 0 {
		out.EndPosition = strconv.Itoa(start)
	}
	if start+len(page) < len(hits) && count > 0 {
		out.NextURI = pageURI(q, start+len(page), count)
	}
	if start > 0 {
		out.PreviousURI = pageURI(q, max(0, start-count), count)
	}
	for _, e := range page {
		out.Envelopes = append(out.Envelopes, envelopeView(e, inc["recipients"], inc["custom_fields"]))
	}
	return http.StatusOK, out
}

// pageURI is q with another start_position and count, relative to the
// account as every uri DocuSign answers is ("/envelopes?…").
func pageURI(q url.Values, start, count int) string {
	c := url.Values{}
	for k, v := range q {
		c[k] = v
	}
	c.Set("start_position", strconv.Itoa(start))
	c.Set("count", strconv.Itoa(count))
	return "/envelopes?" + c.Encode()
}

// statusTime is when e reached the from_to_status, "changed" being its
// last change.
func statusTime(e *sim.EnvelopeInfo, fromTo string) (time.Time, bool) {
	if fromTo == "changed" || fromTo == "any" {
		return e.StatusAt, true
	}
	for _, c := range e.History {
		if envelopeStatus(c.Status) == fromTo || (fromTo == "signed" && c.Status == "completed") {
			return c.At, true
		}
	}
	return time.Time{}, false
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func nonNegative(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, errors.New("not a non-negative integer")
	}
	return n, nil
}

// parseDate reads the date formats DocuSign documents (ISO 8601 with or
// without an offset, which then means UTC, the simulator's time zone).
func parseDate(s string) (time.Time, bool, error) {
	if s == "" {
		return time.Time{}, false, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.9999999", "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02", "01/02/2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true, nil
		}
	}
	return time.Time{}, false, fmt.Errorf("date %q", s)
}

// documents answers GET envelopes/{id}/documents.
func (d *Dialect) documents(r *http.Request, _ []byte) (int, any) {
	e, ok := d.sim.Envelope(r.PathValue("envelopeId"))
	if !ok {
		return noEnvelope()
	}
	type doc struct {
		DocumentID        string `json:"documentId"`
		DocumentIDGuid    string `json:"documentIdGuid"`
		Name              string `json:"name"`
		Type              string `json:"type"`
		URI               string `json:"uri"`
		Order             string `json:"order"`
		Display           string `json:"display"`
		IncludeInDownload string `json:"includeInDownload"`
	}
	out := struct {
		EnvelopeID        string `json:"envelopeId"`
		EnvelopeDocuments []doc  `json:"envelopeDocuments"`
	}{EnvelopeID: e.ID, EnvelopeDocuments: []doc{}}
	ids := splitList(e.Attrs[attrDocumentIDs])
	for i, dc := range e.Documents {
		id := strconv.Itoa(i + 1)
		if i < len(ids) {
			id = ids[i]
		}
		out.EnvelopeDocuments = append(out.EnvelopeDocuments, doc{DocumentID: id, DocumentIDGuid: guid(sha256Of(e.ID, id)), Name: dc.Name, Type: "content",
			URI: "/envelopes/" + e.ID + "/documents/" + id, Order: strconv.Itoa(i + 1), Display: "inline", IncludeInDownload: "true"})
	}
	out.EnvelopeDocuments = append(out.EnvelopeDocuments, doc{DocumentID: "certificate", DocumentIDGuid: guid(sha256Of(e.ID, "certificate")),
		Name: "Summary", Type: "summary", URI: "/envelopes/" + e.ID + "/documents/certificate", Order: strconv.Itoa(len(e.Documents) + 1),
		Display: "inline", IncludeInDownload: "true"})
	return http.StatusOK, out
}

// download answers GET envelopes/{id}/documents/{documentId}: combined
// (the signed document), certificate (the certificate of completion), or
// one document by its id, in the envelope's current state. As DocuSign,
// it declares no digest; the corrupt-download fault applies.
func (d *Dialect) download(r *http.Request, _ []byte) (int, any) {
	id, docID := r.PathValue("envelopeId"), r.PathValue("documentId")
	e, ok := d.sim.Envelope(id)
	if !ok {
		return noEnvelope()
	}
	kind, name := provider.ArtifactSigned, "combined.pdf"
	switch docID {
	case "combined":
	case "certificate":
		kind, name = provider.ArtifactCertificate, "Summary.pdf"
	default:
		i := indexOf(splitList(e.Attrs[attrDocumentIDs]), docID)
		if i < 0 || i >= len(e.Documents) {
			return fail(http.StatusBadRequest, "DOCUMENT_DOES_NOT_EXIST", "The document specified was not found in the envelope.")
		}
		name = e.Documents[i].Name
	}
	body, _, err := d.sim.Download(id, kind)
	if err != nil {
		return noEnvelope()
	}
	h := http.Header{}
	h.Set("Content-Type", "application/pdf")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Disposition", fmt.Sprintf("file; filename=%q; documentid=%q", name, docID))
	return http.StatusOK, rawBody{header: h, body: body}
}

func indexOf(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return -1
}

// auditEvents answers GET envelopes/{id}/audit_events: one event per
// status change of the envelope and its recipients, oldest first, each a
// list of name/value eventFields.
func (d *Dialect) auditEvents(r *http.Request, _ []byte) (int, any) {
	e, ok := d.sim.Envelope(r.PathValue("envelopeId"))
	if !ok {
		return noEnvelope()
	}
	type nameValue struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	type event struct {
		at     time.Time
		last   bool // the envelope's end, after the recipient action that made it
		fields []nameValue
	}
	var evs []event
	add := func(at time.Time, source, user, action, message, status, ip string) {
		evs = append(evs, event{at: at, last: action == "Completed", fields: []nameValue{
			{"logTime", dsTime(at)}, {"Source", source}, {"UserName", user}, {"UserId", guid(sha256Of(user))},
			{"Action", action}, {"Message", message}, {"EnvelopeStatus", status}, {"ClientIPAddress", ip},
			{"Information", ""}, {"GeoLocation", ""}, {"Language", "english"},
		}})
	}
	sender := "Sim Sender"
	for _, c := range e.History {
		switch c.Status {
		case "created":
			add(c.At, "API", sender, "Registered", "The envelope was created by "+sender, "created", "127.0.0.1")
		case "sent":
			add(c.At, "API", sender, "Sent Invitations", sender+" sent an invitation to the recipients", "sent", "127.0.0.1")
		case "completed":
			add(c.At, "Web", "DocuSign System", "Completed", "The envelope was completed", "completed", "")
		case "voided", "expired":
			add(c.At, "API", sender, "Voided", sender+" voided the envelope. Void Reason: "+e.Reason, "voided", "127.0.0.1")
		}
	}
	for _, rc := range e.Recipients {
		for _, c := range rc.History {
			st := envelopeStatusAt(e, c.At)
			switch c.Status {
			case "viewed":
				add(c.At, "Web", rc.Name, "Viewed In-Session", rc.Name+" viewed the envelope ["+rc.Email+"]", st, rc.IP)
			case "signed":
				add(c.At, "Web", rc.Name, "Signed", rc.Name+" signed the envelope ["+rc.Email+"]", st, rc.IP)
			case "declined":
				add(c.At, "Web", rc.Name, "Declined", rc.Name+" declined to sign the envelope. Decline Reason: "+e.Reason, st, rc.IP)
			}
		}
	}
	sort.SliceStable(evs, func(i, j int) bool {
		if evs[i].at.Equal(evs[j].at) {
			return !evs[i].last && evs[j].last
		}
		return evs[i].at.Before(evs[j].at)
	})
	type auditEvent struct {
		EventFields []nameValue `json:"eventFields"`
	}
	out := struct {
		AuditEvents []auditEvent `json:"auditEvents"`
	}{AuditEvents: []auditEvent{}}
	for _, ev := range evs {
		out.AuditEvents = append(out.AuditEvents, auditEvent{EventFields: ev.fields})
	}
	return http.StatusOK, out
}

// envelopeStatusAt is the DocuSign status e had at t.
func envelopeStatusAt(e sim.EnvelopeInfo, t time.Time) string {
	st := "created"
	for _, c := range e.History {
		if c.At.After(t) {
			break
		}
		st = c.Status
	}
	return envelopeStatus(st)
}

// envelopeStatus is DocuSign's name for an engine envelope status. The
// engine's delivered (invitations delivered) is still DocuSign's sent;
// its viewed is DocuSign's delivered; a partly signed envelope is sent
// (DocuSign has no partial status); an expired one is voided.
func envelopeStatus(engine string) string {
	switch engine {
	case "created", "sent", "completed", "declined", "voided":
		return engine
	case "delivered", "partially_signed":
		return "sent"
	case "viewed":
		return "delivered"
	case "expired":
		return "voided"
	}
	return engine
}

// recipientStatus is DocuSign's name for an engine recipient status:
// viewed is delivered, signed is completed.
func recipientStatus(engine string) string {
	switch engine {
	case "delivered":
		return "sent"
	case "viewed":
		return "delivered"
	case "signed":
		return "completed"
	}
	return engine
}

// envelopeView is e as DocuSign answers it.
func envelopeView(e sim.EnvelopeInfo, withRecipients, withCustomFields bool) envelopeOut {
	base := "/envelopes/" + e.ID
	v := envelopeOut{EnvelopeID: e.ID, Status: envelopeStatus(e.Status), EmailSubject: e.Subject, EmailBlurb: e.Attrs[attrBlurb],
		TransactionID: e.Key, EnvelopeURI: base, DocumentsURI: base + "/documents", RecipientsURI: base + "/recipients",
		CustomFieldsURI: base + "/custom_fields", CreatedDateTime: dsTime(e.CreatedAt), LastModifiedDateTime: dsTime(e.StatusAt),
		StatusChangedDateTime: dsTime(e.StatusAt), SentDateTime: dsTime(sim.FirstAt(e.History, "sent")),
		DeliveredDateTime: dsTime(sim.FirstAt(e.History, "viewed")), CompletedDateTime: dsTime(sim.FirstAt(e.History, "completed")),
		DeclinedDateTime: dsTime(sim.FirstAt(e.History, "declined")), VoidedDateTime: dsTime(sim.FirstAt(e.History, "voided", "expired"))}
	if e.Status == "voided" || e.Status == "expired" {
		v.VoidedReason = e.Reason
		if e.Status == "expired" {
			v.VoidedReason = "Envelope has expired."
		}
	}
	if withRecipients {
		rs := recipientsView(e)
		v.Recipients = &rs
	}
	if withCustomFields {
		v.CustomFields = customFieldsView(e)
	}
	return v
}

func customFieldsView(e sim.EnvelopeInfo) *customFieldsOut {
	cf := &customFieldsOut{TextCustomFields: []textCustomField{}, ListCustomFields: []struct{}{}}
	if raw := e.Attrs[attrCustomFields]; raw != "" {
		_ = json.Unmarshal([]byte(raw), &cf.TextCustomFields)
	}
	return cf
}

func recipientsView(e sim.EnvelopeInfo) recipientsOut {
	out := recipientsOut{Signers: []signerOut{}, CarbonCopies: []struct{}{}, RecipientCount: strconv.Itoa(len(e.Recipients))}
	current := 0
	for _, r := range e.Recipients {
		out.Signers = append(out.Signers, signerView(e, r))
		if r.Status != "created" && r.Status != "signed" && (current == 0 || r.RoutingOrder < current) {
			current = r.RoutingOrder
		}
	}
	if current == 0 && len(e.Recipients) > 0 {
		current = 1
	}
	out.CurrentRoutingOrder = strconv.Itoa(current)
	return out
}

func signerView(e sim.EnvelopeInfo, r sim.RecipientInfo) signerOut {
	s := signerOut{RecipientID: r.ID, RecipientIDGuid: r.Attrs[attrGUID], RecipientType: "signer", RoutingOrder: strconv.Itoa(r.RoutingOrder),
		Name: r.Name, Email: r.Email, Status: recipientStatus(r.Status), ClientUserID: r.Attrs[attrClientUserID],
		IDCheckConfigurationName: r.Attrs[attrIDCheck], SentDateTime: dsTime(sim.FirstAt(r.History, "sent")),
		DeliveredDateTime: dsTime(sim.FirstAt(r.History, "viewed")), SignedDateTime: dsTime(sim.FirstAt(r.History, "signed")),
		DeclinedDateTime: dsTime(sim.FirstAt(r.History, "declined")), TotalTabCount: "1"}
	if r.Status == "declined" {
		s.DeclinedReason = e.Reason
	}
	if raw, ok := r.Attrs[attrSMSNumbers]; ok {
		s.SMSAuthentication = &smsOut{SenderProvidedNumbers: []string{}}
		_ = json.Unmarshal([]byte(raw), &s.SMSAuthentication.SenderProvidedNumbers)
	}
	if wf := r.Attrs[attrWorkflowID]; wf != "" {
		s.IdentityVerification = &idvOut{WorkflowID: wf}
	}
	if r.VerifiedAt != nil {
		res := &authResult{Status: "Passed", EventTimestamp: dsTime(*r.VerifiedAt)}
		switch r.Auth {
		case "id_verification":
			s.RecipientAuthStatus = &authOut{IdentityVerificationResult: res}
		case "sms":
			s.RecipientAuthStatus = &authOut{SMSAuthResult: res}
		}
	}
	return s
}
