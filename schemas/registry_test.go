package schemas_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/esignflow/esignflow/internal/fakes"
	"github.com/esignflow/esignflow/schemas"
)

func fakeRegistry(t *testing.T, opts ...srfake.Option) (*srfake.Registry, *sr.Client) {
	t.Helper()
	reg := srfake.New(opts...)
	t.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return reg, cl
}

// A read-only command's codec changes nothing in the registry: no
// registration, no compatibility level. It decodes what producers wrote and
// refuses to encode what nobody registered.
func TestLookupOnlyWritesNothing(t *testing.T) {
	reg, cl := fakeRegistry(t)
	var w fakes.RegistryWrites
	reg.Intercept(w.Intercept)
	ctx := context.Background()

	ro, err := schemas.NewCodec(ctx, cl, schemas.LookupOnly())
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Take(); len(got) != 0 {
		t.Fatalf("a lookup-only codec wrote to the registry: %v", got)
	}
	if subs, err := cl.Subjects(ctx); err != nil || len(subs) != 0 {
		t.Fatalf("subjects after a lookup-only start: %v (%v)", subs, err)
	}
	if _, err := ro.Encode(samples()[2]); !errors.Is(err, schemas.ErrNotRegistered) {
		t.Fatalf("encode with nothing registered: %v, want ErrNotRegistered", err)
	}

	// A producer registers; the read-only codec started afterwards finds
	// the same ids and reads the producer's records.
	rw := newCodec(t, cl)
	ro, err = schemas.NewCodec(ctx, cl, schemas.LookupOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range schemas.Topics() {
		a, _ := rw.ID(tp)
		b, err := ro.ID(tp)
		if err != nil || a != b {
			t.Errorf("%s: lookup-only id %d (%v), registered id %d", tp, b, err, a)
		}
	}
	b, err := rw.Encode(samples()[2])
	if err != nil {
		t.Fatal(err)
	}
	var ch schemas.EnvelopeStatusChanged
	if err := ro.Decode(ctx, b, &ch); err != nil || ch.EnvelopeID != "env-1" {
		t.Fatalf("decode: %+v, %v", ch, err)
	}
}

// Registering on a registry with the default (BACKWARD) global level needs
// no write to its configuration, and a level an operator set on a subject
// stays as it is.
func TestRegisterKeepsOperatorLevels(t *testing.T) {
	reg, cl := fakeRegistry(t)
	status := schemas.Subject(schemas.TopicStatus)
	if err := reg.SetCompat(status, sr.CompatFull); err != nil {
		t.Fatal(err)
	}
	var w fakes.RegistryWrites
	reg.Intercept(w.Intercept)
	newCodec(t, cl)
	for _, call := range w.Take() {
		if strings.HasPrefix(call, "PUT /config") {
			t.Errorf("registering changed a compatibility level: %s", call)
		}
	}
	for _, tp := range schemas.Topics() {
		want := sr.CompatBackward
		if tp == schemas.TopicStatus {
			want = sr.CompatFull
		}
		res := cl.Compatibility(context.Background(), schemas.Subject(tp))
		if res[0].Err != nil || res[0].Level != want {
			t.Errorf("%s: level %v (%v), want %v", tp, res[0].Level, res[0].Err, want)
		}
	}
}

// On a registry whose global level lets a new schema break older readers,
// esignflow's subjects are pinned to BACKWARD; the global level is left.
// A subject without a level of its own answers 404, as Confluent's does.
func TestRegisterPinsBackwardWhereUnset(t *testing.T) {
	reg, cl := fakeRegistry(t, srfake.WithGlobalCompat(sr.CompatNone))
	var mu sync.Mutex
	own := map[string]bool{} // subjects given a level of their own
	reg.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		subject, ok := strings.CutPrefix(r.URL.Path, "/config/")
		if !ok {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodPut:
			own[subject] = true
		case r.Method == http.MethodGet && !own[subject] && r.URL.Query().Get("defaultToGlobal") != "true":
			w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error_code":40408,"message":"Subject '` + subject + `' does not have subject-level compatibility configured"}`))
			return true
		}
		return false
	})
	newCodec(t, cl)
	ctx := context.Background()
	for _, tp := range schemas.Topics() {
		res := cl.Compatibility(ctx, schemas.Subject(tp))
		if res[0].Err != nil || res[0].Level != sr.CompatBackward {
			t.Errorf("%s: level %v (%v), want BACKWARD", tp, res[0].Level, res[0].Err)
		}
	}
	if g := cl.Compatibility(ctx); g[0].Level != sr.CompatNone {
		t.Errorf("global level %v, want NONE left alone", g[0].Level)
	}
}

// A client that takes esignflow's schemas from its .avsc files finds the
// registered versions: the registry holds the files as written, with their
// doc fields and defaults, not their canonical form.
func TestShippedSchemaFindsRegisteredVersion(t *testing.T) {
	_, cl := fakeRegistry(t)
	c := newCodec(t, cl)
	ctx := context.Background()
	for _, tp := range schemas.Topics() {
		text, err := schemas.Text(tp)
		if err != nil {
			t.Fatal(err)
		}
		ss, err := cl.LookupSchema(ctx, schemas.Subject(tp), sr.Schema{Schema: text, Type: sr.TypeAvro})
		if err != nil {
			t.Errorf("%s: looking up the shipped .avsc: %v", tp, err)
			continue
		}
		if id, _ := c.ID(tp); ss.ID != id {
			t.Errorf("%s: lookup found id %d, the codec encodes with %d", tp, ss.ID, id)
		}
		if !strings.Contains(ss.Schema.Schema, `"doc"`) || !strings.Contains(ss.Schema.Schema, `"default"`) {
			t.Errorf("%s: the registered schema lost its doc fields or defaults:\n%s", tp, ss.Schema.Schema)
		}
	}
}
