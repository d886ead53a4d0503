// Package store keeps esignflow's envelope state in Redis, as a cache of
// what Kafka committed that proves itself exact before it is used (the
// processing protocol of DESIGN.md).
//
// Every key an events batch touches belongs to one input partition and
// carries it as a hash tag, so a partition's keys share one Redis Cluster
// slot and a batch's WATCH/MULTI/EXEC is single-slot:
//
//	esf:{p7}:env:<envelope id>            the envelope's state
//	esf:{p7}:dedup:<len>:<envelope>:<id>  one dedup record per applied event
//	esf:{p7}:dedup-log                    the dedup records by age, for expiry
//	esf:{p7}:active                       envelopes not settled, by last update
//	esf:{p7}:missing                      when the provider first did not know an envelope
//	esf:{p7}:ckpt                         the partition's checkpoint
//	esf:{p7}:owner                        the fencing token of its last claim
//
// The checkpoint says up to which input offset the partition's keys hold
// the effects of its records (Next), which Kafka history they belong to
// (the cluster and the events topic's id), and which member may write
// them (Owner, a token set by Claim). Every batch WATCHes it, checks it and
// rewrites it in the same MULTI as its envelopes and dedup records, so any
// snapshot, replica or AOF replay of Redis holds a consistent prefix, a
// zombie's write fails once the new owner has claimed the partition, and a
// Redis that lost writes is recognised (ErrBehind) instead of trusted.
//
// Two keys are not partition-scoped: the request index (tenant + request
// id → envelope), because upstream producers partition requests as they
// like, and the set of partitions the store holds, for the reconciler.
// Both are written outside the batch's MULTI and rebuilt by a restore.
//
// Each dedup record is a key of its own, read with one MGET and written
// with one MSET per batch. Records do not carry a Redis TTL, which would
// cost a command per record. Instead each write appends its dedup keys,
// stamped with the time, to the partition's log list (a few entries per
// batch), and every batch's read first deletes the records whose entries
// at the head of the log are older than DedupTTL, about twice the batch's
// size of them: expiry keeps pace with writing, inside the same round
// trips.
//
// A batch of events is applied in two round trips on a connection of its
// own: one pipelined read that begins by WATCHing the checkpoint and the
// batch's envelopes, and one MULTI/EXEC that Redis refuses if any of them
// changed since — all or nothing. A writer that loses this compare-and-set
// re-reads and recomputes; so of two writers, exactly one applies each
// event.
package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/schemas"
)

// Sentinel errors.
var (
	// ErrBehind means the partition's keys cannot be trusted: no
	// checkpoint, a checkpoint of another Kafka history, or one behind
	// what Kafka committed (Redis lost writes). Nothing of the batch was
	// written; the partition must be restored from its changelog. The
	// error is a *BehindError.
	ErrBehind = errors.New("store: redis is behind kafka, the partition must be restored")
	// ErrFenced means another member claimed the partition since our
	// Claim: nothing of the batch was written, and nothing will be.
	ErrFenced = errors.New("store: partition claimed by another member")
	// ErrContention means the batch lost the compare-and-set more times
	// than Config.MaxRetries allows; nothing of it was written.
	ErrContention = errors.New("store: too much contention on the envelope revisions")
)

// BehindError says why a partition's keys cannot be trusted.
type BehindError struct {
	Partition int32
	Reason    string
}

func (e *BehindError) Error() string {
	return fmt.Sprintf("store: partition %d: %s; it must be restored from its changelog", e.Partition, e.Reason)
}

func (e *BehindError) Unwrap() error { return ErrBehind }

// Config configures a Store. Client is required; every other field has a
// usable zero value.
type Config struct {
	// Client is the Redis connection: one server, or a Redis Cluster
	// (every batch's keys share one slot).
	Client redis.UniversalClient
	// Prefix is prepended to every key, overriding the default "esf:".
	Prefix string
	// DedupTTL is how long a dedup record is kept, overriding the default
	// of 7 days: longer than any provider retries a webhook. Records are
	// deleted by later batches once they are older (see the package doc).
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
	// beforeWrite, when set (tests), runs between a batch's read and its
	// write: where another writer or a flush can come in.
	beforeWrite func()
	scratch     sync.Pool // of *scratch
	// restores are the chunks restores are writing, by partition, so that
	// the next BeginRestore of a partition waits for an abandoned one's.
	restoresMu sync.Mutex
	restores   map[int32]*flight
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
	return &Store{cfg: cfg, codec: codec, scratch: sync.Pool{New: newScratch}}, nil
}

