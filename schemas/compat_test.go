package schemas_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/esignflow/esignflow/schemas"
)

// testdata/v1 holds the .avsc files as they were before recipients could
// fail authentication, bounce or be replaced and before events had kinds
// (commit 94bb921): what every record written until then was written with.
var v1Files = map[string]string{
	schemas.TopicRequests:  "SigningRequest.avsc",
	schemas.TopicEvents:    "EnvelopeEvent.avsc",
	schemas.TopicStatus:    "EnvelopeStatusChanged.avsc",
	schemas.TopicEnvelopes: "Envelope.avsc",
	schemas.TopicFinalized: "EnvelopeFinalized.avsc",
	schemas.TopicDLQ:       "DeadLetter.avsc",
}

func v1Text(t *testing.T, topic string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "v1", v1Files[topic]))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func parse(t *testing.T, text string) avro.Schema {
	t.Helper()
	s, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Every shipped schema reads what its v1 wrote, by the rules a registry at
// BACKWARD applies (hamba/avro's checker: new fields need defaults, enum
// symbols may only be added where the writer's are all kept, …). The
// checker is shown to refuse a change that is not backward compatible, so
// that its yes means something.
func TestSchemasAreBackwardCompatibleWithV1(t *testing.T) {
	for _, tp := range schemas.Topics() {
		t.Run(tp, func(t *testing.T) {
			cur, err := schemas.Parse(tp)
			if err != nil {
				t.Fatal(err)
			}
			if err := avro.NewSchemaCompatibility().Compatible(cur, parse(t, v1Text(t, tp))); err != nil {
				t.Fatalf("the current schema cannot read v1 records: %v", err)
			}
		})
	}
	t.Run("checker refuses a field without default", func(t *testing.T) {
		text, _ := schemas.Text(schemas.TopicEvents)
		broken := strings.Replace(text, `"default": "STATUS",
     "doc"`, `"doc"`, 1)
		if broken == text {
			t.Fatal("test setup: the kind field's default was not found")
		}
		if err := avro.NewSchemaCompatibility().Compatible(parse(t, broken), parse(t, v1Text(t, schemas.TopicEvents))); err == nil {
			t.Fatal("a new field without a default was accepted")
		}
	})
	t.Run("checker refuses a removed enum symbol", func(t *testing.T) {
		text, _ := schemas.Text(schemas.TopicStatus)
		broken := strings.Replace(text, `"DECLINED", "FAILED", "AUTH_FAILED"`, `"DECLINED", "AUTH_FAILED"`, 1)
		if broken == text {
			t.Fatal("test setup: the recipient symbols were not found")
		}
		// The enum's default lets a reader map an unknown symbol, so the
		// removal only shows against a writer that has no default.
		w := strings.ReplaceAll(v1Text(t, schemas.TopicStatus), `"FAILED"], "default": "CREATED"}`, `"FAILED"]}`)
		r := strings.ReplaceAll(broken, `"REPLACED"], "default": "CREATED"}`, `"REPLACED"]}`)
		if err := avro.NewSchemaCompatibility().Compatible(parse(t, r), parse(t, w)); err == nil {
			t.Fatal("a removed enum symbol was accepted")
		}
	})
}

// Envelope.avsc is the changelog value and the store writes the same
// state in Redis with the status schema's named types: the two must be one
// binary layout, or a restore from the changelog would not be what Redis
// held.
func TestEnvelopeLayoutMatchesStatusSchema(t *testing.T) {
	env, err := schemas.Parse(schemas.TopicEnvelopes)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := schemas.Text(schemas.TopicStatus)
	cache := &avro.SchemaCache{}
	if _, err := avro.ParseWithCache(text, "", cache); err != nil {
		t.Fatal(err)
	}
	stored, err := avro.ParseWithCache(`{"type":"record","name":"Stored","namespace":"esignflow.test","fields":[
		{"name":"state","type":"esignflow.EnvelopeState"},
		{"name":"pending","type":{"type":"array","items":"esignflow.AuditEntry"}}]}`, "", cache)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []*schemas.Envelope{v1Samples()[schemas.TopicEnvelopes].(*schemas.Envelope), newEnvelope()} {
		a, err := avro.Marshal(env, v)
		if err != nil {
			t.Fatal(err)
		}
		b, err := avro.Marshal(stored, v)
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Fatalf("Envelope.avsc and the status schema's types encode differently:\n%x\n%x", a, b)
		}
	}
}

