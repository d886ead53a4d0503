package schemas

import (
	"errors"
	"fmt"
)

// Sentinel errors. Decode failures wrap one of them in a *DecodeError, so a
// caller tells a poison record (dead-letter it) from a registry outage
// (retry) with errors.Is.
var (
	// ErrBadMagic means the first byte is not the Confluent magic byte 0.
	ErrBadMagic = errors.New("not in the Confluent wire format (magic byte is not 0)")
	// ErrTruncated means the record is shorter than its header or body.
	ErrTruncated = errors.New("record truncated")
	// ErrUnknownSchema means the registry does not know the schema id.
	ErrUnknownSchema = errors.New("unknown schema id")
	// ErrIncompatible means the writer's schema cannot be read as the
	// reader's type.
	ErrIncompatible = errors.New("writer schema incompatible with reader")
	// ErrBody means the Avro body does not decode with the writer's schema.
	ErrBody = errors.New("avro body does not decode")
	// ErrUnknownTopic means the topic has no esignflow schema.
	ErrUnknownTopic = errors.New("no schema for topic")
	// ErrUnknownType means the Go value is not one of esignflow's records.
	ErrUnknownType = errors.New("not an esignflow record type")
	// ErrNotRegistered means a LookupOnly codec did not find the schema in
	// the registry, so it cannot encode that topic's records: a producing
	// service registers it.
	ErrNotRegistered = errors.New("schema not registered (a producing service registers it)")
	// ErrRegistry means the Schema Registry could not be reached or refused
	// a call: transient, retry.
	ErrRegistry = errors.New("schema registry")
)

// DecodeError describes why a record could not be decoded. Err wraps one of
// the sentinels above.
type DecodeError struct {
	SchemaID int // 0 when the header did not decode
	Err      error
}

func (e *DecodeError) Error() string {
	if e.SchemaID == 0 {
		return fmt.Sprintf("decode: %v", e.Err)
	}
	return fmt.Sprintf("decode with schema id %d: %v", e.SchemaID, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// IsPoison reports whether err means the record itself is bad (dead-letter
// it) rather than the registry being unreachable (retry).
func IsPoison(err error) bool {
	var de *DecodeError
	return errors.As(err, &de) && !errors.Is(err, ErrRegistry)
}
