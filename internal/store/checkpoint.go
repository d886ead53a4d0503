package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Checkpoint is a partition's checkpoint: how far its keys hold the effects
// of its input records, of which history, written by whom.
type Checkpoint struct {
	// Next is the offset of the partition's first input record whose
	// effects are not in Redis: where its consumer group resumes if the
	// batch that wrote it committed.
	Next int64
	// Owner is the fencing token of the member that may write the
	// partition (see Claim).
	Owner string
	// History identifies the Kafka history the keys belong to (see
	// History); keys of another history are never trusted.
	History string
}

// ckptFields are the checkpoint hash's fields, in the order HMGET reads
// them.
var ckptFields = []string{"next", "owner", "history"}

func (c *Checkpoint) fields() []any {
	return []any{"next", c.Next, "owner", c.Owner, "history", c.History}
}

// parseCheckpoint reads an HMGET of ckptFields; nil when there is none.
func parseCheckpoint(vals []any) (*Checkpoint, error) {
	if len(vals) != len(ckptFields) || vals[0] == nil {
		return nil, nil
	}
	next, _ := vals[0].(string)
	owner, _ := vals[1].(string)
	history, _ := vals[2].(string)
	n, err := strconv.ParseInt(next, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("unreadable checkpoint next=%q: %w", next, errBlob)
	}
	return &Checkpoint{Next: n, Owner: owner, History: history}, nil
}

// History is the identity of the history a partition's keys belong to:
// the Kafka cluster's id, the events topic's id, and the layout of the
// values the store writes (blobVersion). A Redis that outlived its
// cluster, or a topic deleted and re-created, has another; so has a Redis
// written by an esignflow whose values had another layout (layout 1: the
// schemas before recipients could bounce or be replaced), whose values
// this one cannot read — its partitions are restored from the changelog,
// which the Schema Registry lets any version read.
func History(clusterID, topicID string) string {
	return clusterID + "/" + topicID + "/layout" + strconv.Itoa(blobVersion)
}

// Check says whether ckpt lets b write: nil, a *BehindError or ErrFenced,
// as Apply decides. The processor's periodic check of idle partitions
// asks the same question without a batch.
func (b Batch) Check(ckpt *Checkpoint) error {
	switch {
	case ckpt == nil:
		return &BehindError{b.Partition, "no checkpoint (Redis lost the partition's keys or never had them)"}
	case ckpt.Owner != b.Token && generationOf(ckpt.Owner) >= generationOf(b.Token):
		// A later claim, or another of the same generation (Claim lets
		// it take over): we are fenced.
		return fmt.Errorf("%w: partition %d is owned by %q, not %q", ErrFenced, b.Partition, ckpt.Owner, b.Token)
	case ckpt.Owner != b.Token:
		// An owner of an earlier generation: Redis went back to before
		// our claim (a rollback), so nothing it says can be trusted.
		return &BehindError{b.Partition, fmt.Sprintf("checkpoint written by %q, before our claim %q (Redis went back in time)", ckpt.Owner, b.Token)}
	case ckpt.History != b.History:
		return &BehindError{b.Partition, fmt.Sprintf("checkpoint of another Kafka history (%s, not %s)", ckpt.History, b.History)}
	case ckpt.Next < b.Floor:
		return &BehindError{b.Partition, fmt.Sprintf("checkpoint at offset %d, behind the committed %d (Redis lost writes)", ckpt.Next, b.Floor)}
	}
	return nil
}

func (s *Store) ckptKey(p int32) string  { return s.part(p) + "ckpt" }
func (s *Store) ownerKey(p int32) string { return s.part(p) + "owner" }

// Token returns a fencing token for a member of consumer-group generation
// gen: the generation, which only grows and which Kafka fences with too,
// and a random part, so that two claims never share a token.
func Token(gen int32) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatInt(int64(gen), 10) + ":" + hex.EncodeToString(b[:])
}

// generationOf is the generation a token was made for; -1 when it is not
// a token.
func generationOf(token string) int64 {
	g, _, _ := strings.Cut(token, ":")
	n, err := strconv.ParseInt(g, 10, 32)
	if err != nil {
		return -1
	}
	return n
}

