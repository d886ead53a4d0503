package store

import (
	"errors"
	"fmt"

	"github.com/hamba/avro/v2"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/schemas"
)

// blobVersion leads every value the store writes, so a later layout can be
// told apart from this one.
const blobVersion = 1

var errBlob = errors.New("unreadable stored value")

// dedupRecord is what a dedup key holds: the record the event came from and
// the Avro body of the change it produced (nil: no change).
type dedupRecord struct {
	Topic     string `avro:"topic"`
	Partition int32  `avro:"partition"`
	Offset    int64  `avro:"offset"`
	Change    []byte `avro:"change"`
}

// blobCodec encodes stored values in Avro with the named types of the
// status schema, so the state in Redis and on the status topic are the same
// bytes in spirit and cost.
type blobCodec struct {
	env, dedup, change avro.Schema
}

func newBlobCodec() (*blobCodec, error) {
	text, err := schemas.Text(schemas.TopicStatus)
	if err != nil {
		return nil, err
	}
	cache := &avro.SchemaCache{}
	change, err := avro.ParseWithCache(text, "", cache)
	if err != nil {
		return nil, fmt.Errorf("store: status schema: %w", err)
	}
	env, err := avro.ParseWithCache(`{"type":"record","name":"StoredEnvelope","namespace":"esignflow.store","fields":[
		{"name":"state","type":"esignflow.EnvelopeState"},
		{"name":"pending","type":{"type":"array","items":"esignflow.AuditEntry"}}]}`, "", cache)
	if err != nil {
		return nil, fmt.Errorf("store: envelope schema: %w", err)
	}
	dedup, err := avro.ParseWithCache(`{"type":"record","name":"DedupRecord","namespace":"esignflow.store","fields":[
		{"name":"topic","type":"string"},
		{"name":"partition","type":"int"},
		{"name":"offset","type":"long"},
		{"name":"change","type":["null","bytes"]}]}`, "", cache)
	if err != nil {
		return nil, fmt.Errorf("store: dedup schema: %w", err)
	}
	return &blobCodec{env: env, dedup: dedup, change: change}, nil
}

func (c *blobCodec) encode(s avro.Schema, v any) ([]byte, error) {
	b, err := avro.Marshal(s, v)
	if err != nil {
		return nil, fmt.Errorf("store: encode: %w", err)
	}
	return append([]byte{blobVersion}, b...), nil
}

func (c *blobCodec) decode(s avro.Schema, b []byte, v any) error {
	if len(b) == 0 || b[0] != blobVersion {
		return fmt.Errorf("%w: version byte", errBlob)
	}
	if err := avro.Unmarshal(s, b[1:], v); err != nil {
		return fmt.Errorf("%w: %w", errBlob, err)
	}
	return nil
}

func (c *blobCodec) encodeEnvelope(e envelope.Envelope) ([]byte, error) { return c.encode(c.env, e) }

func (c *blobCodec) decodeEnvelope(b []byte) (envelope.Envelope, error) {
	var e envelope.Envelope
	err := c.decode(c.env, b, &e)
	return e, err
}

// encodeChange returns a change's Avro body with the status schema: the
// bytes both the dedup record and the status topic carry.
func (c *blobCodec) encodeChange(ch *schemas.EnvelopeStatusChanged) ([]byte, error) {
	b, err := avro.Marshal(c.change, ch)
	if err != nil {
		return nil, fmt.Errorf("store: encode change: %w", err)
	}
	return b, nil
}

func (c *blobCodec) decodeChange(b []byte) (*schemas.EnvelopeStatusChanged, error) {
	var ch schemas.EnvelopeStatusChanged
	if err := avro.Unmarshal(c.change, b, &ch); err != nil {
		return nil, fmt.Errorf("%w: %w", errBlob, err)
	}
	return &ch, nil
}

func (c *blobCodec) encodeDedup(r dedupRecord) ([]byte, error) { return c.encode(c.dedup, r) }

func (c *blobCodec) decodeDedup(b []byte) (dedupRecord, error) {
	var r dedupRecord
	err := c.decode(c.dedup, b, &r)
	return r, err
}
