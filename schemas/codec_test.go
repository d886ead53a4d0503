package schemas_test

import (
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/esignflow/esignflow/schemas"
)

func newRegistry(t *testing.T) *sr.Client {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func newCodec(t *testing.T, cl *sr.Client, opts ...schemas.Option) *schemas.Codec {
	t.Helper()
	c, err := schemas.NewCodec(context.Background(), cl, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

// oldEventSchema is an older EnvelopeEvent: it lacks every optional field
// added since, as a producer that never upgraded would write it.
const oldEventSchema = `{"type":"record","name":"EnvelopeEvent","namespace":"esignflow","fields":[
  {"name":"event_id","type":"string"},
  {"name":"provider","type":"string"},
  {"name":"envelope_id","type":"string"},
  {"name":"source","type":{"type":"enum","name":"Source","symbols":["WEBHOOK","POLL","API"]}},
  {"name":"occurred_at","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"received_at","type":{"type":"long","logicalType":"timestamp-millis"}}]}`

type oldEvent struct {
	EventID    string    `avro:"event_id"`
	Provider   string    `avro:"provider"`
	EnvelopeID string    `avro:"envelope_id"`
	Source     string    `avro:"source"`
	OccurredAt time.Time `avro:"occurred_at"`
	ReceivedAt time.Time `avro:"received_at"`
}

// oldEventWire is ev in the wire format under schema id id.
func oldEventWire(t *testing.T, id int, ev oldEvent) []byte {
	t.Helper()
	body, err := avro.Marshal(avro.MustParse(oldEventSchema), ev)
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(id)), body...)
}

var when = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func samples() []any {
	st := schemas.StatusCompleted
	return []any{
		&schemas.SigningRequest{
			RequestID: "req-1", Tenant: "acme", Provider: "sim",
			Documents:  []schemas.Document{{Name: "nda.pdf", ContentType: "application/pdf", URI: ptr("s3://b/nda.pdf"), SHA256: ptr(strings.Repeat("ab", 32))}, {Name: "x", ContentType: "text/plain", Content: []byte("hello")}},
			Recipients: []schemas.Recipient{{ID: "r1", Name: "Ann", Email: "ann@example.com", Role: "signer", RoutingOrder: 1, Auth: schemas.AuthSMS, Phone: ptr("+15550100")}},
			Subject:    "Please sign", ExpiresAt: ptr(when.Add(72 * time.Hour)),
			Metadata:    map[string]string{"crm": "42"},
			RequestedAt: when,
		},
		&schemas.EnvelopeEvent{
			EventID: "ev-1", Provider: "sim", EnvelopeID: "env-1", RequestID: ptr("req-1"), Source: schemas.SourceWebhook,
			Type: "recipient.signed", Status: &st,
			Recipients: []schemas.RecipientUpdate{{RecipientID: "r1", Status: schemas.RecipientSigned, SourceIP: ptr("203.0.113.9"), IDVerifiedAt: ptr(when)}},
			OccurredAt: when, ReceivedAt: when.Add(time.Second), Metadata: map[string]string{},
		},
		&schemas.EnvelopeStatusChanged{
			EnvelopeID: "env-1", Version: 3, PreviousStatus: ptr(schemas.StatusSent), Status: schemas.StatusCompleted, EventID: "ev-1", ChangedAt: when,
			State: schemas.EnvelopeState{EnvelopeID: "env-1", Provider: "sim", Status: &st, StatusAt: when, Version: 3,
				Recipients: []schemas.RecipientState{{RecipientID: "r1", Status: schemas.RecipientSigned, StatusAt: when}},
				UpdatedAt:  when, AuditSeq: 3, AuditHead: "ff"},
			Audit: []schemas.AuditEntry{{Seq: 3, EnvelopeID: "env-1", EventID: "ev-1", Source: schemas.SourcePoll, Type: "t", Outcome: schemas.OutcomeApplied, Status: &st, OccurredAt: when, RecordedAt: when, PrevHash: "aa", Hash: "ff"}},
		},
		&schemas.EnvelopeFinalized{EnvelopeID: "env-1", Status: "COMPLETED", Version: 3, Files: []schemas.ArchivedFile{{Kind: "signed", Location: "sha256/ab", SHA256: "ab", Size: 10}}, AuditHead: "ff", AuditSeq: 3, FinalizedAt: when},
		&schemas.DeadLetter{Topic: schemas.TopicEvents, Partition: 2, Offset: 99, Key: []byte("k"), Value: []byte{1, 2}, Headers: []schemas.Header{{Key: "h", Value: []byte("v")}}, Error: "boom", Component: "processor", FailedAt: when},
	}
}

func TestRoundTripEveryType(t *testing.T) {
	cl := newRegistry(t)
	c := newCodec(t, cl)
	ctx := context.Background()
	for _, v := range samples() {
		t.Run(reflect.TypeOf(v).Elem().Name(), func(t *testing.T) {
			b, err := c.Encode(v)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != 0 {
				t.Fatalf("magic byte = %d, want 0", b[0])
			}
			id := int(binary.BigEndian.Uint32(b[1:5]))
			// The id in the header must be the one the registry has for
			// the subject, checked through the registry, not the codec.
			var topic string
			for _, tp := range schemas.Topics() {
				if cid, _ := c.ID(tp); cid == id {
					topic = tp
				}
			}
			latest, err := cl.SchemaByVersion(ctx, schemas.Subject(topic), -1)
			if err != nil {
				t.Fatalf("registry lookup of %s: %v", topic, err)
			}
			if latest.ID != id {
				t.Fatalf("header id = %d, registry has %d for %s", id, latest.ID, topic)
			}
			got := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if err := c.Decode(ctx, b, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalise(got), normalise(v)) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, v)
			}
		})
	}
}

