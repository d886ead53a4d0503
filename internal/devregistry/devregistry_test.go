package devregistry_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/esignflow/esignflow/internal/devregistry"
	"github.com/esignflow/esignflow/schemas"
)

const (
	v1 = `{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}`
	// v2 adds a field with a default: new readers read old data.
	v2 = `{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0}]}`
	// broken adds a field without a default: it cannot read v2's data.
	broken = `{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0},{"name":"c","type":"string"}]}`
)

// serve starts srfake behind Compatible, as the dev stack serves it.
func serve(t *testing.T, opts ...srfake.Option) (*srfake.Registry, *sr.Client) {
	t.Helper()
	reg := srfake.NewRegistry(opts...)
	srv := httptest.NewServer(devregistry.Compatible(reg.Handler()))
	t.Cleanup(srv.Close)
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return reg, cl
}

func register(cl *sr.Client, subject, schema string) (int, error) {
	ss, err := cl.CreateSchema(context.Background(), subject, sr.Schema{Schema: schema, Type: sr.TypeAvro})
	return ss.ID, err
}

// Under BACKWARD (the default) an incompatible schema is refused with
// Confluent's 409 and error body, and nothing is registered; a compatible
// one and a repeat of an older one are accepted.
func TestIncompatibleIs409(t *testing.T) {
	_, cl := serve(t)
	ctx := context.Background()
	if _, err := register(cl, "s-value", v1); err != nil {
		t.Fatal(err)
	}
	if _, err := register(cl, "s-value", v2); err != nil {
		t.Fatalf("compatible v2 refused: %v", err)
	}
	_, err := register(cl, "s-value", broken)
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusConflict || re.ErrorCode != 409 || re.Message == "" {
		t.Fatalf("incompatible schema: %v (%#v), want 409 with error_code 409", err, re)
	}
	if re.SchemaError() != sr.ErrIncompatibleSchema {
		t.Errorf("error code %d is not sr.ErrIncompatibleSchema", re.ErrorCode)
	}
	if vs, err := cl.SubjectVersions(ctx, "s-value"); err != nil || len(vs) != 2 {
		t.Fatalf("versions after the refusal: %v (%v), want [1 2]", vs, err)
	}
	if _, err := register(cl, "s-value", v1); err != nil {
		t.Fatalf("re-registering version 1 (a lookup): %v", err)
	}
	res, err := cl.CheckCompatibility(ctx, "s-value", -1, sr.Schema{Schema: broken})
	if err != nil || res.Is {
		t.Fatalf("compatibility check of the broken schema: %+v (%v), want false", res, err)
	}
	res, err = cl.CheckCompatibility(ctx, "s-value", -1, sr.Schema{Schema: v2})
	if err != nil || !res.Is {
		t.Fatalf("compatibility check of v2: %+v (%v), want true", res, err)
	}
}

// NONE lets anything in; FORWARD checks the other way round.
func TestLevelsDecide(t *testing.T) {
	reg, cl := serve(t)
	if err := reg.SetCompat("none-value", sr.CompatNone); err != nil {
		t.Fatal(err)
	}
	if err := reg.SetCompat("fwd-value", sr.CompatForward); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{v1, broken} {
		if _, err := register(cl, "none-value", s); err != nil {
			t.Fatalf("NONE refused: %v", err)
		}
	}
	if _, err := register(cl, "fwd-value", v2); err != nil {
		t.Fatal(err)
	}
	// v1 lacks b; a v2 reader fills it from its default: forward-compatible.
	if _, err := register(cl, "fwd-value", v1); err != nil {
		t.Fatalf("FORWARD refused a schema v2 can read: %v", err)
	}
}

// esignflow's own schemas register through the wrapper, and a foreign
// client looking up the shipped .avsc finds them.
func TestEsignflowSchemasRegister(t *testing.T) {
	_, cl := serve(t)
	ctx := context.Background()
	if _, err := schemas.NewCodec(ctx, cl); err != nil {
		t.Fatal(err)
	}
	if _, err := schemas.NewCodec(ctx, cl); err != nil {
		t.Fatalf("second start: %v", err)
	}
	text, err := schemas.Text(schemas.TopicRequests)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.LookupSchema(ctx, schemas.Subject(schemas.TopicRequests), sr.Schema{Schema: text}); err != nil {
		t.Fatalf("lookup of SigningRequest.avsc as shipped: %v", err)
	}
}
