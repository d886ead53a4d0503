package schemas

import (
	"fmt"
	"time"
)

// Status is an envelope's normalised status. The order of the constants is
// the order of the state machine: see Rank.
type Status string

// Envelope statuses, in state-machine order. COMPLETED, DECLINED, VOIDED,
// EXPIRED and FAILED are terminal.
const (
	StatusCreated         Status = "CREATED"
	StatusSent            Status = "SENT"
	StatusDelivered       Status = "DELIVERED"
	StatusViewed          Status = "VIEWED"
	StatusPartiallySigned Status = "PARTIALLY_SIGNED"
	StatusCompleted       Status = "COMPLETED"
	StatusDeclined        Status = "DECLINED"
	StatusVoided          Status = "VOIDED"
	StatusExpired         Status = "EXPIRED"
	StatusFailed          Status = "FAILED"
)

// RecipientStatus is one recipient's normalised status.
type RecipientStatus string

// Recipient statuses. SIGNED, DECLINED and REPLACED are final.
// AUTH_FAILED (an SMS code or ID check failed) and BOUNCED (the invitation
// e-mail bounced or was auto-answered) are not: the recipient can retry,
// or the sender correct the address, and a later step moves them on.
// FAILED is what older versions wrote for a bounce; it is read as one, and
// no longer written.
const (
	RecipientCreated    RecipientStatus = "CREATED"
	RecipientSent       RecipientStatus = "SENT"
	RecipientDelivered  RecipientStatus = "DELIVERED"
	RecipientViewed     RecipientStatus = "VIEWED"
	RecipientSigned     RecipientStatus = "SIGNED"
	RecipientDeclined   RecipientStatus = "DECLINED"
	RecipientFailed     RecipientStatus = "FAILED"
	RecipientAuthFailed RecipientStatus = "AUTH_FAILED"
	RecipientBounced    RecipientStatus = "BOUNCED"
	// RecipientReplaced: reassigned or delegated to another recipient
	// (RecipientState.ReplacedBy).
	RecipientReplaced RecipientStatus = "REPLACED"
)

// Source says where an EnvelopeEvent came from.
type Source string

// Event sources.
const (
	SourceWebhook Source = "WEBHOOK"
	SourcePoll    Source = "POLL"
	SourceAPI     Source = "API"
)

// Outcome is what the state machine did with an event.
type Outcome string

// Audit outcomes.
const (
	OutcomeApplied  Outcome = "APPLIED"
	OutcomeIgnored  Outcome = "IGNORED"
	OutcomeConflict Outcome = "CONFLICT"
)

// AuthMethod is how a recipient proves who they are.
type AuthMethod string

// Authentication methods.
const (
	AuthEmail          AuthMethod = "EMAIL"
	AuthSMS            AuthMethod = "SMS"
	AuthIDVerification AuthMethod = "ID_VERIFICATION"
)

// SigningRequest mirrors SigningRequest.avsc.
type SigningRequest struct {
	RequestID   string            `avro:"request_id" json:"request_id"`
	Tenant      string            `avro:"tenant" json:"tenant"`
	Provider    string            `avro:"provider" json:"provider,omitempty"`
	Documents   []Document        `avro:"documents" json:"documents"`
	Recipients  []Recipient       `avro:"recipients" json:"recipients"`
	Subject     string            `avro:"subject" json:"subject,omitempty"`
	Message     string            `avro:"message" json:"message,omitempty"`
	ExpiresAt   *time.Time        `avro:"expires_at" json:"expires_at,omitempty"`
	Metadata    map[string]string `avro:"metadata" json:"metadata,omitempty"`
	RequestedAt time.Time         `avro:"requested_at" json:"requested_at"`
}

// Document is one document of a SigningRequest, by URI or inline.
type Document struct {
	Name        string  `avro:"name" json:"name"`
	ContentType string  `avro:"content_type" json:"content_type,omitempty"`
	URI         *string `avro:"uri" json:"uri,omitempty"`
	SHA256      *string `avro:"sha256" json:"sha256,omitempty"`
	Content     []byte  `avro:"content" json:"content,omitempty"`
}

// Recipient is one signer or viewer of a SigningRequest.
type Recipient struct {
	ID           string     `avro:"id" json:"id"`
	Name         string     `avro:"name" json:"name"`
	Email        string     `avro:"email" json:"email"`
	Role         string     `avro:"role" json:"role,omitempty"`
	RoutingOrder int32      `avro:"routing_order" json:"routing_order,omitempty"`
	Auth         AuthMethod `avro:"auth" json:"auth,omitempty"`
	Phone        *string    `avro:"phone" json:"phone,omitempty"`
}