// part is the prefix of partition p's keys, hash tag included.
func (s *Store) part(p int32) string {
	return s.cfg.Prefix + "{p" + strconv.FormatInt(int64(p), 10) + "}:"
}

func (s *Store) envKey(p int32, id string) string { return s.part(p) + "env:" + id }

// dedupSuffix is a dedup key after its partition's "dedup:" prefix: the
// event's dedup id scoped by its envelope, length-prefixed so that no two
// (envelope, id) pairs share it.
func dedupSuffix(env, id string) string {
	return strconv.Itoa(len(env)) + ":" + env + ":" + id
}
func (s *Store) dedupPrefix(p int32) string { return s.part(p) + "dedup:" }
func (s *Store) activeKey(p int32) string   { return s.part(p) + "active" }
func (s *Store) missingKey(p int32) string  { return s.part(p) + "missing" }
func (s *Store) dedupLogKey(p int32) string { return s.part(p) + "dedup-log" }
func (s *Store) partitionsKey() string      { return s.cfg.Prefix + "partitions" }
func (s *Store) reqKey(k RequestKey) string {
	return s.cfg.Prefix + "req:" + strconv.Itoa(len(k.Tenant)) + ":" + k.Tenant + ":" + k.ID
}

// keysOf returns key(id) for each of ids.
func keysOf(ids []string, key func(string) string) []string {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = key(id)
	}
	return keys
}

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
	// Applied: the event was new; Body is the status change it made, or
	// nil when it changed nothing.
	Applied Kind = iota + 1
	// Replay: the event was applied before from this very record (a crash
	// between the Redis write and the Kafka commit); Body is the stored
	// change, to emit again.
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
	Kind Kind
	// Body is the status change to publish, nil when there is none: its
	// Avro encoding with the status topic's schema (no wire-format
	// header), the very bytes the store keeps. Apply does not build the
	// change as a Go value: for a batch of 500 that was a quarter of the
	// bytes it allocated, and leaving it out cut the Go CPU time per batch
	// of BenchmarkApply by about a quarter. Change decodes it when wanted.
	Body []byte
	// Status is the envelope's status after an applied change, which the
	// store has at hand (for the caller's metrics, without decoding Body);
	// empty for a replay, whose stored change is not decoded.
	Status schemas.Status
}

// Changed reports whether the input produced (or, replayed, had produced) a
// status change.
func (r Result) Changed() bool { return r.Body != nil }

// Change decodes r's status change; nil when it has none.
func (s *Store) Change(r Result) (*schemas.EnvelopeStatusChanged, error) {
	if !r.Changed() {
		return nil, nil
	}
	ch, err := s.codec.decodeChange(r.Body)
	if err != nil {
		return nil, fmt.Errorf("store: status change: %w", err)
	}
	return ch, nil
}

// Stats describes one Apply call's cost.
type Stats struct {
	RoundTrips int // Redis round trips, reads and writes
	Conflicts  int // compare-and-set losses that forced a re-read
}

// DedupID returns the event's dedup id: its event id, or one derived from
// provider, envelope, status, every recipient update and occurred-at when
// it has none — two events that differ only in a later recipient are two
// events, not a duplicate.
func DedupID(ev schemas.EnvelopeEvent) string {
	if ev.EventID != "" {
		return ev.EventID
	}
	var status string
	if ev.Status != nil {
		status = string(*ev.Status)
	}
	// The first update is written as it always was, so that events of
	// one recipient keep the ids they had; each further one follows
	// length-prefixed.
	var rcp []byte
	for i, r := range ev.Recipients {
		if i > 0 {
			rcp = append(rcp, 0)
			rcp = binary.AppendUvarint(rcp, uint64(len(r.RecipientID)))
		}
		rcp = append(rcp, r.RecipientID...)
		rcp = append(rcp, '=')
		rcp = append(rcp, r.Status...)
	}
	return envelope.EventID(ev.Provider, ev.EnvelopeID, status, string(rcp), ev.OccurredAt)
}

