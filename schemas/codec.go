package schemas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// decodeAPI bounds what a hostile record can make the decoder allocate:
// an array or map count is checked before its slice is made.
var decodeAPI = avro.Config{
	TagKey:            "avro",
	BlockLength:       100,
	MaxByteSliceSize:  MaxBytes,
	MaxSliceAllocSize: MaxItems,
}.Freeze()

// Limits on one decoded record: the largest bytes or string field (inline
// documents included) and the most items in one array or map.
const (
	MaxBytes = 32 << 20
	MaxItems = 1 << 16
)

// headerSize is the Confluent wire-format header: magic byte 0 and a
// big-endian 4-byte schema id.
const headerSize = 5

// reader is the schema and registered id of one Go record type.
type reader struct {
	topic  string
	schema avro.Schema
	id     int
}

// resolveKey names a (writer schema, reader type) pair.
type resolveKey struct {
	id  int
	typ reflect.Type
}

// Codec encodes esignflow records in the Confluent wire format and decodes
// records written with any registered version of their subject. It is safe
// for concurrent use.
type Codec struct {
	client     *sr.Client
	names      Names
	lookupOnly bool
	byType     map[reflect.Type]reader

	mu       sync.RWMutex
	resolved map[resolveKey]avro.Schema // writer id + reader type → schema to decode with

	grace   time.Duration // how long an unknown schema id counts as the registry lagging
	now     func() time.Time
	unknown sync.Map // schema id → time.Time it was first answered unknown
}

// DefaultUnknownSchemaGrace is how long an unknown schema id is taken for a
// registry that lags (a Confluent follower answers 404 for a version its
// leader registered a moment ago) before the record is poison.
const DefaultUnknownSchemaGrace = time.Minute

// Option configures a Codec.
type Option func(*Codec)

// WithUnknownSchemaGrace sets how long after the registry first answers
// "unknown" for a schema id a record with that id is a transient failure
// (ErrRegistry: retry it) rather than poison (default
// DefaultUnknownSchemaGrace; 0 makes it poison at once).
func WithUnknownSchemaGrace(d time.Duration) Option { return func(c *Codec) { c.grace = d } }

// WithClock sets the codec's clock (tests of the grace above).
func WithClock(now func() time.Time) Option { return func(c *Codec) { c.now = now } }

// WithNames binds the codec to an installation's topic names (default:
// DefaultNames); its subjects follow them.
func WithNames(n Names) Option { return func(c *Codec) { c.names = n.OrDefault() } }

// LookupOnly makes NewCodec look the schemas up instead of registering them
// (the default): it changes nothing in the registry, so read rights are
// enough. It is for the commands that only read (watch, audit, dlq list).
// A subject that does not have the schema yet is not an error: the codec
// still decodes that topic's records, written with any registered schema,
// but encoding one fails with ErrNotRegistered.
func LookupOnly() Option { return func(c *Codec) { c.lookupOnly = true } }