// EnvelopeEvent mirrors EnvelopeEvent.avsc.
type EnvelopeEvent struct {
	EventID        string            `avro:"event_id" json:"event_id"`
	Provider       string            `avro:"provider" json:"provider"`
	EnvelopeID     string            `avro:"envelope_id" json:"envelope_id"`
	RequestID      *string           `avro:"request_id" json:"request_id,omitempty"`
	Tenant         *string           `avro:"tenant" json:"tenant,omitempty"`
	Source         Source            `avro:"source" json:"source"`
	Type           string            `avro:"type" json:"type"`
	Status         *Status           `avro:"status" json:"status,omitempty"`
	Recipients     []RecipientUpdate `avro:"recipients" json:"recipients"`
	OccurredAt     time.Time         `avro:"occurred_at" json:"occurred_at"`
	ReceivedAt     time.Time         `avro:"received_at" json:"received_at"`
	SourceIP       *string           `avro:"source_ip" json:"source_ip,omitempty"`
	UserAgent      *string           `avro:"user_agent" json:"user_agent,omitempty"`
	BodySHA256     *string           `avro:"body_sha256" json:"body_sha256,omitempty"`
	DocumentSHA256 *string           `avro:"document_sha256" json:"document_sha256,omitempty"`
	Reason         *string           `avro:"reason" json:"reason,omitempty"`
	Metadata       map[string]string `avro:"metadata" json:"metadata,omitempty"`
	Kind           EventKind         `avro:"kind" json:"kind,omitempty"`
	// RequestHash is, on the event that reports a create, the SHA-256
	// (hex) of the signing request's content, for the envelope's state to
	// keep (EnvelopeState.RequestHash); nil on every other event.
	RequestHash *string `avro:"request_hash" json:"request_hash,omitempty"`
}

// RecipientUpdate is what an event says about one recipient.
type RecipientUpdate struct {
	RecipientID  string          `avro:"recipient_id" json:"recipient_id"`
	Email        string          `avro:"email" json:"email,omitempty"`
	Name         string          `avro:"name" json:"name,omitempty"`
	Status       RecipientStatus `avro:"status" json:"status"`
	SourceIP     *string         `avro:"source_ip" json:"source_ip,omitempty"`
	UserAgent    *string         `avro:"user_agent" json:"user_agent,omitempty"`
	IDVerifiedAt *time.Time      `avro:"id_verified_at" json:"id_verified_at,omitempty"`
	// Replaces is the recipient this one replaces (reassigned or
	// delegated from), which becomes REPLACED.
	Replaces *string `avro:"replaces" json:"replaces,omitempty"`
}

// EnvelopeStatusChanged mirrors EnvelopeStatusChanged.avsc.
type EnvelopeStatusChanged struct {
	EnvelopeID     string        `avro:"envelope_id" json:"envelope_id"`
	Version        int64         `avro:"version" json:"version"`
	PreviousStatus *Status       `avro:"previous_status" json:"previous_status,omitempty"`
	Status         Status        `avro:"status" json:"status"`
	EventID        string        `avro:"event_id" json:"event_id"`
	ChangedAt      time.Time     `avro:"changed_at" json:"changed_at"`
	State          EnvelopeState `avro:"state" json:"state"`
	Audit          []AuditEntry  `avro:"audit" json:"audit"`
	Kind           ChangeKind    `avro:"kind" json:"kind"`
}

// Envelope mirrors Envelope.avsc: an envelope's committed state, the value
// of the compacted changelog, and byte for byte what Redis holds for it.
type Envelope struct {
	State   EnvelopeState `avro:"state" json:"state"`
	Pending []AuditEntry  `avro:"pending" json:"pending"`
}