// normalise maps nil and empty maps alike and times to UTC, the two things
// Avro does not preserve.
func normalise(v any) any {
	switch r := v.(type) {
	case *schemas.SigningRequest:
		c := *r
		c.RequestedAt = c.RequestedAt.UTC()
		if c.ExpiresAt != nil {
			c.ExpiresAt = ptr(c.ExpiresAt.UTC())
		}
		return c
	default:
		return v
	}
}

func TestCodecRegistersBackward(t *testing.T) {
	cl := newRegistry(t)
	newCodec(t, cl)
	for _, tp := range schemas.Topics() {
		res := cl.Compatibility(context.Background(), schemas.Subject(tp))
		if res[0].Err != nil || res[0].Level != sr.CompatBackward {
			t.Errorf("%s: compatibility = %v (%v), want BACKWARD", tp, res[0].Level, res[0].Err)
		}
	}
}

// An older producer that does not know the newest optional fields must
// still be readable: the test registers the older version first, then the
// codec registers the current one as version 2.
func TestDecodeOlderSchemaVersion(t *testing.T) {
	cl := newRegistry(t)
	ctx := context.Background()
	ss, err := cl.CreateSchema(ctx, schemas.Subject(schemas.TopicEvents), sr.Schema{Schema: oldEventSchema, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	c := newCodec(t, cl)
	cur, _ := c.ID(schemas.TopicEvents)
	if cur == ss.ID {
		t.Fatalf("codec reused the old schema id %d", cur)
	}
	wire := oldEventWire(t, ss.ID, oldEvent{"e1", "sim", "env-9", "POLL", when, when})

	var got schemas.EnvelopeEvent
	if err := c.Decode(ctx, wire, &got); err != nil {
		t.Fatal(err)
	}
	if got.EventID != "e1" || got.EnvelopeID != "env-9" || got.Source != schemas.SourcePoll || !got.OccurredAt.Equal(when) {
		t.Fatalf("old fields: got %+v", got)
	}
	if got.Status != nil || got.Type != "" || len(got.Recipients) != 0 || got.Metadata == nil {
		t.Fatalf("new fields should take their defaults: got %+v", got)
	}
}

func TestDecodeBadInputIsTyped(t *testing.T) {
	cl := newRegistry(t)
	c := newCodec(t, cl, schemas.WithUnknownSchemaGrace(0))
	good, err := c.Encode(samples()[1])
	if err != nil {
		t.Fatal(err)
	}
	status, err := c.Encode(samples()[2])
	if err != nil {
		t.Fatal(err)
	}
	unknown := append([]byte{0, 0, 0, 0x30, 0x39}, good[5:]...)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, schemas.ErrTruncated},
		{"wrong magic", append([]byte{1}, good[1:]...), schemas.ErrBadMagic},
		{"short header", good[:3], schemas.ErrTruncated},
		{"unknown schema id", unknown, schemas.ErrUnknownSchema},
		{"truncated body", good[:len(good)-4], schemas.ErrBody},
		{"random body", append(good[:5:5], 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), schemas.ErrBody},
		{"record of another topic", status, schemas.ErrIncompatible},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev schemas.EnvelopeEvent
			err := c.Decode(context.Background(), tt.in, &ev)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !schemas.IsPoison(err) {
				t.Fatalf("IsPoison(%v) = false", err)
			}
		})
	}
}

