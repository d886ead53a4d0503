package ingress

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/internal/store"
	"github.com/esignflow/esignflow/schemas"
)

// idemRecord is what an Idempotency-Key holds in Redis.
type idemRecord struct {
	Hash string `json:"h"`
	// Nonce makes each in-flight claim unique, so that releasing or
	// completing a claim touches only that claim (see ifClaim).
	Nonce  string          `json:"n,omitempty"`
	Done   bool            `json:"d"`
	Code   int             `json:"c,omitempty"`
	Answer json.RawMessage `json:"b,omitempty"`
}

// acceptedRecord is what the ingress keeps of a request it published, so
// that GET can answer "accepted" before the processor has created the
// envelope, and so that one tenant cannot take another's request_id.
type acceptedRecord struct {
	Tenant     string    `json:"t"`
	AcceptedAt time.Time `json:"a"`
}

// inFlightTTL bounds how long a key stays "in flight" if this process dies
// mid-request; the client may retry after it.
const inFlightTTL = time.Minute

// Endpoint labels of the signing-request API in metrics.
const (
	epRequests      = "signing-requests"
	epRequestStatus = "signing-request-status"
)

// scope is how a tenant appears in Redis keys and default request ids:
// query-escaped, so that no tenant and key pair can spell another's.
func scope(tenant string) string { return url.QueryEscape(tenant) }

func (in *Ingress) idemKey(tenant, key string) string {
	return in.cfg.KeyPrefix + "idem:" + scope(tenant) + ":" + key
}

func (in *Ingress) acceptedKey(requestID string) string {
	return in.cfg.KeyPrefix + "ingress-request:" + requestID
}

// signingRequest takes a signing request over HTTP and publishes it to
// esignflow.requests.v1, with the semantics of the IETF Idempotency-Key
// draft: missing key 400; same key and a different body 422; same key while
// the first is in flight 409; same key and body after completion, the first
// answer again. Bodies are compared as canonical JSON, so layout and key
// order do not make a body different. Keys belong to the tenant: two
// tenants' same key are two requests. request_id defaults to
// TENANT:KEY. Field errors, an unknown provider among them, are 400 with a
// problem+json "errors" list and are not remembered (as Stripe does), so a
// corrected body may reuse the key. A tenant other than the token's is 403.
func (in *Ingress) signingRequest(w http.ResponseWriter, r *http.Request, tenant string) {
	const ep = epRequests
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
	canon, err := Canonical(body)
	if err != nil {
		in.problem(w, r, ep, http.StatusBadRequest, "the signing request is invalid", fieldErrors(body, reflect.TypeFor[schemas.SigningRequest]()))
		return
	}
	var named struct {
		Tenant any `json:"tenant"`
	}
	_ = json.Unmarshal(canon, &named)
	bodyTenant, _ := named.Tenant.(string)
	switch {
	case tenant != "" && bodyTenant != "" && bodyTenant != tenant:
		in.problem(w, r, ep, http.StatusForbidden, fmt.Sprintf("this token acts for tenant %q only", tenant), nil)
		return
	case tenant == "": // InsecureNoAuth: the body says
		tenant = bodyTenant
	}
	sum := sha256.Sum256(canon)
	hash := hex.EncodeToString(sum[:])
	rkey := in.idemKey(tenant, key)
	ctx := r.Context()

	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	claim, _ := json.Marshal(idemRecord{Hash: hash, Nonce: hex.EncodeToString(nonce)})
	won, err := in.cfg.Redis.SetNX(ctx, rkey, claim, inFlightTTL).Result()
	if err != nil {
		in.unavailable(w, r, ep, fmt.Errorf("redis: %w", err))
		return
	}
	if !won {
		in.replay(w, r, rkey, hash)
		return
	}
	release := func() { _, _ = releaseClaim(context.WithoutCancel(ctx), in.cfg.Redis, rkey, claim) }

	req, fields := decodeRequest(body, scope(tenant)+":"+key, tenant, in.cfg.Providers[0], in.cfg.Now())
	if req.Provider != "" && !slices.Contains(in.cfg.Providers, req.Provider) {
		fields = append(fields, FieldError{"provider", fmt.Sprintf("%q is not an enabled provider (enabled: %s)", req.Provider, strings.Join(in.cfg.Providers, ", "))})
	}
	if len(fields) > 0 {
		release()
		in.problem(w, r, ep, http.StatusBadRequest, "the signing request is invalid", fields)
		return
	}
	ok, accepted, err := in.claimRequestID(ctx, req.RequestID, tenant)
	if err != nil {
		release()
		in.unavailable(w, r, ep, fmt.Errorf("redis: %w", err))
		return
	}
	if !ok {
		release()
		in.problem(w, r, ep, http.StatusConflict, fmt.Sprintf("request_id %q is already in use", req.RequestID),
			[]FieldError{{"request_id", "is already in use"}})
		return
	}
	// Not published after all: withdraw the accepted record this request
	// wrote too, or GET would answer "accepted" for a day.
	unaccept := func() {
		release()
		if accepted != nil {
			_, _ = releaseClaim(context.WithoutCancel(ctx), in.cfg.Redis, in.acceptedKey(req.RequestID), accepted)
		}
	}
	val, err := in.cfg.Codec.Encode(&req)
	if err != nil {
		unaccept()
		in.problem(w, r, ep, http.StatusInternalServerError, "encode request", nil)
		return
	}
	if err := in.publish(ctx, &kgo.Record{Topic: in.cfg.Codec.Topics().Requests, Key: []byte(req.RequestID), Value: val}); err != nil {
		unaccept()
		in.unavailable(w, r, ep, err)
		return
	}
	answer, _ := json.Marshal(map[string]string{"request_id": req.RequestID, "status": "accepted",
		"status_url": "/v1/signing-requests/" + url.PathEscape(req.RequestID)})
	done, _ := json.Marshal(idemRecord{Hash: hash, Done: true, Code: http.StatusAccepted, Answer: answer})
	if ok, err := completeClaim(context.WithoutCancel(ctx), in.cfg.Redis, rkey, claim, done, in.cfg.IdempotencyTTL); err != nil || !ok {
		// Published: the answer stands. A retry within inFlightTTL gets
		// 409, after it the request is published again and the
		// processor drops it as a duplicate request id. !ok: this
		// handler outlived its claim and a later one holds the key.
		in.log.Warn("idempotency record not saved", "key", key, "err", err, "claim_lost", !ok)
	}
	in.m.requests.WithLabelValues(ep, "202").Inc()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/v1/signing-requests/"+url.PathEscape(req.RequestID))
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(answer)
}

