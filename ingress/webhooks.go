package ingress

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

// errUnparsed marks an authentic webhook that could not be normalised; it
// goes to the DLQ with its raw body.
var errUnparsed = errors.New("authentic webhook could not be parsed")

// errIgnored marks an authentic webhook that carries no status.
var errIgnored = errors.New("authentic webhook carries no status")

// webhook verifies, normalises and publishes one provider webhook.
//
// Answers: 401 for a missing or wrong signature or a timestamp outside the
// window (nothing published); 413 for a body over the limit; 404 for an
// unknown provider (one without a scheme in Config.Webhooks); 400 for a
// body whose signature cannot even be read (provider.ErrWebhookMalformed); 503 with Retry-After when the broker does not acknowledge in
// time. An authentic webhook that cannot be parsed is published to the DLQ
// with its raw body and answered 202: the provider must not retry (or
// disable the endpoint) for a payload only an operator can fix, and nothing
// verified is dropped. An authentic webhook that carries no status
// (callback_test, envelope-purge…) is answered 200 and counted.
func (in *Ingress) webhook(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("provider")
	scheme := in.cfg.Webhooks[name]
	if scheme == nil {
		in.problem(w, r, "unknown", http.StatusNotFound, fmt.Sprintf("no webhook endpoint for provider %q", name), nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, in.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			in.problem(w, r, name, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", in.cfg.MaxBody), nil)
			return
		}
		in.problem(w, r, name, http.StatusBadRequest, "could not read the body", nil)
		return
	}
	keys := in.cfg.Secrets.Keys(name)
	var events []schemas.EnvelopeEvent
	var verifyErr, parseErr error
	reply := scheme.Reply()
	if len(keys) == 0 {
		verifyErr = fmt.Errorf("%w %s", errNoSecret, name)
	} else {
		verifyErr = scheme.Verify(keys, r.Header, body, in.cfg.Now(), in.cfg.Tolerance)
	}
	if errors.Is(verifyErr, provider.ErrWebhookMalformed) {
		in.problem(w, r, name, http.StatusBadRequest, verifyErr.Error(), nil)
		return
	}
	if verifyErr == nil {
		events, parseErr = scheme.Parse(r.Header, body)
		switch {
		case errors.Is(parseErr, provider.ErrWebhookIgnored):
			parseErr = errIgnored
		case parseErr != nil:
			parseErr = fmt.Errorf("%w: %w", errUnparsed, parseErr)
		}
	}
	if verifyErr != nil {
		why := reason(verifyErr)
		in.m.verifyFails.WithLabelValues(name, why).Inc()
		level := slog.LevelInfo // forgeries and scanners are routine on a public endpoint
		detail := "signature verification failed"
		switch why {
		case "stale", "future":
			// An authentic sender whose clock is off, or a replay:
			// either way an operator should hear of it.
			level = slog.LevelWarn
		case "no_secret":
			// Not a forgery to shrug off: the operator enabled webhooks
			// for the provider and gave no secret, so nothing it sends
			// can be verified.
			level, detail = slog.LevelWarn, verifyErr.Error()
		}
		in.log.Log(r.Context(), level, "webhook refused", "provider", name, "remote", r.RemoteAddr, "reason", why, "err", verifyErr)
		in.problem(w, r, name, http.StatusUnauthorized, detail, nil)
		return
	}
	switch {
	case errors.Is(parseErr, errIgnored):
		in.m.ignored.WithLabelValues(name).Inc()
		in.ok(w, name, http.StatusOK, reply)
		return
	case parseErr != nil:
		if err := in.deadLetterWebhook(r, name, body, parseErr); err != nil {
			in.unavailable(w, r, name, err)
			return
		}
		in.m.deadLettered.WithLabelValues(name).Inc()
		in.log.Warn("authentic webhook dead-lettered", "provider", name, "err", parseErr)
		in.ok(w, name, http.StatusAccepted, reply)
		return
	}
	sum := sha256.Sum256(body)
	bodyHash := hex.EncodeToString(sum[:])
	ip := in.clientIP(r)
	ua := r.UserAgent()
	now := in.cfg.Now()
	recs := make([]*kgo.Record, 0, len(events))
	for i := range events {
		ev := &events[i]
		ev.ReceivedAt, ev.BodySHA256, ev.SourceIP = now, &bodyHash, &ip
		if ua != "" {
			ev.UserAgent = &ua
		}
		val, err := in.cfg.Codec.Encode(ev)
		if err != nil {
			in.problem(w, r, name, http.StatusInternalServerError, "encode event", nil)
			return
		}
		recs = append(recs, &kgo.Record{Topic: in.cfg.Codec.Topics().Events, Key: []byte(ev.EnvelopeID), Value: val})
	}
	if err := in.publish(r.Context(), recs...); err != nil {
		in.unavailable(w, r, name, err)
		return
	}
	in.ok(w, name, http.StatusOK, reply)
}

func (in *Ingress) ok(w http.ResponseWriter, endpoint string, code int, reply string) {
	in.m.requests.WithLabelValues(endpoint, fmt.Sprint(code)).Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	if reply == "" {
		reply = "accepted"
	}
	_, _ = io.WriteString(w, reply+"\n")
}

// unavailable answers 503 with Retry-After: the broker did not take it.
func (in *Ingress) unavailable(w http.ResponseWriter, r *http.Request, endpoint string, err error) {
	in.log.Warn("publish failed; asking the sender to retry", "endpoint", endpoint, "err", err)
	w.Header().Set("Retry-After", "5")
	in.problem(w, r, endpoint, http.StatusServiceUnavailable, "event store unavailable; retry later", nil)
}

// deadLetterWebhook publishes an authentic but unparseable webhook, raw
// body and headers, to the DLQ. Its coordinates are -1: it never was a
// Kafka record.
func (in *Ingress) deadLetterWebhook(r *http.Request, name string, body []byte, cause error) error {
	dl := schemas.DeadLetter{Topic: in.cfg.Codec.Topics().Events, Partition: -1, Offset: -1, Value: body,
		Error: cause.Error(), Component: "ingress/" + name, FailedAt: in.cfg.Now(), Headers: []schemas.Header{}}
	for k, vs := range r.Header {
		for _, v := range vs {
			dl.Headers = append(dl.Headers, schemas.Header{Key: k, Value: []byte(v)})
		}
	}
	val, err := in.cfg.Codec.Encode(&dl)
	if err != nil {
		return err
	}
	return in.publish(r.Context(), &kgo.Record{Topic: in.cfg.Codec.Topics().DLQ, Value: val})
}

// errNoSecret is the verification failure of a provider with no secret.
var errNoSecret = errors.New("no secret configured for provider")

// reason is a short label for a verification failure: the scheme's
// (provider.VerifyError), or no_secret.
func reason(err error) string {
	var ve *provider.VerifyError
	switch {
	case errors.Is(err, errNoSecret):
		return "no_secret"
	case errors.As(err, &ve):
		return ve.Reason
	default:
		return provider.VerifyMismatch
	}
}
