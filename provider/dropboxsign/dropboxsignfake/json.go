package dropboxsignfake

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/esignflow/esignflow/provider/sim"
)

// Signature request attributes the dialect keeps in the engine
// (sim.EnvelopeInfo.Attrs, RecipientInfo.Attrs), so that they survive a
// restart with the state file.
const (
	attrTitle     = "title"
	attrMessage   = "message"
	attrTestMode  = "test_mode"  // "true" or absent
	attrExpiresAt = "expires_at" // Unix seconds, as requested
	attrOrder     = "order"      // a signer's 0-based order, as requested
)

// errorBody is Dropbox Sign's error answer.
type errorBody struct {
	Error errorOut `json:"error"`
}

type errorOut struct {
	Msg  string `json:"error_msg"`
	Path string `json:"error_path,omitempty"`
	Name string `json:"error_name"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, name, msg, path string) {
	writeJSON(w, code, errorBody{Error: errorOut{Msg: msg, Name: name, Path: path}})
}

// apiError is a refusal a handler returns.
type apiError struct {
	code            int
	name, msg, path string
}

func badRequest(path, msg string) *apiError {
	return &apiError{code: http.StatusBadRequest, name: "bad_request", msg: msg, path: path}
}

func notFound() *apiError {
	return &apiError{code: http.StatusNotFound, name: "not_found", msg: "Not found"}
}

// deleted is what a canceled signature request answers: its signers get
// 410 (documented), and so, in the simulator, does its requester's API
// (not documented; a client reads it as canceled).
func deleted() *apiError {
	return &apiError{code: http.StatusGone, name: "deleted", msg: "This resource has been deleted"}
}

func conflict(msg string) *apiError {
	return &apiError{code: http.StatusConflict, name: "conflict", msg: msg}
}

// signatureRequestOut is a SignatureRequestResponse (PROVIDER-APIS.md 2.2).
type signatureRequestOut struct {
	TestMode              bool              `json:"test_mode"`
	SignatureRequestID    string            `json:"signature_request_id"`
	RequesterEmailAddress string            `json:"requester_email_address"`
	Title                 string            `json:"title"`
	OriginalTitle         string            `json:"original_title"`
	Subject               string            `json:"subject"`
	Message               *string           `json:"message"`
	Metadata              map[string]string `json:"metadata"`
	CreatedAt             int64             `json:"created_at"`
	ExpiresAt             *int64            `json:"expires_at"`
	IsComplete            bool              `json:"is_complete"`
	IsDeclined            bool              `json:"is_declined"`
	HasError              bool              `json:"has_error"`
	FilesURL              string            `json:"files_url"`
	SigningURL            string            `json:"signing_url"`
	DetailsURL            string            `json:"details_url"`
	CCEmailAddresses      []string          `json:"cc_email_addresses"`
	SigningRedirectURL    *string           `json:"signing_redirect_url"`
	FinalCopyURI          *string           `json:"final_copy_uri"`
	TemplateIDs           []string          `json:"template_ids"`
	CustomFields          []struct{}        `json:"custom_fields"`
	Attachments           []struct{}        `json:"attachments"`
	ResponseData          []struct{}        `json:"response_data"`
	Signatures            []signatureOut    `json:"signatures"`
	BulkSendJobID         *string           `json:"bulk_send_job_id"`
	SignerExperience      *struct{}         `json:"signer_experience"`
}

// signatureOut is one signer's signature.
type signatureOut struct {
	SignatureID        string  `json:"signature_id"`
	SignerGroupGUID    *string `json:"signer_group_guid"`
	SignerEmailAddress string  `json:"signer_email_address"`
	SignerName         string  `json:"signer_name"`
	SignerRole         *string `json:"signer_role"`
	Order              *int    `json:"order"`
	StatusCode         string  `json:"status_code"`
	DeclineReason      *string `json:"decline_reason"`
	SignedAt           *int64  `json:"signed_at"`
	LastViewedAt       *int64  `json:"last_viewed_at"`
	LastRemindedAt     *int64  `json:"last_reminded_at"`
	HasPin             bool    `json:"has_pin"`
	HasSMSAuth         bool    `json:"has_sms_auth"`
	HasSMSDelivery     bool    `json:"has_sms_delivery"`
	SMSPhoneNumber     *string `json:"sms_phone_number"`
	ReassignedBy       *string `json:"reassigned_by"`
	ReassignmentReason *string `json:"reassignment_reason"`
	ReassignedFrom     *string `json:"reassigned_from"`
	Error              *string `json:"error"`
}

// view is e as Dropbox Sign answers it; base is the API's URL
// (…/v3). An expired request's expires_at is when it expired.
func (d *Dialect) view(e sim.EnvelopeInfo, base string) signatureRequestOut {
	v := signatureRequestOut{
		TestMode: e.Attrs[attrTestMode] == "true", SignatureRequestID: e.ID, RequesterEmailAddress: d.cfg.EmailAddress,
		Title: e.Attrs[attrTitle], OriginalTitle: e.Attrs[attrTitle], Subject: e.Subject, Metadata: e.Metadata,
		CreatedAt: e.CreatedAt.Unix(), IsComplete: e.Status == "completed", IsDeclined: e.Status == "declined",
		FilesURL: base + "/signature_request/files/" + e.ID, SigningURL: strings.TrimSuffix(base, "/v3") + "/sign/" + e.ID,
		DetailsURL:       strings.TrimSuffix(base, "/v3") + "/home/manage?guid=" + e.ID,
		CCEmailAddresses: []string{}, CustomFields: []struct{}{}, Attachments: []struct{}{}, ResponseData: []struct{}{},
		Signatures: make([]signatureOut, 0, len(e.Recipients)),
	}
	if v.Metadata == nil {
		v.Metadata = map[string]string{}
	}
	if m, ok := e.Attrs[attrMessage]; ok {
		v.Message = &m
	}
	if s, ok := e.Attrs[attrExpiresAt]; ok {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			v.ExpiresAt = &n
		}
	}
	if e.Status == "expired" {
		n := e.StatusAt.Unix()
		v.ExpiresAt = &n
	}
	for _, r := range e.Recipients {
		v.Signatures = append(v.Signatures, signatureView(e, r))
	}
	return v
}

// signatureView is r's signature: awaiting_signature until it signs or
// declines.
func signatureView(e sim.EnvelopeInfo, r sim.RecipientInfo) signatureOut {
	s := signatureOut{SignatureID: r.ID, SignerEmailAddress: r.Email, SignerName: r.Name, StatusCode: "awaiting_signature",
		SignedAt: unixPtr(sim.FirstAt(r.History, "signed")), LastViewedAt: unixPtr(sim.LastAt(r.History, "viewed"))}
	if o, err := strconv.Atoi(r.Attrs[attrOrder]); err == nil {
		s.Order = &o
	}
	switch r.Status {
	case "signed":
		s.StatusCode = "signed"
	case "declined":
		s.StatusCode = "declined"
		reason := e.Reason
		s.DeclineReason = &reason
	}
	return s
}

func unixPtr(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.Unix()
	return &n
}
