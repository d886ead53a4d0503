package dropboxsignfake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/esignflow/esignflow/provider/dropboxsign/dropboxsignfake"
	"github.com/esignflow/esignflow/provider/sim"
)

// A simulator speaking Dropbox Sign, for a test: the dialect with an API
// key, the simulator on a free port. A Dropbox Sign client takes its base
// URL from s.URL()+"/v3" and the API key; callbacks go to the simulator's
// WebhookURL, hashed with the same key.
func Example() {
	d, err := dropboxsignfake.New(dropboxsignfake.Config{APIKey: "my-api-key"})
	if err != nil {
		panic(err)
	}
	s, err := sim.New(sim.Config{Addr: "127.0.0.1:0", Dialect: d, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-s.Ready()

	body := `{"title":"NDA","file_urls":["https://example.com/nda.pdf"],"signers":[{"name":"Jack","email_address":"jack@example.com"}],"metadata":{"esignflow_request_id":"order-1042"}}`
	req, _ := http.NewRequest("POST", s.URL()+"/v3/signature_request/send", strings.NewReader(body))
	req.SetBasicAuth("my-api-key", "")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "order-1042")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	var out struct {
		SignatureRequest struct {
			ID         string            `json:"signature_request_id"`
			Metadata   map[string]string `json:"metadata"`
			Signatures []struct {
				StatusCode string `json:"status_code"`
			} `json:"signatures"`
		} `json:"signature_request"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	sr := out.SignatureRequest
	fmt.Println(resp.StatusCode, len(sr.ID), sr.Metadata["esignflow_request_id"], sr.Signatures[0].StatusCode)
	fmt.Println(resp.Header.Get("X-RateLimit-Limit"), resp.Header.Get("X-RateLimit-Remaining"))
	// Output:
	// 200 40 order-1042 awaiting_signature
	// 25 24
}