// EnvelopeState is the whole state of one envelope.
type EnvelopeState struct {
	EnvelopeID string           `avro:"envelope_id" json:"envelope_id"`
	Provider   string           `avro:"provider" json:"provider"`
	RequestID  *string          `avro:"request_id" json:"request_id,omitempty"`
	Tenant     *string          `avro:"tenant" json:"tenant,omitempty"`
	Status     *Status          `avro:"status" json:"status,omitempty"`
	StatusAt   time.Time        `avro:"status_at" json:"status_at"`
	Version    int64            `avro:"version" json:"version"`
	Recipients []RecipientState `avro:"recipients" json:"recipients"`
	Conflict   *string          `avro:"conflict" json:"conflict,omitempty"`
	Reason     *string          `avro:"reason" json:"reason,omitempty"`
	UpdatedAt  time.Time        `avro:"updated_at" json:"updated_at"`
	AuditSeq   int64            `avro:"audit_seq" json:"audit_seq"`
	AuditHead  string           `avro:"audit_head" json:"audit_head"`
	// Foreign marks an envelope created outside esignflow and adopted.
	Foreign bool `avro:"foreign" json:"foreign,omitempty"`
	// RequestHash is the SHA-256 (hex) of the signing request the
	// envelope was created for, taken from the first event that carries
	// it and never changed after. The changelog carries it so that the
	// request index a restore rebuilds still tells a conflicting request
	// from a duplicate. Nil for a foreign envelope and for a state written
	// before it was carried.
	RequestHash *string `avro:"request_hash" json:"request_hash,omitempty"`
}

// RecipientState is one recipient's state within an EnvelopeState.
type RecipientState struct {
	RecipientID  string          `avro:"recipient_id" json:"recipient_id"`
	Email        string          `avro:"email" json:"email,omitempty"`
	Name         string          `avro:"name" json:"name,omitempty"`
	Status       RecipientStatus `avro:"status" json:"status"`
	StatusAt     time.Time       `avro:"status_at" json:"status_at"`
	IDVerifiedAt *time.Time      `avro:"id_verified_at" json:"id_verified_at,omitempty"`
	ReplacedBy   *string         `avro:"replaced_by" json:"replaced_by,omitempty"`
	Replaces     *string         `avro:"replaces" json:"replaces,omitempty"`
}

// AuditEntry is one link of an envelope's hash-chained audit trail.
type AuditEntry struct {
	Seq             int64            `avro:"seq" json:"seq"`
	EnvelopeID      string           `avro:"envelope_id" json:"envelope_id"`
	EventID         string           `avro:"event_id" json:"event_id"`
	Source          Source           `avro:"source" json:"source"`
	Type            string           `avro:"type" json:"type"`
	Outcome         Outcome          `avro:"outcome" json:"outcome"`
	Status          *Status          `avro:"status" json:"status,omitempty"`
	RecipientID     *string          `avro:"recipient_id" json:"recipient_id,omitempty"`
	RecipientStatus *RecipientStatus `avro:"recipient_status" json:"recipient_status,omitempty"`
	OccurredAt      time.Time        `avro:"occurred_at" json:"occurred_at"`
	RecordedAt      time.Time        `avro:"recorded_at" json:"recorded_at"`
	SourceIP        *string          `avro:"source_ip" json:"source_ip,omitempty"`
	UserAgent       *string          `avro:"user_agent" json:"user_agent,omitempty"`
	IDVerifiedAt    *time.Time       `avro:"id_verified_at" json:"id_verified_at,omitempty"`
	DocumentSHA256  *string          `avro:"document_sha256" json:"document_sha256,omitempty"`
	PrevHash        string           `avro:"prev_hash" json:"prev_hash"`
	Hash            string           `avro:"hash" json:"hash"`
	// Replaces is the recipient RecipientID replaced, when the event
	// reassigned or delegated one: the entry keeps both.
	Replaces *string `avro:"replaces" json:"replaces,omitempty"`
	// Kind is the event's kind when it is not EventKindStatus.
	Kind *EventKind `avro:"kind" json:"kind,omitempty"`
}

// EnvelopeFinalized mirrors EnvelopeFinalized.avsc.
type EnvelopeFinalized struct {
	EnvelopeID  string         `avro:"envelope_id" json:"envelope_id"`
	RequestID   *string        `avro:"request_id" json:"request_id,omitempty"`
	Tenant      *string        `avro:"tenant" json:"tenant,omitempty"`
	Status      string         `avro:"status" json:"status"`
	Version     int64          `avro:"version" json:"version"`
	Files       []ArchivedFile `avro:"files" json:"files"`
	AuditHead   string         `avro:"audit_head" json:"audit_head"`
	AuditSeq    int64          `avro:"audit_seq" json:"audit_seq"`
	FinalizedAt time.Time      `avro:"finalized_at" json:"finalized_at"`
}

