package sink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/esignflow/esignflow/provider"
	"github.com/esignflow/esignflow/schemas"
)

// How a status change waits on the retry topic. Its value is the status
// change's own bytes (Confluent wire format, decoded by schema id as on
// the status topic), its key ParkKey, and these headers say where it came
// from and when to try it again; the status record's own headers follow.
const (
	headerOrigin        = "esignflow-sink-origin"          // topic/partition@offset of the status record
	headerKey           = "esignflow-sink-key"             // the status record's key
	headerAttempts      = "esignflow-sink-attempts"        // failed attempts so far
	headerParkedAt      = "esignflow-sink-parked-at"       // when it was first parked (RFC 3339)
	headerNotBefore     = "esignflow-sink-not-before"      // its next attempt (RFC 3339)
	headerNotFoundSince = "esignflow-sink-not-found-since" // the provider has answered "not found" since (RFC 3339)
	headerReason        = "esignflow-sink-reason"          // why its last attempt failed
	headerPrefix        = "esignflow-sink-"
)

// Reasons an attempt failed and was parked again, the values of
// esignflow_sink_retries_total's reason label.
const (
	reasonUnavailable = "unavailable"  // 5xx, timeout, connection refused or reset
	reasonRateLimited = "rate_limited" // the provider asked to wait
	reasonNotReady    = "not_ready"    // provider.ErrNotReady: the files are being prepared
	reasonNotFoundYet = "not_found"    // provider.ErrNotFound, for less than NotFoundAfter
)

var retryReasons = []string{reasonUnavailable, reasonRateLimited, reasonNotReady, reasonNotFoundYet}

// Dead-letter reasons, the values of esignflow_dead_letters_total's reason
// label for component="sink".
const (
	reasonDownloadFailed = "download_failed" // the provider refused the download (provider.IsPermanent)
	reasonDigest         = "digest_mismatch" // DigestAttempts downloads in a row did not match their SHA-256
	reasonNoDownloader   = "no_downloader"   // no downloader for the envelope's provider
	reasonNotFound       = "not_found"       // the provider has not known the envelope for NotFoundAfter
	reasonUndecodable    = "undecodable"     // the status record is poison (schemas.IsPoison)
)

// parkState is where a parked status change came from and how its
// attempts went.
type parkState struct {
	origin        origin
	key           []byte // the status record's key
	Attempts      int
	ParkedAt      time.Time
	NotBefore     time.Time
	NotFoundSince time.Time
	Reason        string
}

// origin is a status record's coordinates.
type origin struct {
	topic     string
	partition int32
	offset    int64
}

func (o origin) String() string { return fmt.Sprintf("%s/%d@%d", o.topic, o.partition, o.offset) }

func parseOrigin(s string) (origin, bool) {
	at := strings.LastIndexByte(s, '@')
	slash := strings.LastIndexByte(s[:max(at, 0)], '/')
	if at < 0 || slash <= 0 {
		return origin{}, false
	}
	p, err1 := strconv.ParseInt(s[slash+1:at], 10, 32)
	off, err2 := strconv.ParseInt(s[at+1:], 10, 64)
	if err1 != nil || err2 != nil {
		return origin{}, false
	}
	return origin{topic: s[:slash], partition: int32(p), offset: off}, true
}

// freshPark is the state of a status record consumed from the status
// topic: never attempted.
func freshPark(r *kgo.Record, now time.Time) parkState {
	return parkState{origin: origin{r.Topic, r.Partition, r.Offset}, key: r.Key, ParkedAt: now, NotBefore: now}
}