// v1Samples are records as v1 producers wrote them: every field v1 had,
// set, including the recipient status FAILED that v1 wrote for a bounce.
func v1Samples() map[string]any {
	st, failed := schemas.StatusSent, schemas.RecipientFailed
	state := schemas.EnvelopeState{
		EnvelopeID: "env-1", Provider: "docusign", RequestID: ptr("req-1"), Tenant: ptr("acme"), Status: &st, StatusAt: when, Version: 2,
		Recipients: []schemas.RecipientState{{RecipientID: "1", Email: "ann@example.com", Name: "Ann", Status: failed, StatusAt: when, IDVerifiedAt: ptr(when)}},
		Conflict:   ptr("COMPLETED then VOIDED"), Reason: ptr("r"), UpdatedAt: when, AuditSeq: 2, AuditHead: "ff",
	}
	audit := []schemas.AuditEntry{{Seq: 2, EnvelopeID: "env-1", EventID: "ev-2", Source: schemas.SourceWebhook, Type: "recipient-autoresponded",
		Outcome: schemas.OutcomeApplied, Status: &st, RecipientID: ptr("1"), RecipientStatus: &failed, OccurredAt: when, RecordedAt: when,
		SourceIP: ptr("203.0.113.1"), UserAgent: ptr("ua"), IDVerifiedAt: ptr(when), DocumentSHA256: ptr("ab"), PrevHash: "aa", Hash: "ff"}}
	return map[string]any{
		schemas.TopicEvents: &schemas.EnvelopeEvent{
			EventID: "ev-2", Provider: "docusign", EnvelopeID: "env-1", RequestID: ptr("req-1"), Tenant: ptr("acme"), Source: schemas.SourceWebhook,
			Type: "recipient-autoresponded", Status: &st,
			Recipients: []schemas.RecipientUpdate{{RecipientID: "1", Email: "ann@example.com", Name: "Ann", Status: failed, SourceIP: ptr("203.0.113.1"), UserAgent: ptr("ua"), IDVerifiedAt: ptr(when)}},
			OccurredAt: when, ReceivedAt: when, SourceIP: ptr("203.0.113.2"), UserAgent: ptr("ua2"), BodySHA256: ptr("cd"), DocumentSHA256: ptr("ab"),
			Reason: ptr("bounced"), Metadata: map[string]string{"k": "v"},
		},
		schemas.TopicStatus: &schemas.EnvelopeStatusChanged{
			EnvelopeID: "env-1", Version: 2, PreviousStatus: &st, Status: st, EventID: "ev-2", ChangedAt: when, State: state, Audit: audit,
		},
		schemas.TopicEnvelopes: &schemas.Envelope{State: state, Pending: audit},
	}
}

// TestOldRecordsDecode: records written with the v1 schemas, registered
// as the subjects' first versions as a running v1 installation left them,
// decode with the current codec, keep every value they had and take the
// defaults for the rest: kind STATUS, no replacement links, not foreign,
// no request hash.
func TestOldRecordsDecode(t *testing.T) {
	cl := newRegistry(t)
	ctx := context.Background()
	ids := map[string]int{}
	for _, tp := range schemas.Topics() {
		ss, err := cl.CreateSchema(ctx, schemas.Subject(tp), sr.Schema{Schema: v1Text(t, tp), Type: sr.TypeAvro})
		if err != nil {
			t.Fatal(err)
		}
		ids[tp] = ss.ID
	}
	c := newCodec(t, cl)
	for tp, v := range v1Samples() {
		t.Run(tp, func(t *testing.T) {
			if cur, _ := c.ID(tp); cur == ids[tp] {
				t.Fatalf("the current schema of %s registered as v1's id %d: test does not test", tp, cur)
			}
			body, err := avro.Marshal(parse(t, v1Text(t, tp)), v)
			if err != nil {
				t.Fatal(err)
			}
			wire := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(ids[tp])), body...)
			got := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if err := c.Decode(ctx, wire, got); err != nil {
				t.Fatal(err)
			}
			// v has the zero value in every field v1 lacks, which is what
			// each default decodes to: kind 0 (STATUS), nil, false.
			if !reflect.DeepEqual(got, v) {
				a, _ := json.Marshal(got)
				b, _ := json.Marshal(v)
				t.Fatalf("decoded\n%s\nwant\n%s", a, b)
			}
		})
	}
	// The defaults named, not only as zero values.
	var ev schemas.EnvelopeEvent
	body, _ := avro.Marshal(parse(t, v1Text(t, schemas.TopicEvents)), v1Samples()[schemas.TopicEvents])
	if err := c.Decode(ctx, append(binary.BigEndian.AppendUint32([]byte{0}, uint32(ids[schemas.TopicEvents])), body...), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Kind != schemas.EventKindStatus || ev.Kind.String() != "STATUS" || ev.Recipients[0].Replaces != nil || ev.Recipients[0].Status != schemas.RecipientFailed || ev.RequestHash != nil {
		t.Fatalf("defaults: kind %v, replaces %v, status %s, request hash %v", ev.Kind, ev.Recipients[0].Replaces, ev.Recipients[0].Status, ev.RequestHash)
	}
}

