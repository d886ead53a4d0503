package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// MarkMissing records, in one round trip, what the reconciler learnt from
// a round of polls: each of missing is not known to its provider (the
// first time is kept: HSETNX), each of found is known again (its record is
// deleted). It returns, for each of missing, when its provider first did
// not know it.
//
// The records live in a hash per partition, esf:{pN}:missing (envelope id
// → Unix milliseconds), beside the index they qualify, so they share the
// partition's Redis Cluster slot. A batch's write deletes the record of an
// envelope that becomes Settled, and a restore drops the whole hash: it is
// not in the changelog. Losing a record only delays a verdict — the
// envelope's time unknown starts again at its next not-found answer — it
// never makes one sooner.
func (s *Store) MarkMissing(ctx context.Context, at time.Time, missing, found []Stale) (map[string]time.Time, error) {
	out := make(map[string]time.Time, len(missing))
	if len(missing) == 0 && len(found) == 0 {
		return out, nil
	}
	stamp := strconv.FormatInt(at.UnixMilli(), 10)
	gets := make([]*redis.StringCmd, len(missing))
	_, err := s.cfg.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, m := range missing {
			pipe.HSetNX(ctx, s.missingKey(m.Partition), m.EnvelopeID, stamp)
			gets[i] = pipe.HGet(ctx, s.missingKey(m.Partition), m.EnvelopeID)
		}
		byPart := map[int32][]string{}
		for _, f := range found {
			byPart[f.Partition] = append(byPart[f.Partition], f.EnvelopeID)
		}
		for p, ids := range byPart {
			pipe.HDel(ctx, s.missingKey(p), ids...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: not-found records: %w", err)
	}
	for i, g := range gets {
		ms, err := strconv.ParseInt(g.Val(), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("store: not-found record of %s: %q: %w", missing[i].EnvelopeID, g.Val(), err)
		}
		out[missing[i].EnvelopeID] = time.UnixMilli(ms).UTC()
	}
	return out, nil
}

// Missing returns, in one round trip, when the provider first did not know
// each of envs, for those with a not-found record (MarkMissing).
func (s *Store) Missing(ctx context.Context, envs []Stale) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	if len(envs) == 0 {
		return out, nil
	}
	cmds := make([]*redis.StringCmd, len(envs))
	_, err := s.cfg.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, e := range envs {
			cmds[i] = pipe.HGet(ctx, s.missingKey(e.Partition), e.EnvelopeID)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: not-found records: %w", err)
	}
	for i, c := range cmds {
		if c.Err() != nil {
			continue
		}
		if ms, err := strconv.ParseInt(c.Val(), 10, 64); err == nil {
			out[envs[i].EnvelopeID] = time.UnixMilli(ms).UTC()
		}
	}
	return out, nil
}