// readPark reads a retry record's headers. What is missing or malformed
// takes the value that tries the record now.
func readPark(r *kgo.Record) parkState {
	st := parkState{origin: origin{r.Topic, r.Partition, r.Offset}, key: r.Key, ParkedAt: r.Timestamp}
	at := func(v []byte) time.Time {
		t, _ := time.Parse(time.RFC3339Nano, string(v))
		return t
	}
	for _, h := range r.Headers {
		switch h.Key {
		case headerOrigin:
			if o, ok := parseOrigin(string(h.Value)); ok {
				st.origin = o
			}
		case headerKey:
			st.key = h.Value
		case headerAttempts:
			st.Attempts, _ = strconv.Atoi(string(h.Value))
		case headerParkedAt:
			if t := at(h.Value); !t.IsZero() {
				st.ParkedAt = t
			}
		case headerNotBefore:
			st.NotBefore = at(h.Value)
		case headerNotFoundSince:
			st.NotFoundSince = at(h.Value)
		case headerReason:
			st.Reason = string(h.Value)
		}
	}
	return st
}

// ownHeaders are the status record's headers on a retry record: without
// the sink's.
func ownHeaders(hs []kgo.RecordHeader) []kgo.RecordHeader {
	var out []kgo.RecordHeader
	for _, h := range hs {
		if !strings.HasPrefix(h.Key, headerPrefix) {
			out = append(out, h)
		}
	}
	return out
}

// parkRecord is j's next record on the retry topic: on the partition of
// the record it replaces, or, fresh from the status topic, on its
// envelope's (parkPartition).
func (s *Sink) parkRecord(j *job) *kgo.Record {
	r := parkOn(s.cfg.RetryTopic, j.key(), j.rec.Value, j.rec.Headers, j.park)
	if j.rec.Topic == s.cfg.RetryTopic {
		r.Partition = j.rec.Partition
	} else {
		r.Partition = s.parkPartition(j.ch.EnvelopeID)
	}
	return r
}

func parkOn(topic string, key, value []byte, headers []kgo.RecordHeader, st parkState) *kgo.Record {
	ts := func(t time.Time) []byte { return []byte(t.UTC().Format(time.RFC3339Nano)) }
	hs := []kgo.RecordHeader{
		{Key: headerOrigin, Value: []byte(st.origin.String())},
		{Key: headerKey, Value: st.key},
		{Key: headerAttempts, Value: []byte(strconv.Itoa(st.Attempts))},
		{Key: headerParkedAt, Value: ts(st.ParkedAt)},
		{Key: headerNotBefore, Value: ts(st.NotBefore)},
	}
	if !st.NotFoundSince.IsZero() {
		hs = append(hs, kgo.RecordHeader{Key: headerNotFoundSince, Value: ts(st.NotFoundSince)})
	}
	if st.Reason != "" {
		hs = append(hs, kgo.RecordHeader{Key: headerReason, Value: []byte(st.Reason)})
	}
	return &kgo.Record{Topic: topic, Key: key, Value: value, Headers: append(hs, ownHeaders(headers)...)}
}

// classify says why an attempt failed and whether retrying can change
// it. Anything not known to be a refusal is retried: a provider that is
// down answers in many ways (5xx, timeouts, resets, 429, 409 while it
// prepares the files).
func (s *Sink) classify(err error, st *parkState, now time.Time) (reason string, permanent bool) {
	if !errors.Is(err, provider.ErrNotFound) {
		st.NotFoundSince = time.Time{}
	}
	var rl *provider.RateLimitedError
	switch {
	case errors.Is(err, errNoDownloader):
		return reasonNoDownloader, true
	case errors.Is(err, ErrDigest):
		return reasonDigest, true
	case provider.IsPermanent(err):
		return reasonDownloadFailed, true
	case errors.Is(err, provider.ErrNotFound):
		if st.NotFoundSince.IsZero() {
			st.NotFoundSince = now
		}
		if now.Sub(st.NotFoundSince) >= s.cfg.NotFoundAfter {
			return reasonNotFound, true
		}
		return reasonNotFoundYet, false
	case errors.Is(err, provider.ErrNotReady):
		return reasonNotReady, false
	case errors.As(err, &rl):
		return reasonRateLimited, false
	}
	return reasonUnavailable, false
}

