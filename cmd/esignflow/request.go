package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/ingress"
	"github.com/esignflow/esignflow/provider/registry"
	"github.com/esignflow/esignflow/schemas"
)

// kafkaClient returns a client for the connection flags plus opts.
func (c *conn) kafkaClient(opts ...kgo.Opt) (*kgo.Client, error) {
	base, err := c.clientOpts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return cl, nil
}

func runRequest(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "send" {
		return fmt.Errorf("%w: the only request subcommand is 'request send'", errUsage)
	}
	fs := newFlagSet("request send", e, "Publish signing requests (Avro, through the registry) to esignflow.requests.v1 and print each request id.\nInput: --file (a JSON request, a JSON array of them, or JSON lines; - for stdin) or --demo N.")
	c := connFlags(fs, false).producing(fs)
	file := fs.String("file", "", "JSON `file` of requests (- for stdin)")
	demo := fs.Int("demo", 0, "send `N` generated sample requests")
	provider := fs.String("provider", "", "`provider` of the --demo requests ("+strings.Join(registry.Names(), ", ")+"; default none: the processor's default provider)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	var reqs []schemas.SigningRequest
	switch {
	case *demo > 0 && *file != "":
		return fmt.Errorf("%w: use either --file or --demo", errUsage)
	case *demo > 0:
		reqs = demoRequests(*demo, *provider)
	case *file != "":
		var in io.Reader = e.stdin
		if *file != "-" {
			f, err := os.Open(*file)
			if err != nil {
				return fmt.Errorf("--file: %w", err)
			}
			defer f.Close()
			in = f
		}
		var err error
		if reqs, err = readRequests(in); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: give --file or --demo", errUsage)
	}
	codec, err := c.codec(ctx)
	if err != nil {
		return err
	}
	cl, err := c.kafkaClient(kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return err
	}
	defer cl.Close()
	return sendRequests(ctx, e, cl, codec, reqs)
}

// sendRequests publishes reqs and prints each request id once acknowledged.
func sendRequests(ctx context.Context, e *env, cl *kgo.Client, codec *schemas.Codec, reqs []schemas.SigningRequest) error {
	recs := make([]*kgo.Record, len(reqs))
	for i := range reqs {
		val, err := codec.Encode(&reqs[i])
		if err != nil {
			return err
		}
		recs[i] = &kgo.Record{Topic: codec.Topics().Requests, Key: []byte(reqs[i].RequestID), Value: val}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	for _, r := range reqs {
		fmt.Fprintln(e.stdout, r.RequestID)
	}
	return nil
}

// readRequests reads one request, an array, or JSON lines, validating each
// as the ingress would. A request without request_id gets one derived from
// its content (contentRequestID), so that sending the same file again
// names the same requests, which the processor creates once.
func readRequests(in io.Reader) ([]schemas.SigningRequest, error) {
	raw, err := io.ReadAll(in)
	if err != nil {
		return nil, err
	}
	raw = bytes.TrimSpace(raw)
	var items []json.RawMessage
	switch {
	case len(raw) == 0:
		return nil, fmt.Errorf("%w: no request in the input", errUsage)
	case raw[0] == '[':
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("input: %w", err)
		}
	default:
		dec := json.NewDecoder(bytes.NewReader(raw))
		for dec.More() {
			var m json.RawMessage
			if err := dec.Decode(&m); err != nil {
				return nil, fmt.Errorf("input: %w", err)
			}
			items = append(items, m)
		}
	}
	out := make([]schemas.SigningRequest, 0, len(items))
	for i, item := range items {
		id, err := contentRequestID(item)
		if err != nil {
			return nil, fmt.Errorf("request %d: %w", i+1, err)
		}
		req, fields := ingress.DecodeRequest(item, id, time.Now())
		if len(fields) > 0 {
			var msgs []string
			for _, f := range fields {
				msgs = append(msgs, strings.TrimSpace(f.Field+" "+f.Message))
			}
			return nil, fmt.Errorf("request %d is invalid: %s", i+1, strings.Join(msgs, "; "))
		}
		out = append(out, req)
	}
	return out, nil
}

// contentRequestID is "req-" and 32 hex digits of the SHA-256 of the
// request's canonical JSON: the same request, however laid out, gets the
// same id.
func contentRequestID(item []byte) (string, error) {
	canon, err := ingress.Canonical(item)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canon)
	return "req-" + hex.EncodeToString(sum[:16]), nil
}

func newRequestID() string {
	return fmt.Sprintf("req-%d-%06d", time.Now().UnixMilli(), rand.IntN(1_000_000))
}

// demoPDF is a small document carried inline, which every provider takes
// (DocuSign takes documents only inline or from an http(s) or file URI).
func demoPDF(id, name string) []byte {
	return []byte("%PDF-1.4\n% esignflow demo document " + name + " for " + id + "\n%%EOF\n")
}

// demoRequests makes n plausible requests: an NDA or an offer letter
// (inline), one to three signers, some with ID verification. An empty
// provider leaves the choice to the processor (its default provider).
func demoRequests(n int, provider string) []schemas.SigningRequest {
	names := []string{"Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Edsger Dijkstra", "Barbara Liskov"}
	docs := []string{"nda.pdf", "offer-letter.pdf", "msa.pdf", "consent-form.pdf"}
	out := make([]schemas.SigningRequest, n)
	for i := range out {
		id := newRequestID()
		doc := docs[rand.IntN(len(docs))]
		content := demoPDF(id, doc)
		sum := sha256.Sum256(content)
		hash := hex.EncodeToString(sum[:])
		r := schemas.SigningRequest{RequestID: id, Tenant: "demo", Provider: provider, Subject: "Please sign " + doc,
			Documents: []schemas.Document{{Name: doc, ContentType: "application/pdf", Content: content, SHA256: &hash}},
			Metadata:  map[string]string{"source": "esignflow request send --demo"}, RequestedAt: time.Now()}
		for j := range 1 + rand.IntN(3) {
			name := names[rand.IntN(len(names))]
			rcp := schemas.Recipient{ID: fmt.Sprintf("r%d", j+1), Name: name,
				Email: strings.ToLower(strings.ReplaceAll(name, " ", ".")) + "@example.com", Role: "signer", RoutingOrder: int32(1 + j/2), Auth: schemas.AuthEmail}
			// One signer in three proves who they are with an SMS code,
			// which every provider with an API in esignflow offers (ID
			// verification is not offered by all of them).
			if rand.IntN(3) == 0 {
				phone := fmt.Sprintf("+1555010%04d", rand.IntN(10000))
				rcp.Auth, rcp.Phone = schemas.AuthSMS, &phone
			}
			r.Recipients = append(r.Recipients, rcp)
		}
		out[i] = r
	}
	return out
}
