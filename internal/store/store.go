// Package store keeps esignflow's envelope state in Redis: per envelope its
// state (a string key), per event id a dedup record naming the source
// record and the change it produced, a sorted set of non-terminal envelopes
// by last update (for the reconciler), the request → envelope index and a
// marker that tells whether Redis has lost its data.
//
// Dedup records live in one hash per envelope, field = dedup id, so a batch
// reads and writes them with one command per envelope rather than one per
// event. The hash expires DedupTTL after the envelope's latest event: a
// record is kept at least that long.
//
// A batch of events is applied in two round trips: one pipelined read, one
// Lua script that checks that every envelope still holds the value read and
// writes all or nothing. A writer that loses the compare-and-set re-reads
// and recomputes; so of two writers, exactly one applies each event.
package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/schemas"
)

// Sentinel errors.
var (
	// ErrDataLoss means the marker key is missing: Redis lost its data (or
	// was never initialised) and the envelope state must be restored before
	// events are applied again. Nothing of the batch was written.
	ErrDataLoss = errors.New("store: redis marker missing, state must be restored")
	// ErrContention means the batch lost the compare-and-set more times
	// than Config.MaxRetries allows; nothing of it was written.
	ErrContention = errors.New("store: too much contention on the envelope revisions")
)

// Config configures a Store. Client is required; every other field has a
// usable zero value.
type Config struct {
	// Client is the Redis connection. Multi-key scripts need every key on
	// one node, so Redis Cluster is not supported.
	Client redis.Cmdable
	// Prefix is prepended to every key, overriding the default "esf:".
	Prefix string
	// DedupTTL is how long a dedup record is kept, overriding the default
	// of 7 days: longer than any provider retries a webhook.
	DedupTTL time.Duration
	// MaxRetries bounds the re-reads after a lost compare-and-set in one
	// Apply call, overriding the default 16.
	MaxRetries int
	// Now is the clock, overriding time.Now (tests).
	Now func() time.Time
}

// Store is the Redis envelope store. It is safe for concurrent use; it does
// not own the client.
type Store struct {
	cfg   Config
	codec *blobCodec
}

// New returns a Store for cfg.
func New(cfg Config) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("store: Config.Client is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "esf:"
	}
	if cfg.DedupTTL <= 0 {
		cfg.DedupTTL = 7 * 24 * time.Hour
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 16
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	codec, err := newBlobCodec()
	if err != nil {
		return nil, err
	}
	return &Store{cfg: cfg, codec: codec}, nil
}

func (s *Store) envKey(id string) string   { return s.cfg.Prefix + "env:" + id }
func (s *Store) dedupKey(id string) string { return s.cfg.Prefix + "dd:" + id }
func (s *Store) reqKey(id string) string   { return s.cfg.Prefix + "req:" + id }
func (s *Store) activeKey() string         { return s.cfg.Prefix + "active" }
func (s *Store) markerKey() string         { return s.cfg.Prefix + "marker" }

// Coord is a Kafka record's coordinates.
type Coord struct {
	Topic     string
	Partition int32
	Offset    int64
}

func (c Coord) String() string { return fmt.Sprintf("%s/%d@%d", c.Topic, c.Partition, c.Offset) }

// Input is one event to apply and the record it came from.
type Input struct {
	Event schemas.EnvelopeEvent
	From  Coord
}

// Kind is what Apply did with one input.
type Kind int

// Kinds of result.
const (
	// Applied: the event was new; Change is the status change it made, or
	// nil when it changed nothing.
	Applied Kind = iota + 1
	// Replay: the event was applied before from this very record (a crash
	// between the Redis write and the Kafka commit); Change is the stored
	// result, to emit again.
	Replay
	// Duplicate: the event was applied before from another record; emit
	// nothing.
	Duplicate
)