// backoff is the wait after the attempts-th failed attempt: RetryBase
// doubled per attempt up to RetryMax, each wait drawn between half and
// all of it (so envelopes parked together spread out), at least what a
// rate-limited provider asked for.
func (s *Sink) backoff(attempts int, err error) time.Duration {
	d := s.cfg.RetryMax
	if attempts <= 62 {
		if b := s.cfg.RetryBase << (attempts - 1); b > 0 && b < d {
			d = b
		}
	}
	d = d/2 + rand.N(d/2+1)
	var rl *provider.RateLimitedError
	if errors.As(err, &rl) && rl.RetryAfter > d {
		d = rl.RetryAfter
	}
	return d
}

// waitUntilDue is the retry loop's Prepare hook: it holds a polled batch
// until the last of its records is due (at most RetryMax), outside any
// transaction. Records are appended when they are parked, each at most
// RetryMax ahead, so waiting for the batch never delays a record past
// RetryMax after it was parked, and nothing is written while envelopes
// wait. A record due later than RetryMax (a provider's Retry-After) is
// parked again untried by handle when its hold ends.
func (s *Sink) waitUntilDue(ctx context.Context, _ *kgo.Client, recs []*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	now := time.Now()
	var due time.Time
	var keys []string
	for _, r := range recs {
		if r.Value == nil {
			continue
		}
		keys = append(keys, string(r.Key))
		if nb := readPark(r).NotBefore; nb.After(due) {
			due = nb
		}
	}
	s.parked.touch(now, keys...)
	wait := min(due.Sub(now), s.cfg.RetryMax)
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ReplayRecord is the record that replays a sink dead letter: the status
// change it holds, parked on the retry topic (topic) as due now, where the
// sink's retry loop finalises it again. It is never a record of the
// status topic, which has one writer (the processor). Replaying a letter
// twice finalises once: the second finds the version published.
func ReplayRecord(ctx context.Context, codec *schemas.Codec, topic string, dl schemas.DeadLetter, now time.Time) *kgo.Record {
	key := append([]byte(nil), dl.Key...)
	var ch schemas.EnvelopeStatusChanged
	if err := codec.Decode(ctx, dl.Value, &ch); err == nil {
		key = ParkKey(ch.EnvelopeID, ch.Version)
	} else {
		// Undecodable still: keyed by where it came from; the retry loop
		// dead-letters it again unless the registry now knows its schema.
		key = fmt.Appendf(key, "@%s/%d@%d", dl.Topic, dl.Partition, dl.Offset)
	}
	var hs []kgo.RecordHeader
	for _, h := range dl.Headers {
		hs = append(hs, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	from := origin{dl.Topic, dl.Partition, dl.Offset}
	hs = append(hs, kgo.RecordHeader{Key: "esignflow-replayed-from", Value: []byte(from.String())})
	return parkOn(topic, key, dl.Value, hs, parkState{origin: from, key: dl.Key, ParkedAt: now, NotBefore: now})
}

// parkedSet is the envelope versions this replica parked lately and has
// not finalised since: the esignflow_sink_parked gauge. Each parked
// version is parked again (or finalised) at least every RetryMax plus an
// attempt, by whichever replica owns its retry partition, so one not seen
// for ttl is no longer this replica's.
type parkedSet struct {
	ttl  time.Duration
	mu   sync.Mutex
	seen map[string]time.Time
}

func newParkedSet(ttl time.Duration) *parkedSet {
	return &parkedSet{ttl: ttl, seen: map[string]time.Time{}}
}

func (p *parkedSet) touch(now time.Time, keys ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range keys {
		p.seen[k] = now
	}
}

func (p *parkedSet) remove(keys ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range keys {
		delete(p.seen, k)
	}
}

func (p *parkedSet) len(now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, at := range p.seen {
		if now.Sub(at) > p.ttl {
			delete(p.seen, k)
		}
	}
	return len(p.seen)
}