// claimRequestID records that tenant's request requestID was accepted; ok
// is false when another tenant holds it. The same tenant may send a request
// id again (under another Idempotency-Key): the processor creates one
// envelope. rec is the record written when this call wrote it (nil when it
// was there already), for releaseClaim should the publish fail. One round
// trip: read and write in one script, so no record can expire in between.
func (in *Ingress) claimRequestID(ctx context.Context, requestID, tenant string) (ok bool, rec []byte, err error) {
	rec, _ = json.Marshal(acceptedRecord{Tenant: tenant, AcceptedAt: in.cfg.Now().UTC()})
	k := in.acceptedKey(requestID)
	raw, err := setIfAbsent.Run(ctx, in.cfg.Redis, []string{k}, rec, in.cfg.IdempotencyTTL.Milliseconds()).Text()
	if errors.Is(err, redis.Nil) {
		return true, rec, nil // written
	}
	if err != nil {
		return false, nil, err
	}
	var prev acceptedRecord
	if err := json.Unmarshal([]byte(raw), &prev); err != nil {
		return false, nil, fmt.Errorf("accepted record %s: %w", k, err)
	}
	return prev.Tenant == tenant, nil, nil
}

// setIfAbsent returns the key's value, or sets it (with a TTL in ms) and
// returns nil when it has none.
var setIfAbsent = redis.NewScript(`
local prev = redis.call("GET", KEYS[1])
if prev then return prev end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return false`)

