// Package store keeps esignflow's envelope state in Redis: per envelope its
// state and revision, per event id a dedup record naming the source record
// and the change it produced, a sorted set of non-terminal envelopes by last
// update (for the reconciler), the request ↔ envelope index and a marker
// that tells whether Redis has lost its data.
//
// A batch of events is applied in two round trips: one pipelined read, one
// Lua script that checks every envelope's revision and every dedup key and
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
func (s *Store) dedupKey(id string) string { return s.cfg.Prefix + "dedup:" + id }
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
	envs   []envWrite
	dedups []dedupWrite
	reqs   map[string]string // request id → envelope id
}

type envWrite struct {
	id      string
	wantRev int64
	env     envelope.Envelope
}

type dedupWrite struct {
	id    string
	value []byte
}

func (p *writePlan) empty() bool { return len(p.envs) == 0 && len(p.dedups) == 0 }

// plan reads the batch's envelopes and dedup records (one round trip) and
// applies the events in memory.
func (s *Store) plan(ctx context.Context, in []Input) ([]Result, *writePlan, error) {
	ids := make([]string, len(in))
	var envIDs []string
	seenEnv := make(map[string]bool)
	for i, x := range in {
		ids[i] = DedupID(x.Event)
		if !seenEnv[x.Event.EnvelopeID] {
			seenEnv[x.Event.EnvelopeID] = true
			envIDs = append(envIDs, x.Event.EnvelopeID)
		}
	}
	pipe := s.cfg.Client.Pipeline()
	envCmds := make([]*redis.StringCmd, len(envIDs))
	for i, id := range envIDs {
		envCmds[i] = pipe.HGet(ctx, s.envKey(id), "s")
	}
	dedupCmds := make([]*redis.StringCmd, len(in))
	for i, id := range ids {
		dedupCmds[i] = pipe.Get(ctx, s.dedupKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("store: read batch: %w", err)
	}

	type working struct {
		rev   int64
		env   envelope.Envelope
		dirty bool
	}
	envs := make(map[string]*working, len(envIDs))
	for i, id := range envIDs {
		w := &working{}
		raw, err := envCmds[i].Bytes()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return nil, nil, fmt.Errorf("store: read envelope %s: %w", id, err)
		default:
			if w.env, err = s.codec.decodeEnvelope(raw); err != nil {
				return nil, nil, fmt.Errorf("store: envelope %s: %w", id, err)
			}
			w.rev = w.env.Rev()
		}
		envs[id] = w
	}

	now := s.cfg.Now()
	res := make([]Result, len(in))
	plan := &writePlan{reqs: make(map[string]string)}
	inBatch := make(map[string]bool, len(in))
	for i, x := range in {
		raw, err := dedupCmds[i].Bytes()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return nil, nil, fmt.Errorf("store: read dedup %s: %w", ids[i], err)
		default:
			rec, err := s.codec.decodeDedup(raw)
			if err != nil {
				return nil, nil, fmt.Errorf("store: dedup %s: %w", ids[i], err)
			}
			if rec.Topic == x.From.Topic && rec.Partition == x.From.Partition && rec.Offset == x.From.Offset {
				res[i] = Result{Kind: Replay, Body: rec.Change}
				if rec.Change != nil {
					if res[i].Change, err = s.codec.decodeChange(rec.Change); err != nil {
						return nil, nil, fmt.Errorf("store: dedup %s: %w", ids[i], err)
					}
				}
			} else {
				res[i] = Result{Kind: Duplicate}
			}
			continue
		}
		if inBatch[ids[i]] {
			res[i] = Result{Kind: Duplicate}
			continue
		}
		inBatch[ids[i]] = true
		w := envs[x.Event.EnvelopeID]
		var change *schemas.EnvelopeStatusChanged
		w.env, change = w.env.Apply(x.Event, now)
		w.dirty = true
		res[i] = Result{Kind: Applied, Change: change}
		if change != nil {
			if res[i].Body, err = s.codec.encodeChange(change); err != nil {
				return nil, nil, err
			}
		}
		val, err := s.codec.encodeDedup(dedupRecord{Topic: x.From.Topic, Partition: x.From.Partition, Offset: x.From.Offset, Change: res[i].Body})
		if err != nil {
			return nil, nil, err
		}
		plan.dedups = append(plan.dedups, dedupWrite{id: ids[i], value: val})
		if x.Event.RequestID != nil && *x.Event.RequestID != "" {
			plan.reqs[*x.Event.RequestID] = x.Event.EnvelopeID
		}
	}
	for _, id := range envIDs {
		if w := envs[id]; w.dirty {
			plan.envs = append(plan.envs, envWrite{id: id, wantRev: w.rev, env: w.env})
		}
	}
	return res, plan, nil
}

// write runs the atomic check-and-write script; false means a
// compare-and-set was lost and nothing was written.
func (s *Store) write(ctx context.Context, p *writePlan) (bool, error) {
	keys := make([]string, 0, 2+len(p.envs)+len(p.dedups)+len(p.reqs))
	keys = append(keys, s.markerKey(), s.activeKey())
	args := make([]any, 0, 4+5*len(p.envs)+len(p.dedups)+len(p.reqs))
	args = append(args, len(p.envs), len(p.dedups), len(p.reqs), int64(s.cfg.DedupTTL/time.Second))
	for _, e := range p.envs {
		blob, err := s.codec.encodeEnvelope(e.env)
		if err != nil {
			return false, err
		}
		score := ""
		if !e.env.Terminal() {
			score = strconv.FormatInt(e.env.State.UpdatedAt.UnixMilli(), 10)
		}
		keys = append(keys, s.envKey(e.id))
		args = append(args, e.wantRev, e.env.Rev(), blob, score, e.id)
	}
	for _, d := range p.dedups {
		keys = append(keys, s.dedupKey(d.id))
		args = append(args, d.value)
	}
	for req, env := range p.reqs {
		keys = append(keys, s.reqKey(req))
		args = append(args, env)
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

// applyScript checks the marker and every envelope's revision, and only
// then writes: all or nothing. It returns 0 when written, 1 on a revision
// mismatch, 3 when the marker is missing. The dedup keys need no check of
// their own: an event belongs to one envelope, and every applied event moves
// that envelope's revision, so a dedup record written since the read would
// have failed the revision check.
var applyScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 3 end
local ne, nd, nr = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl = ARGV[4]
for i = 1, ne do
  local cur = redis.call('HGET', KEYS[2 + i], 'rev') or '0'
  if cur ~= ARGV[5 + (i - 1) * 5] then return 1 end
end
for i = 1, ne do
  local b = 5 + (i - 1) * 5
  redis.call('HSET', KEYS[2 + i], 'rev', ARGV[b + 1], 's', ARGV[b + 2])
  if ARGV[b + 3] == '' then
    redis.call('ZREM', KEYS[2], ARGV[b + 4])
  else
    redis.call('ZADD', KEYS[2], ARGV[b + 3], ARGV[b + 4])
  end
end
local d = 5 + ne * 5
for i = 1, nd do
  redis.call('SET', KEYS[2 + ne + i], ARGV[d + i - 1], 'EX', ttl)
end
for i = 1, nr do
  redis.call('SET', KEYS[2 + ne + nd + i], ARGV[d + nd + i - 1])
end
return 0
`)