// NewCodec registers every esignflow schema, as its .avsc file is written
// (Text: doc fields and defaults kept), under "<topic>-value" and returns a
// Codec that encodes with the registered ids. Registering a schema the
// registry already has is a lookup, so every producing process may call it
// at start; with LookupOnly it only looks them up.
//
// Registering leaves a compatibility level an operator set alone. A subject
// without a level of its own inherits the registry's global level; only
// when that level does not let a new schema read what older ones wrote
// (NONE, FORWARD, FORWARD_TRANSITIVE) is the subject set to BACKWARD, which
// the codec's reading of older versions relies on.
//
// The codec carries the installation's topic names (Topics): under the
// topic-name strategy a topic's name decides its subject, so the names
// and the schemas travel together to every component.
func NewCodec(ctx context.Context, client *sr.Client, opts ...Option) (*Codec, error) {
	c := &Codec{
		client:   client,
		names:    DefaultNames(),
		byType:   make(map[reflect.Type]reader),
		resolved: make(map[resolveKey]avro.Schema),
		grace:    DefaultUnknownSchemaGrace,
		now:      time.Now,
	}
	for _, o := range opts {
		o(c)
	}
	global := sr.CompatibilityLevel(0)
	if !c.lookupOnly {
		res := client.Compatibility(ctx)
		if res[0].Err != nil {
			return nil, fmt.Errorf("global compatibility: %w: %w", ErrRegistry, res[0].Err)
		}
		global = res[0].Level
	}
	for _, b := range bindings() {
		schema, err := Parse(b.topic)
		if err != nil {
			return nil, err
		}
		text, err := Text(b.topic)
		if err != nil {
			return nil, err
		}
		topic := c.names.Of(b.topic)
		subject := Subject(topic)
		want := sr.Schema{Schema: text, Type: sr.TypeAvro}
		var ss sr.SubjectSchema
		if c.lookupOnly {
			ss, err = client.LookupSchema(ctx, subject, want)
			if isNotFound(err) {
				c.byType[b.typ] = reader{topic: topic, schema: schema}
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("look up %s: %w: %w", subject, ErrRegistry, err)
			}
		} else {
			if err := ensureBackward(ctx, client, subject, global); err != nil {
				return nil, err
			}
			if ss, err = client.CreateSchema(ctx, subject, want); err != nil {
				return nil, fmt.Errorf("register %s: %w: %w", subject, ErrRegistry, err)
			}
		}
		c.byType[b.typ] = reader{topic: topic, schema: schema, id: ss.ID}
		c.resolved[resolveKey{ss.ID, b.typ}] = schema
	}
	return c, nil
}

// readsOlder reports whether level lets a new schema read data written
// with the earlier ones.
func readsOlder(level sr.CompatibilityLevel) bool {
	switch level {
	case sr.CompatBackward, sr.CompatBackwardTransitive, sr.CompatFull, sr.CompatFullTransitive:
		return true
	}
	return false
}

// ensureBackward sets subject to BACKWARD when it has no level of its own
// and the global level it inherits does not read older versions. A
// registry answers GET /config/{subject} with 404 (40401, 40408) when the
// subject has no level of its own; some (srfake, older Confluent) answer
// the global level instead, which counts as none set.
func ensureBackward(ctx context.Context, client *sr.Client, subject string, global sr.CompatibilityLevel) error {
	res := client.Compatibility(ctx, subject)
	switch err := res[0].Err; {
	case isNotFound(err):
	case err != nil:
		return fmt.Errorf("compatibility of %s: %w: %w", subject, ErrRegistry, err)
	case res[0].Level != global:
		return nil // the subject's own level: an operator's choice
	}
	if readsOlder(global) {
		return nil
	}
	for _, r := range client.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatBackward}, subject) {
		if r.Err != nil {
			return fmt.Errorf("set BACKWARD compatibility on %s: %w: %w", subject, ErrRegistry, r.Err)
		}
	}
	return nil
}

// isNotFound reports whether err is a registry's 404.
func isNotFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

// Topics are the topic names the codec is bound to.
func (c *Codec) Topics() Names { return c.names }

// ID returns the registered schema id of topic's current schema (topic as
// named in Topics).
func (c *Codec) ID(topic string) (int, error) {
	for _, r := range c.byType {
		if r.topic == topic {
			if r.id == 0 {
				return 0, fmt.Errorf("topic %q: %w", topic, ErrNotRegistered)
			}
			return r.id, nil
		}
	}
	return 0, fmt.Errorf("topic %q: %w", topic, ErrUnknownTopic)
}

func (c *Codec) readerOf(v any) (reader, reflect.Type, error) {
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	r, ok := c.byType[t]
	if !ok {
		return reader{}, nil, fmt.Errorf("%T: %w", v, ErrUnknownType)
	}
	return r, t, nil
}

// Encode returns v (a record type of this package, or a pointer to one) in
// the Confluent wire format with its registered schema id.
func (c *Codec) Encode(v any) ([]byte, error) { return c.AppendEncode(nil, v) }

