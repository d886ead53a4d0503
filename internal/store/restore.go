package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/envelope"
)

// restoreChunk is how many envelopes a restore writes per round trip.
const restoreChunk = 1000

// Restore replaces one partition's keys with the envelope states of its
// changelog, streamed: BeginRestore deletes the partition's checkpoint and
// keys, Put writes states as they are read, Finish writes the checkpoint.
// Until Finish the partition has no checkpoint, so a restore that dies or
// fails half-way leaves nothing any member trusts, and is done again.
// Batches of the partition must not run meanwhile; the processor runs a
// restore outside them. The reconciler's not-found records of the
// partition (MarkMissing) go with its other keys: the changelog does not
// hold them, and losing them only delays a not-found verdict.
//
// A Restore is used by one goroutine. While Put fills a chunk, the chunk
// before it is being written by a goroutine of the Restore's own (at most
// one chunk is in flight), so that encoding and Redis's work overlap; that
// goroutine ends with its write, and Finish, or the next BeginRestore of
// the partition on the same Store when the Restore was abandoned, waits
// for it.
type Restore struct {
	s      *Store
	p      int32
	token  string // "": not fenced (Seed)
	enc    *encoder
	cmds   []redis.Cmder   // the chunk's writes of p's keys
	reqs   redis.Pipeliner // the chunk's request index writes
	n      int             // envelopes in the chunk
	total  int
	flight *flight // the chunk being written, nil when none
	err    error   // the first failed write: every later call returns it
}

// flight is one chunk's write.
type flight struct {
	done chan struct{} // closed when the write is over
	err  error
}

// wait waits for the chunk in flight, if any, and returns the first write
// error.
func (r *Restore) wait() error {
	if f := r.flight; f != nil {
		<-f.done
		r.flight = nil
		if r.err == nil {
			r.err = f.err
		}
	}
	return r.err
}

// BeginRestore starts restoring partition p as the owner of token (from
// Claim). ErrFenced when the partition has been claimed again since.
func (s *Store) BeginRestore(ctx context.Context, p int32, token string) (*Restore, error) {
	// An abandoned restore of p may still be writing its last chunk: it
	// must land before p's keys are deleted, not after.
	s.restoresMu.Lock()
	if f := s.restores[p]; f != nil {
		<-f.done
		delete(s.restores, p)
	}
	s.restoresMu.Unlock()
	if err := s.dropCheckpoint(ctx, p, token); err != nil {
		return nil, err
	}
	if err := s.deletePartition(ctx, p, token); err != nil {
		return nil, err
	}
	return &Restore{s: s, p: p, token: token, enc: s.codec.encoder(), reqs: s.cfg.Client.Pipeline()}, nil
}

// asOwner runs cmds, all of them on keys of p, in one MULTI/EXEC provided
// token is still p's last claim (ErrFenced otherwise), so that a member
// that lost the partition while restoring it never writes over the new
// owner's keys.
func (s *Store) asOwner(ctx context.Context, p int32, token string, cmds []redis.Cmder) error {
	key := s.ownerKey(p)
	err := s.cfg.Client.Watch(ctx, func(tx *redis.Tx) error {
		owner, err := tx.Get(ctx, key).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if owner != token {
			return fmt.Errorf("%w: partition %d %w", ErrFenced, p, errClaimLost)
		}
		_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, c := range cmds {
				_ = pipe.Process(ctx, c)
			}
			return nil
		})
		return err
	}, key)
	if errors.Is(err, redis.TxFailedErr) { // claimed between the GET and the EXEC
		return fmt.Errorf("%w: partition %d %w", ErrFenced, p, errClaimLost)
	}
	return err
}

// dropCheckpoint deletes p's checkpoint if token is still its last claim.
func (s *Store) dropCheckpoint(ctx context.Context, p int32, token string) error {
	ok, err := dropCkptScript.Run(ctx, s.cfg.Client, []string{s.ckptKey(p), s.ownerKey(p)}, token).Int()
	if err != nil {
		return fmt.Errorf("store: restore partition %d: %w", p, err)
	}
	if ok != 1 {
		return fmt.Errorf("%w: partition %d %w", ErrFenced, p, errClaimLost)
	}
	return nil
}

var dropCkptScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// deletePartition deletes every key of p but its owner, as the holder of
// token: on a Redis Cluster, on the node that holds p's slot.
func (s *Store) deletePartition(ctx context.Context, p int32, token string) error {
	var node redis.Cmdable = s.cfg.Client
	if cc, ok := s.cfg.Client.(*redis.ClusterClient); ok {
		n, err := cc.MasterForKey(ctx, s.ckptKey(p))
		if err != nil {
			return fmt.Errorf("store: restore partition %d: %w", p, err)
		}
		node = n
	}
	keep := s.ownerKey(p)
	iter := node.Scan(ctx, 0, escapeGlob(s.part(p))+"*", 1000).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		args := make([]any, 1+len(batch))
		args[0] = "unlink"
		for i, k := range batch {
			args[1+i] = k
		}
		batch = batch[:0]
		return s.asOwner(ctx, p, token, []redis.Cmder{redis.NewIntCmd(ctx, args...)})
	}
	for iter.Next(ctx) {
		if k := iter.Val(); k != keep {
			batch = append(batch, k)
		}
		if len(batch) >= 1000 {
			if err := flush(); err != nil {
				return fmt.Errorf("store: restore partition %d: delete: %w", p, err)
			}
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("store: restore partition %d: scan: %w", p, err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("store: restore partition %d: delete: %w", p, err)
	}
	return nil
}

// escapeGlob escapes the characters SCAN MATCH treats as a pattern.
func escapeGlob(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// Put writes one envelope's committed state, with its entries in the
// reconciler's index (when it is not Settled: the rule a batch's write
// follows) and the request index (with the request's content hash when
// the state carries it). Writes go out restoreChunk at a time.
func (r *Restore) Put(ctx context.Context, e *envelope.Envelope) error {
	val, err := r.enc.envelope(e)
	if err != nil {
		return err
	}
	id := e.State.EnvelopeID
	r.cmds = append(r.cmds, redis.NewStatusCmd(ctx, "set", r.s.envKey(r.p, id), val))
	if !Settled(*e) {
		r.cmds = append(r.cmds, redis.NewIntCmd(ctx, "zadd", r.s.activeKey(r.p), e.State.UpdatedAt.UnixMilli(), id))
	}
	if e.State.RequestID != nil && *e.State.RequestID != "" {
		// The request's content hash, where the state has it, so that a
		// request with the same identity and other content is still
		// refused as conflicting; a state without one (written before
		// states carried it) leaves whatever hash the entry holds.
		key := r.s.reqKey(RequestKey{Tenant: deref(e.State.Tenant), ID: *e.State.RequestID})
		if h := deref(e.State.RequestHash); h != "" {
			r.reqs.HSet(ctx, key, "env", id, "p", r.p, "h", h)
		} else {
			r.reqs.HSet(ctx, key, "env", id, "p", r.p)
		}
	}
	r.total++
	if r.n++; r.n >= restoreChunk {
		return r.flushAsync(ctx)
	}
	return nil
}

// take hands the chunk's writes over and starts a new chunk.
func (r *Restore) take() ([]redis.Cmder, redis.Pipeliner) {
	cmds, reqs := r.cmds, r.reqs
	r.cmds, r.reqs, r.n = nil, r.s.cfg.Client.Pipeline(), 0
	return cmds, reqs
}

// flushAsync waits for the chunk in flight, then starts writing this one.
func (r *Restore) flushAsync(ctx context.Context) error {
	if err := r.wait(); err != nil {
		return err
	}
	cmds, reqs := r.take()
	f := &flight{done: make(chan struct{})}
	r.flight = f
	r.s.restoresMu.Lock()
	if r.s.restores == nil {
		r.s.restores = map[int32]*flight{}
	}
	r.s.restores[r.p] = f
	r.s.restoresMu.Unlock()
	go func() {
		defer close(f.done)
		f.err = r.write(ctx, cmds, reqs)
	}()
	return nil
}

// flush waits for the chunk in flight and writes what is left.
func (r *Restore) flush(ctx context.Context) error {
	if err := r.wait(); err != nil {
		return err
	}
	if r.n == 0 {
		return nil
	}
	cmds, reqs := r.take()
	r.err = r.write(ctx, cmds, reqs)
	return r.err
}

// write writes one chunk: p's keys in a MULTI/EXEC fenced by the token,
// then its request index entries.
func (r *Restore) write(ctx context.Context, cmds []redis.Cmder, reqs redis.Pipeliner) error {
	var err error
	if r.token == "" {
		_, err = r.s.cfg.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, c := range cmds {
				_ = pipe.Process(ctx, c)
			}
			return nil
		})
	} else {
		err = r.s.asOwner(ctx, r.p, r.token, cmds)
	}
	if err == nil {
		// The request index is not partition-scoped, so it cannot be in
		// the MULTI; a zombie's entries are the changelog's, as true as
		// the new owner's.
		if reqs.Len() > 0 {
			_, err = reqs.Exec(ctx)
		}
	}
	if errors.Is(err, ErrFenced) {
		return err
	}
	if err != nil {
		return fmt.Errorf("store: restore partition %d: write: %w", r.p, err)
	}
	return nil
}

// Finish writes what is left and the checkpoint (next, history): from now
// on the partition's keys are trusted. It returns how many envelopes the
// restore wrote.
func (r *Restore) Finish(ctx context.Context, next int64, history string) (int, error) {
	if err := r.flush(ctx); err != nil {
		return r.total, err
	}
	if err := r.s.SetCheckpoint(ctx, r.p, r.token, next, history); err != nil {
		return r.total, err
	}
	if err := r.s.cfg.Client.SAdd(ctx, r.s.partitionsKey(), r.p).Err(); err != nil {
		return r.total, fmt.Errorf("store: restore partition %d: %w", r.p, err)
	}
	return r.total, nil
}