// An unknown schema id is the registry lagging (a follower that has not
// seen its leader's new version) for the grace, and poison after it: a
// schema that appears within the grace decodes; one that never does is
// dead-lettered.
func TestUnknownSchemaIsTransientThenPoison(t *testing.T) {
	ctx := context.Background()
	cl := newRegistry(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	c := newCodec(t, cl, schemas.WithUnknownSchemaGrace(30*time.Second), schemas.WithClock(func() time.Time { return now }))
	all, err := cl.AllSchemas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	for _, s := range all {
		next = max(next, s.ID)
	}
	next++ // the id the registry gives the next new schema
	ev1 := oldEvent{"e1", "sim", "env-1", "WEBHOOK", now, now}
	wire := oldEventWire(t, next, ev1)

	var ev schemas.EnvelopeEvent
	err = c.Decode(ctx, wire, &ev)
	if !errors.Is(err, schemas.ErrUnknownSchema) || !errors.Is(err, schemas.ErrRegistry) || schemas.IsPoison(err) {
		t.Fatalf("unknown id within the grace: %v; want a transient registry error", err)
	}
	now = now.Add(10 * time.Second)
	ss, err := cl.CreateSchema(ctx, schemas.Subject(c.Topics().Events), sr.Schema{Schema: oldEventSchema, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	if ss.ID != next {
		t.Fatalf("the registry gave id %d, the test expected %d", ss.ID, next)
	}
	if err := c.Decode(ctx, wire, &ev); err != nil || ev.EnvelopeID != "env-1" {
		t.Fatalf("once the registry knows the schema: %v, %+v", err, ev)
	}

	never := oldEventWire(t, next+1000, ev1)
	if err := c.Decode(ctx, never, &ev); schemas.IsPoison(err) {
		t.Fatalf("first answer for an id never registered is already poison: %v", err)
	}
	now = now.Add(29 * time.Second)
	if err := c.Decode(ctx, never, &ev); schemas.IsPoison(err) {
		t.Fatalf("poison before the grace ended: %v", err)
	}
	now = now.Add(time.Second)
	if err := c.Decode(ctx, never, &ev); !errors.Is(err, schemas.ErrUnknownSchema) || !schemas.IsPoison(err) {
		t.Fatalf("after the grace: %v; want poison", err)
	}
}

func TestRegistryDownIsNotPoison(t *testing.T) {
	reg := srfake.New()
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	c := newCodec(t, cl)
	b := append([]byte{0, 0, 0, 0x30, 0x39}, 0)
	reg.Close()
	var ev schemas.EnvelopeEvent
	err = c.Decode(context.Background(), b, &ev)
	if !errors.Is(err, schemas.ErrRegistry) || schemas.IsPoison(err) {
		t.Fatalf("got %v; want a non-poison registry error", err)
	}
}

func FuzzDecode(f *testing.F) {
	reg := srfake.New()
	defer reg.Close()
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		f.Fatal(err)
	}
	c, err := schemas.NewCodec(context.Background(), cl)
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range samples() {
		b, err := c.Encode(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []any{&schemas.SigningRequest{}, &schemas.EnvelopeEvent{}, &schemas.EnvelopeStatusChanged{}, &schemas.DeadLetter{}} {
			_ = c.Decode(context.Background(), b, v) // must not panic
		}
	})
}
