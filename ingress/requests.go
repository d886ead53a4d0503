package ingress

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/schemas"
)

// idemRecord is what an Idempotency-Key holds in Redis.
type idemRecord struct {
	Hash   string          `json:"h"`
	Done   bool            `json:"d"`
	Code   int             `json:"c,omitempty"`
	Answer json.RawMessage `json:"b,omitempty"`
}

// inFlightTTL bounds how long a key stays "in flight" if this process dies
// mid-request; the client may retry after it.
const inFlightTTL = time.Minute

// signingRequest takes a signing request over HTTP and publishes it to
// esignflow.requests.v1, with the semantics of the IETF Idempotency-Key
// draft: missing key 400; same key and a different body 422; same key while
// the first is in flight 409; same key and body after completion, the first
// answer again. request_id defaults to the key. Field errors are 400 with a
// problem+json "errors" list and are not remembered (as Stripe does), so a
// corrected body may reuse the key.
func (in *Ingress) signingRequest(w http.ResponseWriter, r *http.Request) {
	const ep = "signing-requests"
	key := r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > 255 {
		in.problem(w, r, ep, http.StatusBadRequest, "an Idempotency-Key header (1 to 255 characters) is required", nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, in.cfg.MaxBody))
	if err != nil {
		in.problem(w, r, ep, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", in.cfg.MaxBody), nil)
		return
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	rkey := in.cfg.KeyPrefix + "idem:" + key
	ctx := r.Context()

	claim, _ := json.Marshal(idemRecord{Hash: hash})
	won, err := in.cfg.Redis.SetNX(ctx, rkey, claim, inFlightTTL).Result()
	if err != nil {
		in.unavailable(w, r, ep, fmt.Errorf("redis: %w", err))
		return
	}
	if !won {
		in.replay(w, r, rkey, hash)
		return
	}
	release := func() { in.cfg.Redis.Del(context.WithoutCancel(ctx), rkey) }

	req, fields := DecodeRequest(body, key, in.cfg.Now())
	if len(fields) > 0 {
		release()
		in.problem(w, r, ep, http.StatusBadRequest, "the signing request is invalid", fields)
		return
	}
	val, err := in.cfg.Codec.Encode(&req)
	if err != nil {
		release()
		in.problem(w, r, ep, http.StatusInternalServerError, "encode request", nil)
		return
	}
	if err := in.publish(ctx, &kgo.Record{Topic: in.cfg.Codec.Topics().Requests, Key: []byte(req.RequestID), Value: val}); err != nil {
		release()
		in.unavailable(w, r, ep, err)
		return
	}
	answer, _ := json.Marshal(map[string]string{"request_id": req.RequestID, "status": "accepted"})
	done, _ := json.Marshal(idemRecord{Hash: hash, Done: true, Code: http.StatusAccepted, Answer: answer})
	if err := in.cfg.Redis.Set(context.WithoutCancel(ctx), rkey, done, in.cfg.IdempotencyTTL).Err(); err != nil {
		// Published: the answer stands. A retry within inFlightTTL gets
		// 409, after it the request is published again and the
		// processor drops it as a duplicate request id.
		in.log.Warn("idempotency record not saved", "key", key, "err", err)
	}
	in.m.requests.WithLabelValues(ep, "202").Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(answer)
}

// replay answers a key seen before.
func (in *Ingress) replay(w http.ResponseWriter, r *http.Request, rkey, hash string) {
	const ep = "signing-requests"
	raw, err := in.cfg.Redis.Get(r.Context(), rkey).Bytes()
	if errors.Is(err, redis.Nil) { // expired between SETNX and GET: ask for a retry
		w.Header().Set("Retry-After", "1")
		in.problem(w, r, ep, http.StatusConflict, "the first request with this Idempotency-Key just ended; retry", nil)
		return
	}
	if err != nil {
		in.unavailable(w, r, ep, fmt.Errorf("redis: %w", err))
		return
	}
	var rec idemRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		in.problem(w, r, ep, http.StatusInternalServerError, "unreadable idempotency record", nil)
		return
	}
	switch {
	case rec.Hash != hash:
		in.problem(w, r, ep, http.StatusUnprocessableEntity, "Idempotency-Key was used with a different body", nil)
	case !rec.Done:
		w.Header().Set("Retry-After", "1")
		in.problem(w, r, ep, http.StatusConflict, "a request with this Idempotency-Key is in flight", nil)
	default:
		in.m.requests.WithLabelValues(ep, fmt.Sprint(rec.Code)).Inc()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Idempotent-Replayed", "true")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Answer)
	}
}

// DecodeRequest parses and validates a signing request's JSON, filling the
// defaults (request_id from key, provider sim, auth EMAIL, routing order 1,
// requested_at now), and returns every field error at once. The CLI uses it
// too, so a request is judged the same way whichever way it comes in.
func DecodeRequest(body []byte, key string, now time.Time) (schemas.SigningRequest, []FieldError) {
	var req schemas.SigningRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, []FieldError{{Field: "", Message: "body is not a signing request: " + err.Error()}}
	}
	var fe []FieldError
	add := func(field, msg string, a ...any) { fe = append(fe, FieldError{field, fmt.Sprintf(msg, a...)}) }
	if req.RequestID == "" {
		req.RequestID = key
	}
	if req.Provider == "" {
		req.Provider = "sim"
	}
	if req.Tenant == "" {
		add("tenant", "is required")
	}
	if len(req.Documents) == 0 {
		add("documents", "at least one document is required")
	}
	for i, d := range req.Documents {
		f := fmt.Sprintf("documents[%d]", i)
		if d.Name == "" {
			add(f+".name", "is required")
		}
		if (d.URI == nil) == (len(d.Content) == 0) {
			add(f, "exactly one of uri and content is required")
		}
		if d.SHA256 != nil {
			if b, err := hex.DecodeString(*d.SHA256); err != nil || len(b) != 32 {
				add(f+".sha256", "must be 64 hex digits")
			}
		}
		if d.ContentType == "" {
			req.Documents[i].ContentType = "application/pdf"
		}
	}
	if len(req.Recipients) == 0 {
		add("recipients", "at least one recipient is required")
	}
	ids := map[string]bool{}
	for i, rc := range req.Recipients {
		f := fmt.Sprintf("recipients[%d]", i)
		if rc.ID == "" {
			add(f+".id", "is required")
		} else if ids[rc.ID] {
			add(f+".id", "%q is repeated", rc.ID)
		}
		ids[rc.ID] = true
		if rc.Name == "" {
			add(f+".name", "is required")
		}
		if _, err := mail.ParseAddress(rc.Email); err != nil {
			add(f+".email", "%q is not an e-mail address", rc.Email)
		}
		switch rc.Auth {
		case "":
			req.Recipients[i].Auth = schemas.AuthEmail
		case schemas.AuthEmail, schemas.AuthIDVerification:
		case schemas.AuthSMS:
			if rc.Phone == nil || *rc.Phone == "" {
				add(f+".phone", "is required for SMS authentication")
			}
		default:
			add(f+".auth", "must be EMAIL, SMS or ID_VERIFICATION")
		}
		if rc.RoutingOrder < 0 {
			add(f+".routing_order", "must be positive")
		} else if rc.RoutingOrder == 0 {
			req.Recipients[i].RoutingOrder = 1
		}
		if rc.Role == "" {
			req.Recipients[i].Role = "signer"
		}
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(now) {
		add("expires_at", "must be in the future")
	}
	if req.Metadata == nil {
		req.Metadata = map[string]string{}
	}
	req.RequestedAt = now
	return req, fe
}
