package schemas_test

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/esignflow/esignflow/schemas"
)

// A producer registers the schemas once and encodes records in the
// Confluent wire format; any consumer decodes them with the registry alone.
func ExampleCodec() {
	reg := srfake.New()
	defer reg.Close()
	client, _ := sr.NewClient(sr.URLs(reg.URL()))
	ctx := context.Background()

	codec, err := schemas.NewCodec(ctx, client)
	if err != nil {
		panic(err)
	}
	b, _ := codec.Encode(&schemas.SigningRequest{
		RequestID: "req-1", Tenant: "acme", RequestedAt: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC),
		Recipients: []schemas.Recipient{{ID: "r1", Name: "Ann", Email: "ann@example.com", Auth: schemas.AuthEmail}},
	})
	id, _ := schemas.SchemaID(b)
	var got schemas.SigningRequest
	if err := codec.Decode(ctx, b, &got); err != nil {
		panic(err)
	}
	fmt.Println(b[0], id > 0, got.RequestID, got.Recipients[0].Email)
	// Output: 0 true req-1 ann@example.com
}