// New records round-trip with every new field set, and a v1 reader (a
// consumer not yet upgraded) still reads the new record's old fields: the
// enums' defaults map the symbols it does not know.
func TestNewRecordsRoundTrip(t *testing.T) {
	cl := newRegistry(t)
	c := newCodec(t, cl)
	ctx := context.Background()
	e := newEnvelope()
	state, audit, st := e.State, e.Pending, *e.State.Status
	for _, v := range []any{
		&schemas.EnvelopeEvent{EventID: "e", Provider: "docusign", EnvelopeID: "env-1", Source: schemas.SourceWebhook, Kind: schemas.EventKindResent, RequestHash: ptr("9f86d081"),
			Recipients: []schemas.RecipientUpdate{{RecipientID: "3", Status: schemas.RecipientSent, Replaces: ptr("1")}},
			OccurredAt: when, ReceivedAt: when, Metadata: map[string]string{}},
		&schemas.EnvelopeStatusChanged{EnvelopeID: "env-1", Version: 3, PreviousStatus: &st, Status: st, EventID: "e", ChangedAt: when,
			State: state, Audit: audit, Kind: schemas.ChangeKindCorrected},
		&schemas.Envelope{State: state, Pending: audit},
	} {
		t.Run(reflect.TypeOf(v).Elem().Name(), func(t *testing.T) {
			b, err := c.Encode(v)
			if err != nil {
				t.Fatal(err)
			}
			got := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if err := c.Decode(ctx, b, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, v) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, v)
			}
			// A v1 consumer reads it through schema resolution.
			var tp string
			switch v.(type) {
			case *schemas.EnvelopeEvent:
				tp = schemas.TopicEvents
			case *schemas.EnvelopeStatusChanged:
				tp = schemas.TopicStatus
			default:
				tp = schemas.TopicEnvelopes
			}
			cur, _ := schemas.Parse(tp)
			resolved, err := avro.NewSchemaCompatibility().Resolve(parse(t, v1Text(t, tp)), cur)
			if err != nil {
				t.Fatalf("a v1 reader cannot resolve the current schema: %v", err)
			}
			old := map[string]any{}
			if err := avro.Unmarshal(resolved, b[5:], &old); err != nil {
				t.Fatalf("a v1 reader cannot read a current record: %v", err)
			}
			// The old fields read as written; a recipient status v1 does
			// not know (REPLACED, AUTH_FAILED, BOUNCED) reads as the
			// enum's default.
			holder, want := old, []any{"SENT"} // the event's recipient update
			if st, ok := old["state"].(map[string]any); ok {
				holder, want = st, []any{"CREATED", "CREATED", "CREATED"}
			}
			if holder["envelope_id"] != "env-1" {
				t.Fatalf("v1 reader: envelope_id %v, want env-1: %v", holder["envelope_id"], old)
			}
			rcps, _ := holder["recipients"].([]any)
			statuses := []any{}
			for _, r := range rcps {
				m, _ := r.(map[string]any)
				statuses = append(statuses, m["status"])
			}
			if !reflect.DeepEqual(statuses, want) {
				t.Fatalf("v1 reader: recipient statuses %v, want %v: %v", statuses, want, old)
			}
		})
	}
}

// The kinds encode as their symbols in JSON too, and refuse unknown ones.
func TestKindsAsText(t *testing.T) {
	b, err := json.Marshal(struct {
		E schemas.EventKind
		C schemas.ChangeKind
	}{schemas.EventKindResent, schemas.ChangeKindRecipient})
	if err != nil || string(b) != `{"E":"RESENT","C":"RECIPIENT"}` {
		t.Fatalf("json: %s %v", b, err)
	}
	var k schemas.ChangeKind
	if err := k.UnmarshalText([]byte("CORRECTED")); err != nil || k != schemas.ChangeKindCorrected {
		t.Fatalf("unmarshal: %v %v", k, err)
	}
	if err := k.UnmarshalText([]byte("NOPE")); err == nil {
		t.Fatal("unknown symbol accepted")
	}
	if _, err := schemas.EventKind(9).MarshalText(); err == nil {
		t.Fatal("unknown kind encoded")
	}
}

// newEnvelope is an envelope with every field added since v1 set.
func newEnvelope() *schemas.Envelope {
	authFailed, replaced := schemas.RecipientAuthFailed, schemas.RecipientReplaced
	st := schemas.StatusSent
	corrected := schemas.EventKindCorrected
	return &schemas.Envelope{
		State: schemas.EnvelopeState{EnvelopeID: "env-1", Provider: "docusign", Status: &st, StatusAt: when, Version: 3, Foreign: true,
			Recipients: []schemas.RecipientState{
				{RecipientID: "1", Status: replaced, StatusAt: when, ReplacedBy: ptr("3")},
				{RecipientID: "2", Status: authFailed, StatusAt: when},
				{RecipientID: "3", Status: schemas.RecipientBounced, StatusAt: when, Replaces: ptr("1")},
			},
			UpdatedAt: when, AuditSeq: 3, AuditHead: "ff", RequestHash: ptr("9f86d081")},
		Pending: []schemas.AuditEntry{{Seq: 3, EnvelopeID: "env-1", EventID: "e", Source: schemas.SourceWebhook, Type: "recipient-reassign",
			Outcome: schemas.OutcomeApplied, RecipientID: ptr("3"), RecipientStatus: &replaced, Replaces: ptr("1"), Kind: &corrected,
			OccurredAt: when, RecordedAt: when, PrevHash: "aa", Hash: "ff"}},
	}
}