// Claim makes the holder of token (from Token) the partition's owner and
// returns the checkpoint as it was (nil when there was none). From now on
// every other member's Apply on the partition fails with ErrFenced (or, in
// the middle of its read and write, loses the compare-and-set and then
// fails so). ErrFenced when a member of a later generation claimed it
// already: the caller is the zombie.
func (s *Store) Claim(ctx context.Context, p int32, token string) (*Checkpoint, error) {
	vals, err := claimScript.Run(ctx, s.cfg.Client, []string{s.ckptKey(p), s.ownerKey(p)}, token, generationOf(token)).Slice()
	if err != nil {
		return nil, fmt.Errorf("store: claim partition %d: %w", p, err)
	}
	if len(vals) != 4 {
		return nil, fmt.Errorf("store: claim partition %d: unexpected answer %v", p, vals)
	}
	if ok, _ := vals[0].(int64); ok != 1 {
		owner, _ := vals[2].(string)
		return nil, fmt.Errorf("%w: partition %d was claimed by %s, of a later generation than %s", ErrFenced, p, owner, token)
	}
	old, err := parseCheckpoint(vals[1:])
	if err != nil {
		return nil, fmt.Errorf("store: claim partition %d: %w", p, err)
	}
	if err := s.cfg.Client.SAdd(ctx, s.partitionsKey(), p).Err(); err != nil {
		return nil, fmt.Errorf("store: claim partition %d: %w", p, err)
	}
	return old, nil
}

// claimScript: KEYS[1] the checkpoint, KEYS[2] the owner; ARGV[1] the
// token, ARGV[2] its generation. Unless the owner is of a later
// generation, it makes the token the owner, writes it into an existing
// checkpoint, and returns 1 and the checkpoint's previous fields; else 0
// and the owner.
var claimScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[2])
if cur then
  local g = tonumber(string.match(cur, '^(%-?%d+):'))
  if g and g > tonumber(ARGV[2]) then return {0, false, cur, false} end
end
redis.call('SET', KEYS[2], ARGV[1])
local old = redis.call('HMGET', KEYS[1], 'next', 'owner', 'history')
if old[1] then redis.call('HSET', KEYS[1], 'owner', ARGV[1]) end
return {1, old[1], old[2], old[3]}
`)

// errClaimLost says why a checkpoint was refused: the partition was
// claimed again while the caller restored it.
var errClaimLost = errors.New("claimed again meanwhile")

// SetCheckpoint writes the partition's checkpoint as (next, token,
// history), provided token is still the partition's owner: a member that
// lost the partition while it restored it must not write a checkpoint over
// the new owner's. ErrFenced otherwise.
func (s *Store) SetCheckpoint(ctx context.Context, p int32, token string, next int64, history string) error {
	ok, err := setCkptScript.Run(ctx, s.cfg.Client, []string{s.ckptKey(p), s.ownerKey(p)}, token, next, history).Int()
	if err != nil {
		return fmt.Errorf("store: checkpoint partition %d: %w", p, err)
	}
	if ok != 1 {
		return fmt.Errorf("%w: partition %d %w", ErrFenced, p, errClaimLost)
	}
	return nil
}

var setCkptScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'next', ARGV[2], 'owner', ARGV[1], 'history', ARGV[3])
return 1
`)

// Checkpoints returns the checkpoints of partitions (nil where there is
// none), for the processor's periodic check of the partitions it owns.
func (s *Store) Checkpoints(ctx context.Context, partitions []int32) ([]*Checkpoint, error) {
	cmds := make([]*redis.SliceCmd, len(partitions))
	_, err := s.cfg.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range partitions {
			cmds[i] = pipe.HMGet(ctx, s.ckptKey(p), ckptFields...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: checkpoints: %w", err)
	}
	out := make([]*Checkpoint, len(partitions))
	for i, c := range cmds {
		if out[i], err = parseCheckpoint(c.Val()); err != nil {
			return nil, fmt.Errorf("store: partition %d: %w", partitions[i], err)
		}
	}
	return out, nil
}

// Partitions returns the partitions the store has been claimed for, in
// no order: what the reconciler scans.
func (s *Store) Partitions(ctx context.Context) ([]int32, error) {
	vals, err := s.cfg.Client.SMembers(ctx, s.partitionsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("store: partitions: %w", err)
	}
	out := make([]int32, 0, len(vals))
	for _, v := range vals {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			continue
		}
		out = append(out, int32(n))
	}
	return out, nil
}