// ArchivedFile is one archived artefact of a finalised envelope.
type ArchivedFile struct {
	Kind     string `avro:"kind" json:"kind"`
	Location string `avro:"location" json:"location"`
	SHA256   string `avro:"sha256" json:"sha256"`
	Size     int64  `avro:"size" json:"size"`
}

// DeadLetter mirrors DeadLetter.avsc.
type DeadLetter struct {
	Topic     string    `avro:"topic" json:"topic"`
	Partition int32     `avro:"partition" json:"partition"`
	Offset    int64     `avro:"offset" json:"offset"`
	Key       []byte    `avro:"key" json:"key,omitempty"`
	Value     []byte    `avro:"value" json:"value,omitempty"`
	Headers   []Header  `avro:"headers" json:"headers"`
	Error     string    `avro:"error" json:"error"`
	Component string    `avro:"component" json:"component"`
	FailedAt  time.Time `avro:"failed_at" json:"failed_at"`
}

// Header is one Kafka record header kept in a DeadLetter.
type Header struct {
	Key   string `avro:"key" json:"key"`
	Value []byte `avro:"value" json:"value"`
}

// EventKind says what sort of observation an EnvelopeEvent is. It is an
// integer, not a string like the other enums, so that its zero value is
// the schema's default, STATUS: a producer that never heard of kinds
// writes STATUS, and an event decoded from an older record compares equal
// to the one that was written. It encodes as its symbol, in Avro and JSON.
type EventKind uint8

// Event kinds.
const (
	// EventKindStatus: the envelope's status and recipients as observed.
	EventKindStatus EventKind = iota
	// EventKindCorrected: the sender corrected the envelope (recipients,
	// documents) after sending it.
	EventKindCorrected
	// EventKindResent: the sender resent the envelope's invitations.
	EventKindResent
)

var eventKindSymbols = []string{"STATUS", "CORRECTED", "RESENT"}

func (k EventKind) String() string {
	if int(k) < len(eventKindSymbols) {
		return eventKindSymbols[k]
	}
	return fmt.Sprintf("EventKind(%d)", k)
}

// MarshalText writes the symbol; an unknown kind is an error.
func (k EventKind) MarshalText() ([]byte, error) {
	if int(k) >= len(eventKindSymbols) {
		return nil, fmt.Errorf("schemas: unknown event kind %d", k)
	}
	return []byte(eventKindSymbols[k]), nil
}

// UnmarshalText reads a symbol.
func (k *EventKind) UnmarshalText(b []byte) error {
	i, err := symbolIndex(eventKindSymbols, b, "event kind")
	*k = EventKind(i)
	return err
}

// ChangeKind says what sort of change an EnvelopeStatusChanged is. Like
// EventKind, its zero value is the schema's default, STATUS.
type ChangeKind uint8

// Change kinds.
const (
	// ChangeKindStatus: the envelope's status moved, or a conflict
	// between terminal statuses was reported or settled.
	ChangeKindStatus ChangeKind = iota
	// ChangeKindRecipient: only recipients changed.
	ChangeKindRecipient
	// ChangeKindCorrected: the sender corrected the envelope; the status
	// is not moved back (previous_status = status unless the correction
	// also brought news of a later status).
	ChangeKindCorrected
	// ChangeKindResent: the sender resent the envelope; as for
	// ChangeKindCorrected.
	ChangeKindResent
)

var changeKindSymbols = []string{"STATUS", "RECIPIENT", "CORRECTED", "RESENT"}

func (k ChangeKind) String() string {
	if int(k) < len(changeKindSymbols) {
		return changeKindSymbols[k]
	}
	return fmt.Sprintf("ChangeKind(%d)", k)
}

// MarshalText writes the symbol; an unknown kind is an error.
func (k ChangeKind) MarshalText() ([]byte, error) {
	if int(k) >= len(changeKindSymbols) {
		return nil, fmt.Errorf("schemas: unknown change kind %d", k)
	}
	return []byte(changeKindSymbols[k]), nil
}

// UnmarshalText reads a symbol.
func (k *ChangeKind) UnmarshalText(b []byte) error {
	i, err := symbolIndex(changeKindSymbols, b, "change kind")
	*k = ChangeKind(i)
	return err
}

func symbolIndex(symbols []string, b []byte, what string) (int, error) {
	for i, s := range symbols {
		if s == string(b) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("schemas: unknown %s %q", what, b)
}