// AppendEncode appends v's wire-format encoding to b.
func (c *Codec) AppendEncode(b []byte, v any) ([]byte, error) {
	r, _, err := c.readerOf(v)
	if err != nil {
		return nil, err
	}
	if r.id == 0 {
		return nil, fmt.Errorf("%T on %s: %w", v, r.topic, ErrNotRegistered)
	}
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(r.id))
	body, err := avro.Marshal(r.schema, v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return append(b, body...), nil
}

// Wrap returns an Avro body already encoded with topic's current schema in
// the wire format: the header, then body. It lets a caller that encoded the
// record once (the store does, for its dedup record) publish the same bytes.
func (c *Codec) Wrap(topic string, body []byte) ([]byte, error) {
	id, err := c.ID(topic)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, headerSize+len(body))
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(id))
	return append(b, body...), nil
}

// SchemaID returns the schema id in a wire-format record's header.
func SchemaID(b []byte) (int, error) {
	if len(b) < 1 {
		return 0, &DecodeError{Err: ErrTruncated}
	}
	if b[0] != 0 {
		return 0, &DecodeError{Err: ErrBadMagic}
	}
	if len(b) < headerSize {
		return 0, &DecodeError{Err: ErrTruncated}
	}
	return int(binary.BigEndian.Uint32(b[1:headerSize])), nil
}

// Decode decodes a wire-format record into v, a pointer to one of this
// package's record types. A record written with an older registered schema
// is resolved against the current one (missing fields take their
// defaults); the writer schema is fetched from the registry once and cached.
// Errors are *DecodeError wrapping a sentinel; see IsPoison.
func (c *Codec) Decode(ctx context.Context, b []byte, v any) error {
	_, t, err := c.readerOf(v)
	if err != nil {
		return err
	}
	id, err := SchemaID(b)
	if err != nil {
		return err
	}
	schema, err := c.schemaFor(ctx, id, t)
	if err != nil {
		return err
	}
	// avro.Unmarshal treats running out of bytes as success; a truncated
	// record must be an error, so read with a Reader and keep its EOF.
	r := avro.NewReader(nil, 0, avro.WithReaderConfig(decodeAPI)).Reset(b[headerSize:])
	r.ReadVal(schema, v)
	if r.Error != nil {
		return &DecodeError{SchemaID: id, Err: fmt.Errorf("%w: %w", ErrBody, r.Error)}
	}
	return nil
}

// schemaFor returns the schema that decodes data written with schema id
// into the reader type t.
func (c *Codec) schemaFor(ctx context.Context, id int, t reflect.Type) (avro.Schema, error) {
	key := resolveKey{id, t}
	c.mu.RLock()
	s, ok := c.resolved[key]
	c.mu.RUnlock()
	if ok {
		return s, nil
	}
	ws, err := c.client.SchemaByID(ctx, id)
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == 404 {
			now := c.now()
			first, _ := c.unknown.LoadOrStore(id, now)
			if waited := now.Sub(first.(time.Time)); waited < c.grace {
				return nil, &DecodeError{SchemaID: id, Err: fmt.Errorf("%w: %w for %s so far (a registry follower may lag its leader; poison after %s)",
					ErrRegistry, ErrUnknownSchema, waited.Round(time.Millisecond), c.grace)}
			}
			return nil, &DecodeError{SchemaID: id, Err: ErrUnknownSchema}
		}
		return nil, &DecodeError{SchemaID: id, Err: fmt.Errorf("%w: fetch schema: %w", ErrRegistry, err)}
	}
	writer, err := avro.ParseWithCache(ws.Schema, "", &avro.SchemaCache{})
	if err != nil {
		return nil, &DecodeError{SchemaID: id, Err: fmt.Errorf("%w: writer schema: %w", ErrIncompatible, err)}
	}
	resolved, err := avro.NewSchemaCompatibility().Resolve(c.byType[t].schema, writer)
	if err != nil {
		return nil, &DecodeError{SchemaID: id, Err: fmt.Errorf("%w: %w", ErrIncompatible, err)}
	}
	c.mu.Lock()
	c.resolved[key] = resolved
	c.unknown.Delete(id) // it turned up: a later 404 starts a new grace
	c.mu.Unlock()
	return resolved, nil
}