// Batch says which partition a call to Apply writes and what it may assume.
type Batch struct {
	// Partition is the input partition every event of the batch came
	// from.
	Partition int32
	// Token is the caller's fencing token from Claim: the checkpoint must
	// still name it.
	Token string
	// History identifies the Kafka history (cluster and events topic) the
	// checkpoint must belong to.
	History string
	// Floor is the lowest acceptable checkpoint: the offset the caller
	// last committed for the partition, or where its previous chunk of an
	// uncommitted batch left the checkpoint. A checkpoint below it means
	// Redis lost writes.
	Floor int64
	// Next is the checkpoint this write leaves: the offset after the
	// batch's last input record of the partition (control records
	// included), where the consumer group's offset lands if the batch
	// commits.
	Next int64
}

// Changed is an envelope a batch changed and its new value's Avro body
// with the changelog's schema (schemas.Envelope, no wire-format header):
// what the processor produces to the changelog partition.
type Changed struct {
	EnvelopeID string
	Body       []byte
}

// Output is what one Apply call did.
type Output struct {
	// Results has one Result per input, in order.
	Results []Result
	// Envelopes are the envelopes whose value changed, once each, in the
	// order of their first event in the batch.
	Envelopes []Changed
	Stats     Stats
}

// Apply applies a batch of one partition's events in order, at most two
// Redis round trips when no other writer interferes, and moves the
// partition's checkpoint to b.Next in the same MULTI/EXEC (an empty batch
// moves only the checkpoint). On error nothing of the batch is written:
// a *BehindError (errors.Is ErrBehind) when the checkpoint is missing,
// foreign or below b.Floor; ErrFenced when it names another owner;
// ErrContention; Redis errors wrapped.
func (s *Store) Apply(ctx context.Context, b Batch, in []Input) (Output, error) {
	var out Output
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	var plan *writePlan
	err := s.optimistic(ctx, b.Partition, &out.Stats, func(tx *redis.Tx) (*writePlan, error) {
		var err error
		out.Results, plan, err = s.plan(ctx, tx, sc, b, in)
		return plan, err
	})
	if err != nil {
		return Output{}, err
	}
	if err := s.indexRequests(ctx, b.Partition, plan.reqs); err != nil {
		return Output{}, err
	}
	for _, w := range plan.envs {
		out.Envelopes = append(out.Envelopes, Changed{EnvelopeID: w.id, Body: w.value[1:]})
	}
	out.Envelopes = append(out.Envelopes, plan.replayed...)
	return out, nil
}