func (k Kind) String() string {
	switch k {
	case Applied:
		return "applied"
	case Replay:
		return "replay"
	case Duplicate:
		return "duplicate"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Result is the outcome of one Input.
type Result struct {
	Kind   Kind
	Change *schemas.EnvelopeStatusChanged
	// Body is Change's Avro encoding with the status topic's schema (no
	// wire-format header): what the store keeps, ready to publish.
	Body []byte
}

// Stats describes one Apply call's cost.
type Stats struct {
	RoundTrips int // Redis round trips, reads and writes
	Conflicts  int // compare-and-set losses that forced a re-read
}

// DedupID returns the event's dedup id: its event id, or one derived from
// provider, envelope, status, recipient and occurred-at when it has none.
func DedupID(ev schemas.EnvelopeEvent) string {
	if ev.EventID != "" {
		return ev.EventID
	}
	var status, rcp string
	if ev.Status != nil {
		status = string(*ev.Status)
	}
	if len(ev.Recipients) > 0 {
		rcp = ev.Recipients[0].RecipientID + "=" + string(ev.Recipients[0].Status)
	}
	return envelope.EventID(ev.Provider, ev.EnvelopeID, status, rcp, ev.OccurredAt)
}

// Apply applies a batch of events in order, at most two Redis round trips
// when no other writer interferes, and returns one Result per input. On
// error nothing of the batch is written; ErrDataLoss and ErrContention are
// returned as such, Redis errors wrapped.
func (s *Store) Apply(ctx context.Context, in []Input) ([]Result, Stats, error) {
	var stats Stats
	if len(in) == 0 {
		return nil, stats, nil
	}
	for attempt := 0; ; attempt++ {
		res, plan, err := s.plan(ctx, in)
		stats.RoundTrips++
		if err != nil {
			return nil, stats, err
		}
		if plan.empty() {
			return res, stats, nil
		}
		ok, err := s.write(ctx, plan)
		stats.RoundTrips++
		if err != nil {
			return nil, stats, err
		}
		if ok {
			return res, stats, nil
		}
		stats.Conflicts++
		if attempt >= s.cfg.MaxRetries {
			return nil, stats, ErrContention
		}
	}
}

// writePlan is everything one batch writes.
type writePlan struct {
	// restore skips the marker check: Restore runs before the marker is
	// set again.
	restore bool
	envs    []*working        // the envelopes that changed
	reqs    map[string]string // request id → envelope id
}

func (p *writePlan) empty() bool { return len(p.envs) == 0 && len(p.reqs) == 0 }

// working is one envelope of a batch: the value it was read with (the
// compare-and-set's expectation, "" when it had none), its state as the
// batch's events move it, and the dedup records of those events.
type working struct {
	id     string
	old    string
	env    envelope.Envelope
	events []int // indexes of the batch's inputs for this envelope
	dirty  bool
	dedups []dedupWrite
}

// applied reports whether an event with dedup id was applied to w earlier
// in this batch (the same event delivered twice within one batch).
func (w *working) applied(id string) bool {
	for _, d := range w.dedups {
		if d.id == id {
			return true
		}
	}
	return false
}

type dedupWrite struct {
	id    string
	value []byte
}

// plan reads the batch's envelopes and dedup records (one round trip: an
// MGET of the envelopes and an HMGET of each envelope's dedup hash) and
// applies the events in memory.
func (s *Store) plan(ctx context.Context, in []Input) ([]Result, *writePlan, error) {
	ids := make([]string, len(in))
	envOf := make([]*working, len(in))
	index := make(map[string]*working)
	var envs []*working
	for i, x := range in {
		ids[i] = DedupID(x.Event)
		w := index[x.Event.EnvelopeID]
		if w == nil {
			w = &working{id: x.Event.EnvelopeID}
			index[w.id] = w
			envs = append(envs, w)
		}
		w.events = append(w.events, i)
		envOf[i] = w
	}
	envKeys := make([]string, len(envs))
	for i, w := range envs {
		envKeys[i] = s.envKey(w.id)
	}
	pipe := s.cfg.Client.Pipeline()
	envCmd := pipe.MGet(ctx, envKeys...)
	dedupCmds := make([]*redis.SliceCmd, len(envs))
	for k, w := range envs {
		fields := make([]string, len(w.events))
		for j, i := range w.events {
			fields[j] = ids[i]
		}
		dedupCmds[k] = pipe.HMGet(ctx, s.dedupKey(w.id), fields...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, nil, fmt.Errorf("store: read batch: %w", err)
	}
	for k, v := range envCmd.Val() {
		if raw, ok := v.(string); ok {
			w := envs[k]
			e, err := s.codec.decodeEnvelope([]byte(raw))
			if err != nil {
				return nil, nil, fmt.Errorf("store: envelope %s: %w", w.id, err)
			}
			w.old, w.env = raw, e
		}
	}
	stored := make([]string, len(in)) // each input's dedup record, "" when none
	for k, w := range envs {
		for j, v := range dedupCmds[k].Val() {
			if raw, ok := v.(string); ok {
				stored[w.events[j]] = raw
			}
		}
	}

	now := s.cfg.Now()
	enc := s.codec.encoder()
	res := make([]Result, len(in))
	plan := &writePlan{reqs: make(map[string]string)}
	for i, x := range in {
		if stored[i] != "" {
			var err error
			if res[i], err = s.stored(stored[i], x.From); err != nil {
				return nil, nil, fmt.Errorf("store: dedup %s: %w", ids[i], err)
			}
			continue
		}
		w := envOf[i]
		if w.applied(ids[i]) {
			res[i] = Result{Kind: Duplicate}
			continue
		}
		var change *schemas.EnvelopeStatusChanged
		w.env, change = w.env.Apply(x.Event, now)
		w.dirty = true
		val, body, err := enc.dedup(x.From, change)
		if err != nil {
			return nil, nil, err
		}
		res[i] = Result{Kind: Applied, Change: change, Body: body}
		w.dedups = append(w.dedups, dedupWrite{id: ids[i], value: val})
		if x.Event.RequestID != nil && *x.Event.RequestID != "" {
			plan.reqs[*x.Event.RequestID] = w.id
		}
	}
	for _, w := range envs {
		if w.dirty {
			plan.envs = append(plan.envs, w)
		}
	}
	return res, plan, nil
}

// stored returns the result for an input whose dedup record exists: a
// replay with the stored change when the record names the input's own
// coordinates, a duplicate otherwise.
func (s *Store) stored(raw string, from Coord) (Result, error) {
	rec, err := s.codec.decodeDedup([]byte(raw))
	if err != nil {
		return Result{}, err
	}
	if rec.Topic != from.Topic || rec.Partition != from.Partition || rec.Offset != from.Offset {
		return Result{Kind: Duplicate}, nil
	}
	r := Result{Kind: Replay, Body: rec.Change}
	if rec.Change != nil {
		if r.Change, err = s.codec.decodeChange(rec.Change); err != nil {
			return Result{}, err
		}
	}
	return r, nil
}

// write runs the atomic check-and-write script; false means a
// compare-and-set was lost and nothing was written.
func (s *Store) write(ctx context.Context, p *writePlan) (bool, error) {
	keys, args, err := s.writeArgs(p)
	if err != nil {
		return false, err
	}
	code, err := applyScript.Run(ctx, s.cfg.Client, keys, args...).Int()
	if err != nil {
		return false, fmt.Errorf("store: write batch: %w", err)
	}
	switch code {
	case 0:
		return true, nil
	case 3:
		return false, ErrDataLoss
	default:
		return false, nil
	}
}

// writeArgs lays p out as applyScript's keys and arguments.
func (s *Store) writeArgs(p *writePlan) ([]string, []any, error) {
	n := len(p.envs)
	keys := make([]string, 2+2*n, 2+2*n+len(p.reqs))
	keys[0], keys[1] = s.markerKey(), s.activeKey()
	check := "1"
	if p.restore {
		check = "0"
	}
	args := make([]any, 4+5*n, 4+7*n+len(p.reqs))
	args[0], args[1], args[2], args[3] = check, n, len(p.reqs), int64(s.cfg.DedupTTL/time.Second)
	var fields []any
	enc := s.codec.encoder()
	for i, e := range p.envs {
		blob, err := enc.envelope(&e.env)
		if err != nil {
			return nil, nil, err
		}
		score := ""
		if !e.env.Terminal() {
			score = strconv.FormatInt(e.env.State.UpdatedAt.UnixMilli(), 10)
		}
		keys[2+i], keys[2+n+i] = s.envKey(e.id), s.dedupKey(e.id)
		b := 4 + 5*i
		args[b], args[b+1], args[b+2], args[b+3], args[b+4] = e.old, blob, score, e.id, len(e.dedups)
		for _, d := range e.dedups {
			fields = append(fields, d.id, d.value)
		}
	}
	args = append(args, fields...)
	for req, env := range p.reqs {
		keys = append(keys, s.reqKey(req))
		args = append(args, env)
	}
	return keys, args, nil
}

// applyScript checks the marker (unless told not to: a restore) and that
// every envelope still holds the value the writer read, and only then
// writes: all or nothing. It returns 0 when written, 1 when an envelope
// changed since the read, 3 when the marker is missing. The dedup records
// need no check of their own: an event belongs to one envelope, and every
// applied event changes that envelope's value, so a dedup record written
// since the read would have failed the envelope's check.
//
// KEYS: marker, active index, n envelope keys, n dedup hashes, r request
// keys. ARGV: check marker ("1"/"0"), n, r, dedup TTL in seconds; per
// envelope its old value, new value, index score ("" when terminal), id and
// number of dedup records; then every envelope's dedup fields and values in
// order; then the r request keys' envelope ids.
//
// Writes go out as few commands as possible (MSET, multi-member ZADD, one
// HSET per dedup hash): inside Redis the cost is per command, not per byte.
// Bulk arguments are unpacked in chunks that stay within Lua's stack.
var applyScript = redis.NewScript(scriptSrc)

const scriptSrc = `
local chunk = 1000
local function bulk(cmd, head, t)
  for lo = 1, #t, chunk do
    local hi = math.min(lo + chunk - 1, #t)
    if head then redis.call(cmd, head, unpack(t, lo, hi)) else redis.call(cmd, unpack(t, lo, hi)) end
  end
end
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 3 end
local n, nr, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
for lo = 1, n, chunk do
  local hi = math.min(lo + chunk - 1, n)
  local cur = redis.call('MGET', unpack(KEYS, 2 + lo, 2 + hi))
  for i = lo, hi do
    if (cur[i - lo + 1] or '') ~= ARGV[5 + (i - 1) * 5] then return 1 end
  end
end
local set, zadd, zrem = {}, {}, {}
local f = 5 + n * 5
for i = 1, n do
  local b = 5 + (i - 1) * 5
  set[#set + 1] = KEYS[2 + i]
  set[#set + 1] = ARGV[b + 1]
  if ARGV[b + 2] == '' then
    zrem[#zrem + 1] = ARGV[b + 3]
  else
    zadd[#zadd + 1] = ARGV[b + 2]
    zadd[#zadd + 1] = ARGV[b + 3]
  end
  local nd = tonumber(ARGV[b + 4])
  if nd > 0 then
    for lo = f, f + 2 * nd - 1, chunk do
      redis.call('HSET', KEYS[2 + n + i], unpack(ARGV, lo, math.min(lo + chunk - 1, f + 2 * nd - 1)))
    end
    redis.call('EXPIRE', KEYS[2 + n + i], ttl)
    f = f + 2 * nd
  end
end
bulk('MSET', nil, set)
bulk('ZADD', KEYS[2], zadd)
bulk('ZREM', KEYS[2], zrem)
local req = {}
for i = 1, nr do
  req[#req + 1] = KEYS[2 + 2 * n + i]
  req[#req + 1] = ARGV[f + i - 1]
end
bulk('MSET', nil, req)
return 0
`