// RequestStatus is the answer of GET /v1/signing-requests/{request_id}.
type RequestStatus struct {
	RequestID string `json:"request_id"`
	Tenant    string `json:"tenant,omitempty"`
	// State is "accepted" (published, no envelope yet), "created" (the
	// envelope exists: EnvelopeID) or "failed" (the provider refused it:
	// Reason).
	State      string `json:"state"`
	EnvelopeID string `json:"envelope_id,omitempty"`
	Provider   string `json:"provider,omitempty"`
	// Status and Version are the envelope's current status and version.
	Status     *schemas.Status `json:"status,omitempty"`
	Version    int64           `json:"version,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	AcceptedAt *time.Time      `json:"accepted_at,omitempty"`
	UpdatedAt  *time.Time      `json:"updated_at,omitempty"`
}

// requestStatus answers a request's state from the processor's store (the
// request → envelope index and the envelope), or, before the processor has
// created anything, from the ingress's own record that it accepted it. A
// request of another tenant is answered 404, as one that does not exist:
// a token learns nothing of other tenants' request ids.
func (in *Ingress) requestStatus(w http.ResponseWriter, r *http.Request, tenant string) {
	const ep = epRequestStatus
	ctx := r.Context()
	rid := r.PathValue("request_id")
	st := RequestStatus{RequestID: rid}
	owner, found := "", false
	key := store.RequestKey{Tenant: tenant, ID: rid}
	entries, err := in.store.Requests(ctx, []store.RequestKey{key})
	if err != nil {
		in.unavailable(w, r, ep, err)
		return
	}
	if e, ok := entries[key]; ok && e.EnvelopeID != "" {
		envID := e.EnvelopeID
		env, ok, err := in.store.Envelope(ctx, e.Partition, envID)
		if err != nil {
			in.unavailable(w, r, ep, err)
			return
		}
		if ok {
			s := env.State
			found, st.State, st.EnvelopeID, st.Provider, st.Status, st.Version = true, "created", envID, s.Provider, s.Status, s.Version
			if s.Tenant != nil {
				owner = *s.Tenant
			}
			if s.Reason != nil {
				st.Reason = *s.Reason
			}
			if !s.UpdatedAt.IsZero() {
				at := s.UpdatedAt.UTC()
				st.UpdatedAt = &at
			}
			if envID == store.FailedEnvelopeID(key.Scoped()) { // the processor's envelope for a refused request
				st.State, st.EnvelopeID = "failed", ""
			}
		}
	}
	raw, err := in.cfg.Redis.Get(ctx, in.acceptedKey(rid)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		in.unavailable(w, r, ep, fmt.Errorf("redis: %w", err))
		return
	default:
		var rec acceptedRecord
		if json.Unmarshal(raw, &rec) == nil {
			at := rec.AcceptedAt
			st.AcceptedAt = &at
			if !found {
				found, st.State, owner = true, "accepted", rec.Tenant
			}
		}
	}
	if !found || (tenant != "" && owner != tenant) {
		in.problem(w, r, ep, http.StatusNotFound, fmt.Sprintf("no signing request %q", rid), nil)
		return
	}
	st.Tenant = owner
	in.m.requests.WithLabelValues(ep, "200").Inc()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}

// replay answers a key seen before.
func (in *Ingress) replay(w http.ResponseWriter, r *http.Request, rkey, hash string) {
	const ep = epRequests
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
// defaults (request_id from key, auth EMAIL, routing order 1, requested_at
// now), and returns every field error at once. A request that names no
// provider keeps none: the processor creates it with its default
// provider. The CLI uses it too, so a request is judged the same way
// whichever way it comes in.
func DecodeRequest(body []byte, key string, now time.Time) (schemas.SigningRequest, []FieldError) {
	return decodeRequest(body, key, "", "", now)
}

// decodeRequest is DecodeRequest with the tenant of the caller's token (an
// empty body tenant becomes it) and the provider of a request that names
// none.
func decodeRequest(body []byte, key, tenant, defaultProvider string, now time.Time) (schemas.SigningRequest, []FieldError) {
	var req schemas.SigningRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fieldErrors(body, reflect.TypeFor[schemas.SigningRequest]())
	}
	var fe []FieldError
	add := func(field, msg string, a ...any) { fe = append(fe, FieldError{field, fmt.Sprintf(msg, a...)}) }
	if req.RequestID == "" {
		req.RequestID = key
	}
	if req.Tenant == "" {
		req.Tenant = tenant
	}
	if req.Provider == "" {
		req.Provider = defaultProvider
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

// ifClaim runs a command on a key only while it still holds the claim this
// handler wrote: a handler slower than inFlightTTL has lost its claim to a
// later request with the same key, and must neither delete nor overwrite
// that one's record.
var ifClaim = redis.NewScript(`
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == "" then redis.call("DEL", KEYS[1]) else redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3]) end
return 1`)

// releaseClaim deletes key if it still holds claim; false when it did not.
func releaseClaim(ctx context.Context, rdb redis.Scripter, key string, claim []byte) (bool, error) {
	n, err := ifClaim.Run(ctx, rdb, []string{key}, claim, "", 0).Int()
	return n == 1, err
}

// completeClaim replaces claim by the final record if key still holds it;
// false when it did not.
func completeClaim(ctx context.Context, rdb redis.Scripter, key string, claim, final []byte, ttl time.Duration) (bool, error) {
	n, err := ifClaim.Run(ctx, rdb, []string{key}, claim, final, ttl.Milliseconds()).Int()
	return n == 1, err
}