// indexRequests records which envelope each request became. The request
// index is not partition-scoped, so this runs after the batch's EXEC, on
// its own; a failure fails the call (the batch is retried and the index
// written again: replays index their requests too), and a restore rebuilds
// the index from the changelog.
func (s *Store) indexRequests(ctx context.Context, p int32, reqs map[RequestKey]string) error {
	if len(reqs) == 0 {
		return nil
	}
	_, err := s.cfg.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for k, env := range reqs {
			pipe.HSet(ctx, s.reqKey(k), "env", env, "p", p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: request index: %w", err)
	}
	return nil
}

// optimistic runs one optimistic transaction on a connection of its own:
// read returns what to write, having read with WATCH on the keys the write
// depends on (one round trip); the write is one MULTI/EXEC that Redis
// refuses when any of those keys changed since, in which case it starts
// over, at most Config.MaxRetries times.
//
// On a Redis Cluster it runs on the master of partition p's slot: the
// cluster client's Watch would send a WATCH of its own, a round trip more.
func (s *Store) optimistic(ctx context.Context, p int32, stats *Stats, read func(*redis.Tx) (*writePlan, error)) error {
	var node interface {
		Watch(context.Context, func(*redis.Tx) error, ...string) error
	} = s.cfg.Client
	if cc, ok := s.cfg.Client.(*redis.ClusterClient); ok {
		n, err := cc.MasterForKey(ctx, s.ckptKey(p))
		if err != nil {
			return fmt.Errorf("store: partition %d: %w", p, err)
		}
		node = n
	}
	for attempt := 0; ; attempt++ {
		var done bool // false: a watched key changed, start over
		err := node.Watch(ctx, func(tx *redis.Tx) error {
			plan, err := read(tx)
			stats.RoundTrips++
			if err == nil && !plan.empty() {
				if s.beforeWrite != nil {
					s.beforeWrite()
				}
				done, err = s.write(ctx, tx, plan)
				stats.RoundTrips++
				return err
			}
			// Nothing to write (or a failed read): release the watch
			// before the connection goes back to the pool.
			done = true
			stats.RoundTrips++
			if uerr := tx.Unwatch(ctx).Err(); err == nil && uerr != nil {
				err = fmt.Errorf("store: unwatch: %w", uerr)
			}
			return err
		})
		if err != nil || done {
			return err
		}
		stats.Conflicts++
		if attempt >= s.cfg.MaxRetries {
			return ErrContention
		}
	}
}

// watched returns a pipeline on tx that begins by watching keys, so the
// MULTI/EXEC that follows on the same connection fails if any of them
// changes after this read. The caller runs EXEC or UNWATCH afterwards;
// optimistic does.
func watched(ctx context.Context, tx *redis.Tx, keys []string) redis.Pipeliner {
	pipe := tx.Pipeline()
	args := make([]any, 1+len(keys))
	args[0] = "watch"
	for i, k := range keys {
		args[1+i] = k
	}
	pipe.Process(ctx, redis.NewStatusCmd(ctx, args...))
	return pipe
}

// writePlan is everything one batch writes.
type writePlan struct {
	p    int32
	now  time.Time             // when the dedup records are written, for their expiry
	envs []*working            // the envelopes that changed
	reqs map[RequestKey]string // request → envelope id, written after the EXEC
	ckpt *Checkpoint           // the checkpoint to leave; nil: unchanged
	// replayed are envelopes the batch only replayed, as stored: not
	// written, but produced to the changelog.
	replayed []Changed
}

func (p *writePlan) empty() bool { return len(p.envs) == 0 && p.ckpt == nil }

// working is one envelope of a batch: its state as the batch's events move
// it, the dedup records of those events and, once they are applied, its
// stored value.
type working struct {
	id, key string // envelope id and its key
	env     envelope.Envelope
	raw     any // its value as read: a string, or nil when it has none
	// first is the batch index of its first event to apply (-1: none);
	// plan.next links the rest in batch order; n counts them.
	first, last, n int
	dedups         []dedupWrite // one per event applied to it in this batch
	value          []byte       // the encoded env, when it changed
}

type dedupWrite struct {
	suffix, key string // dedup key after its partition's prefix, and the key
	value       []byte
}

// scratch is a batch's working memory, kept for the next batch (through
// Store.scratch, a sync.Pool) rather than allocated each time: for a batch
// of 500 it is about 250 kB, most of it slices big enough to be allocated
// straight from the page heap, zeroed, and handed back to the system by the
// runtime between batches. Each use resizes and clears what it takes.
type scratch struct {
	ids, dedupKeys []string
	envOf, envs    []*working
	next, storedAt []int
	slab           []working
	dedups         []dedupWrite
	index          map[string]int
	inBatch        map[string]bool
}

func newScratch() any { return &scratch{index: map[string]int{}, inBatch: map[string]bool{}} }

// resize returns s with length n and every element zero, reusing its
// array when it is big enough.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// plan reads the batch's checkpoint, envelopes and dedup records (one
// round trip), checks the checkpoint, and applies the events in memory.
//
// (Applying them on several goroutines, each taking whole envelopes, was
// measured and dropped: it cost more CPU time per batch than it saved
// waiting, one writer or two.)
func (s *Store) plan(ctx context.Context, tx *redis.Tx, sc *scratch, b Batch, in []Input) ([]Result, *writePlan, error) {
	p := b.Partition
	ids := resize(sc.ids, len(in))
	envOf := resize(sc.envOf, len(in))
	dedupKeys := resize(sc.dedupKeys, len(in))
	// Number the batch's envelopes first, so that one slice of exactly
	// their number holds them all.
	index := sc.index
	clear(index)
	prefix := s.dedupPrefix(p)
	for i, x := range in {
		ids[i] = dedupSuffix(x.Event.EnvelopeID, DedupID(x.Event))
		dedupKeys[i] = prefix + ids[i]
		if _, ok := index[x.Event.EnvelopeID]; !ok {
			index[x.Event.EnvelopeID] = len(index)
		}
	}
	slab := resize(sc.slab, len(index))
	envs := resize(sc.envs, len(index))
	for i, x := range in {
		k := index[x.Event.EnvelopeID]
		w := &slab[k]
		if envs[k] == nil {
			*w = working{id: x.Event.EnvelopeID, key: s.envKey(p, x.Event.EnvelopeID), first: -1}
			envs[k] = w
		}
		envOf[i] = w
	}
	// Watching the checkpoint makes a flush, a rollback or another
	// member's claim between this read and the write fail the write;
	// watching the envelopes is the compare-and-set. The dedup records
	// need no watch: an event belongs to one envelope and every applied
	// event changes that envelope's value.
	keys := make([]string, 1+len(envs))
	keys[0] = s.ckptKey(p)
	for i, w := range envs {
		keys[1+i] = w.key
	}
	pipe := watched(ctx, tx, keys)
	now := s.cfg.Now()
	expired := expireScript.Eval(ctx, pipe, []string{s.dedupLogKey(p)},
		now.Add(-s.cfg.DedupTTL).UnixMilli(), 2*len(in)+100, prefix)
	ckptCmd := pipe.HMGet(ctx, s.ckptKey(p), ckptFields...)
	var envCmd, dedupCmd *redis.SliceCmd
	if len(in) > 0 {
		envCmd = pipe.MGet(ctx, keys[1:]...)
		dedupCmd = pipe.MGet(ctx, dedupKeys...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, nil, fmt.Errorf("store: read batch: %w", err)
	}
	if err := expired.Err(); err != nil {
		return nil, nil, fmt.Errorf("store: expire dedup records: %w", err)
	}
	ckpt, err := parseCheckpoint(ckptCmd.Val())
	if err != nil {
		return nil, nil, fmt.Errorf("store: partition %d: %w", p, err)
	}
	if err := b.Check(ckpt); err != nil {
		return nil, nil, err
	}
	plan := &writePlan{p: p, now: now, reqs: make(map[RequestKey]string)}
	if ckpt.Next != b.Next {
		plan.ckpt = &Checkpoint{Next: b.Next, Owner: b.Token, History: b.History}
	}
	if len(in) == 0 {
		return nil, plan, nil
	}
	for k, v := range envCmd.Val() {
		envs[k].raw = v
	}

	// Sort the inputs out in batch order, which is cheap: those with a
	// stored record, repeats of an id earlier in the batch, and the events
	// to apply, linked per envelope.
	stored := dedupCmd.Val() // each input's dedup record, nil when none
	res := make([]Result, len(in))
	next := resize(sc.next, len(in))
	inBatch := sc.inBatch
	clear(inBatch)
	storedAt := sc.storedAt[:0]
	apply := 0
	for i := range in {
		if _, ok := stored[i].(string); ok {
			storedAt = append(storedAt, i)
			continue
		}
		if inBatch[ids[i]] {
			res[i] = Result{Kind: Duplicate} // twice in one batch
			continue
		}
		inBatch[ids[i]] = true
		apply++
		w := envOf[i]
		next[i] = -1
		if w.first < 0 {
			w.first = i
		} else {
			next[w.last] = i
		}
		w.last = i
		w.n++
	}
	// One allocation for every dedup record the batch writes, carved
	// up by envelope.
	dedups := resize(sc.dedups, apply)
	*sc = scratch{ids: ids, dedupKeys: dedupKeys, envOf: envOf, next: next, storedAt: storedAt,
		slab: slab, envs: envs, dedups: dedups, index: index, inBatch: inBatch}
	for _, w := range envs {
		w.dedups, dedups = dedups[:0:w.n], dedups[w.n:]
	}

	if err := s.applyAll(envs, storedAt, in, ids, dedupKeys, stored, next, res, now); err != nil {
		return nil, nil, err
	}

	for i, x := range in {
		// Replays index their requests again: the index is written after
		// the EXEC, and the attempt that applied them may have died
		// between the two.
		if k := res[i].Kind; (k == Applied || k == Replay) && x.Event.RequestID != nil && *x.Event.RequestID != "" {
			plan.reqs[RequestKey{Tenant: deref(x.Event.Tenant), ID: *x.Event.RequestID}] = envOf[i].id
		}
	}
	for _, w := range envs {
		if len(w.dedups) > 0 {
			plan.envs = append(plan.envs, w)
		}
	}
	// An envelope with replays and nothing new goes to the changelog too,
	// as Redis holds it: the attempt that applied them did not commit, so
	// its changelog records did not either.
	replayed := map[*working]bool{}
	for _, i := range storedAt {
		if w := envOf[i]; res[i].Kind == Replay && len(w.dedups) == 0 && !replayed[w] {
			if raw, ok := w.raw.(string); ok && len(raw) > 1 {
				replayed[w] = true
				plan.replayed = append(plan.replayed, Changed{EnvelopeID: w.id, Body: []byte(raw[1:])})
			}
		}
	}
	if len(plan.envs) > 0 && plan.ckpt == nil {
		plan.ckpt = &Checkpoint{Next: b.Next, Owner: b.Token, History: b.History}
	}
	return res, plan, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// applyAll applies the events of a batch's envelopes, in order for each,
// and encodes each changed envelope's value, and reads the dedup records of
// the inputs at storedAt.
func (s *Store) applyAll(envs []*working, storedAt []int, in []Input, ids, dedupKeys []string, stored []any, next []int, res []Result, now time.Time) error {
	for _, i := range storedAt {
		var err error
		if res[i], err = s.stored(stored[i].(string), in[i].From); err != nil {
			return fmt.Errorf("store: dedup %s: %w", ids[i], err)
		}
	}
	enc := s.codec.encoder()
	var ch schemas.EnvelopeStatusChanged // encoded at once, so one serves them all
	for _, w := range envs {
		if w.first < 0 {
			continue
		}
		if raw, ok := w.raw.(string); ok {
			if err := s.codec.decodeEnvelope([]byte(raw), &w.env); err != nil {
				return fmt.Errorf("store: envelope %s: %w", w.id, err)
			}
		}
		for i := w.first; i >= 0; i = next[i] {
			var (
				changed bool
				change  *schemas.EnvelopeStatusChanged
			)
			if w.env, changed = w.env.ApplyTo(in[i].Event, now, &ch); changed {
				change = &ch
			}
			val, body, err := enc.dedup(in[i].From, change)
			if err != nil {
				return err
			}
			res[i] = Result{Kind: Applied, Body: body}
			if change != nil {
				res[i].Status = change.Status
			}
			w.dedups = append(w.dedups, dedupWrite{suffix: ids[i], key: dedupKeys[i], value: val})
		}
		var err error
		if w.value, err = enc.envelope(&w.env); err != nil {
			return err
		}
	}
	return nil
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
	return Result{Kind: Replay, Body: rec.Change}, nil
}

// write runs the batch's writes in one MULTI/EXEC on tx; false means a
// watched key changed since the read and nothing was written.
//
// The writes go out as a handful of commands whatever the batch's size
// (one MSET for the envelopes, one for the dedup records, one RPUSH of a
// few entries to the dedup log, one ZADD and one ZREM for the index, one
// HDEL of the settled envelopes' not-found records, one HSET of the
// checkpoint): inside Redis the cost is per command and per
// byte copied. (A Lua script doing the same would first turn every
// argument into a Lua string: measured with a no-op script, that alone
// cost 0.74 ms of Redis time for a 500-event batch's arguments.)
func (s *Store) write(ctx context.Context, tx *redis.Tx, p *writePlan) (bool, error) {
	envs := make([]any, 0, 2*len(p.envs))
	active := make([]redis.Z, 0, len(p.envs))
	n := 0
	for _, w := range p.envs {
		n += len(w.dedups)
	}
	dedups := make([]any, 0, 2*n)
	var done []any
	var settled []string
	log := newLogEntries(p.now, n)
	for _, w := range p.envs {
		envs = append(envs, w.key, w.value)
		if Settled(w.env) {
			done = append(done, w.id)
			settled = append(settled, w.id)
		} else {
			active = append(active, redis.Z{Score: float64(w.env.State.UpdatedAt.UnixMilli()), Member: w.id})
		}
		for _, d := range w.dedups {
			dedups = append(dedups, d.key, d.value)
			log.add(d.suffix)
		}
	}
	_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		if len(envs) > 0 {
			pipe.MSet(ctx, envs...)
		}
		if len(dedups) > 0 {
			pipe.MSet(ctx, dedups...)
			pipe.RPush(ctx, s.dedupLogKey(p.p), log.done()...)
		}
		if len(active) > 0 {
			pipe.ZAdd(ctx, s.activeKey(p.p), active...)
		}
		if len(done) > 0 {
			pipe.ZRem(ctx, s.activeKey(p.p), done...)
			pipe.HDel(ctx, s.missingKey(p.p), settled...)
		}
		if p.ckpt != nil {
			pipe.HSet(ctx, s.ckptKey(p.p), p.ckpt.fields()...)
		}
		return nil
	})
	switch {
	case errors.Is(err, redis.TxFailedErr):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("store: write batch: %w", err)
	}
	return true, nil
}

// logEntryIDs is the most dedup ids one log entry holds: a batch's records
// take one entry per this many, so the log costs Redis a few arguments per
// batch, and expiry, which deletes whole entries, overshoots its bound by
// less than one entry.
const logEntryIDs = 256

// logEntries builds a batch's dedup log entries: "<unix ms>\t" and then,
// for each dedup id, "<length in bytes>:<id>" (ids may hold any byte).
type logEntries struct {
	stamp   string
	entries []any
	cur     []byte
	n       int // ids in cur
	left    int // ids still to come
}

func newLogEntries(now time.Time, ids int) *logEntries {
	return &logEntries{stamp: strconv.FormatInt(now.UnixMilli(), 10) + "\t", entries: make([]any, 0, (ids+logEntryIDs-1)/logEntryIDs), left: ids}
}

func (l *logEntries) add(id string) {
	if l.cur == nil {
		// Room for the entry's ids at 40 bytes each, a guess.
		l.cur = append(make([]byte, 0, len(l.stamp)+min(l.left, logEntryIDs)*40), l.stamp...)
	}
	l.left--
	l.cur = strconv.AppendInt(l.cur, int64(len(id)), 10)
	l.cur = append(append(l.cur, ':'), id...)
	if l.n++; l.n == logEntryIDs {
		l.entries, l.cur, l.n = append(l.entries, l.cur), nil, 0
	}
}

func (l *logEntries) done() []any {
	if l.cur != nil {
		l.entries, l.cur, l.n = append(l.entries, l.cur), nil, 0
	}
	return l.entries
}

// expireScript deletes the dedup records of the entries at the head of the
// log written before ARGV[1] (unix ms), stopping once it has deleted
// ARGV[2] records or more, and drops those entries; ARGV[3] is the dedup
// key prefix. It returns how many records it deleted. It reads the log in
// growing pages, the first of four entries, and stops at the first entry
// that is not due, so a run with nothing to do costs one short LRANGE.
// Besides the entries logEntries writes it reads the older "<unix ms> <id>"
// of one record each.
// Writers append in time order up to their clocks' skew; an entry behind a
// later one waits for it.
var expireScript = redis.NewScript(`
local cutoff, limit, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local n, size, dead = 0, 4, {}
local function unlink()
  if #dead > 0 then redis.call('UNLINK', unpack(dead)) end
  dead = {}
end
while n < limit do
  -- An entry holds at least one record: no more entries than records.
  local page = redis.call('LRANGE', KEYS[1], 0, math.min(limit - n, size) - 1)
  size = math.min(size * 4, 1024)
  local trim = 0
  for _, e in ipairs(page) do
    if n >= limit then break end
    local sep = string.find(e, '[ \t]')
    local at = sep and tonumber(string.sub(e, 1, sep - 1))
    if at and at >= cutoff then break end
    if at and string.sub(e, sep, sep) == ' ' then
      dead[#dead + 1] = prefix .. string.sub(e, sep + 1)
      n = n + 1
    elseif at then
      local pos = sep + 1
      while pos <= #e do
        local colon = string.find(e, ':', pos, true)
        local len = colon and tonumber(string.sub(e, pos, colon - 1))
        if not len then break end -- a malformed rest is dropped
        dead[#dead + 1] = prefix .. string.sub(e, colon + 1, colon + len)
        n = n + 1
        pos = colon + 1 + len
      end
    end
    trim = trim + 1 -- a malformed entry is dropped
    if #dead >= 1000 then unlink() end
  end
  unlink()
  if trim == 0 then break end
  redis.call('LTRIM', KEYS[1], trim, -1)
  if trim < #page then break end
end
return n
`)
