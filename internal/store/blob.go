package store

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/hamba/avro/v2"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/schemas"
)

// blobVersion leads every value the store writes, so a later layout can be
// told apart from this one. It is part of every checkpoint's History, so a
// partition written with another layout is restored, never read: 2 since
// the schemas gained bounced, failed-authentication and replaced
// recipients and the kinds of change (Avro bodies of layout 1 do not
// decode with them).
const blobVersion = 2

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

func (c *blobCodec) decode(s avro.Schema, b []byte, v any) error {
	if len(b) == 0 || b[0] != blobVersion {
		return fmt.Errorf("%w: version byte", errBlob)
	}
	if err := avro.Unmarshal(s, b[1:], v); err != nil {
		return fmt.Errorf("%w: %w", errBlob, err)
	}
	return nil
}

// decodeEnvelope decodes a stored envelope into *e, which it expects zero.
func (c *blobCodec) decodeEnvelope(b []byte, e *envelope.Envelope) error {
	return c.decode(c.env, b, e)
}

func (c *blobCodec) decodeChange(b []byte) (*schemas.EnvelopeStatusChanged, error) {
	var ch schemas.EnvelopeStatusChanged
	if err := avro.Unmarshal(c.change, b, &ch); err != nil {
		return nil, fmt.Errorf("%w: %w", errBlob, err)
	}
	return &ch, nil
}

func (c *blobCodec) decodeDedup(b []byte) (dedupRecord, error) {
	var r dedupRecord
	err := c.decode(c.dedup, b, &r)
	return r, err
}

// encoder encodes one batch's values through two reusable Avro writers, so
// each value costs one allocation of its exact size. Not safe for
// concurrent use: one per batch.
type encoder struct {
	c         *blobCodec
	body, hdr *avro.Writer
}

func (c *blobCodec) encoder() *encoder {
	return &encoder{c: c, body: avro.NewWriter(nil, 2048), hdr: avro.NewWriter(nil, 64)}
}

// envelope returns e's stored value.
func (e *encoder) envelope(env *envelope.Envelope) ([]byte, error) {
	e.body.Reset(nil)
	e.body.Write([]byte{blobVersion})
	e.body.WriteVal(e.c.env, env)
	if e.body.Error != nil {
		return nil, fmt.Errorf("store: encode envelope: %w", e.body.Error)
	}
	return bytes.Clone(e.body.Buffer()), nil
}

// dedup returns the stored value of a dedup record for the record at from
// and its change (nil: no change), and the change's Avro body with the
// status schema (no wire-format header), which is a slice of the value:
// the bytes both the dedup record and the status topic carry.
//
// The value is the Avro encoding of dedupRecord written field by field, so
// the change is encoded once and never copied into a record to be encoded
// again.
func (e *encoder) dedup(from Coord, ch *schemas.EnvelopeStatusChanged) (value, body []byte, err error) {
	e.body.Reset(nil)
	if ch != nil {
		e.body.WriteVal(e.c.change, ch)
		if e.body.Error != nil {
			return nil, nil, fmt.Errorf("store: encode change: %w", e.body.Error)
		}
	}
	h := e.hdr
	h.Reset(nil)
	h.Write([]byte{blobVersion})
	h.WriteString(from.Topic)
	h.WriteInt(from.Partition)
	h.WriteLong(from.Offset)
	if ch == nil {
		h.WriteLong(0) // union branch "null"
	} else {
		h.WriteLong(1) // union branch "bytes", then its length
		h.WriteLong(int64(e.body.Buffered()))
	}
	value = make([]byte, 0, h.Buffered()+e.body.Buffered())
	value = append(append(value, h.Buffer()...), e.body.Buffer()...)
	if ch != nil {
		body = value[h.Buffered():]
	}
	return value, body, nil
}
