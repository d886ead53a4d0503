package store

import (
	"context"
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
// restore outside them.
type Restore struct {
	s     *Store
	p     int32
	token string
	enc   *encoder
	pipe  redis.Pipeliner
	n     int // envelopes in pipe
	total int
}

// BeginRestore starts restoring partition p as the owner of token (from
// Claim). ErrFenced when the partition has been claimed again since.
func (s *Store) BeginRestore(ctx context.Context, p int32, token string) (*Restore, error) {
	if err := s.dropCheckpoint(ctx, p, token); err != nil {
		return nil, err
	}
	if err := s.deletePartition(ctx, p); err != nil {
		return nil, err
	}
	return &Restore{s: s, p: p, token: token, enc: s.codec.encoder(), pipe: s.cfg.Client.Pipeline()}, nil
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

// deletePartition deletes every key of p but its owner: on a
// Redis Cluster, on the node that holds p's slot.
func (s *Store) deletePartition(ctx context.Context, p int32) error {
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
		err := node.Unlink(ctx, batch...).Err()
		batch = batch[:0]
		return err
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
// reconciler's index and the request index. Writes go out restoreChunk at
// a time.
func (r *Restore) Put(ctx context.Context, e *envelope.Envelope) error {
	val, err := r.enc.envelope(e)
	if err != nil {
		return err
	}
	id := e.State.EnvelopeID
	r.pipe.Set(ctx, r.s.envKey(r.p, id), val, 0)
	if !e.Terminal() {
		r.pipe.ZAdd(ctx, r.s.activeKey(r.p), redis.Z{Score: float64(e.State.UpdatedAt.UnixMilli()), Member: id})
	}
	if e.State.RequestID != nil && *e.State.RequestID != "" {
		r.pipe.HSet(ctx, r.s.reqKey(RequestKey{Tenant: deref(e.State.Tenant), ID: *e.State.RequestID}), "env", id, "p", r.p)
	}
	r.total++
	if r.n++; r.n >= restoreChunk {
		return r.flush(ctx)
	}
	return nil
}

func (r *Restore) flush(ctx context.Context) error {
	if r.n == 0 {
		return nil
	}
	_, err := r.pipe.Exec(ctx)
	r.n = 0
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
