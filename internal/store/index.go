package store

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/envelope"
)

// RequestKey is a signing request's identity: request ids are unique per
// tenant, not globally.
type RequestKey struct {
	Tenant, ID string
}

// Scoped is the request's id scoped by its tenant when it has one: the
// idempotency key it is created with at its provider, so that two tenants'
// requests with the same id are two envelopes.
func (k RequestKey) Scoped() string {
	if k.Tenant == "" {
		return k.ID
	}
	return strconv.Itoa(len(k.Tenant)) + ":" + k.Tenant + ":" + k.ID
}

// RequestEntry is what the request index holds for one request.
type RequestEntry struct {
	// EnvelopeID is the envelope the request became, "" while it is
	// being created.
	EnvelopeID string
	// Partition is the events partition the envelope's state lives in.
	Partition int32
	// Hash identifies the request's content, as first claimed. A restore
	// rebuilds it from the envelope's state (EnvelopeState.RequestHash,
	// which the changelog carries); it is "" only for an entry rebuilt
	// from a state without one: an envelope created before the create's
	// event carried the hash.
	Hash string
}

// Requests returns, in one round trip, the index entry of each request
// that has one.
func (s *Store) Requests(ctx context.Context, keys []RequestKey) (map[RequestKey]RequestEntry, error) {
	out := map[RequestKey]RequestEntry{}
	if len(keys) == 0 {
		return out, nil
	}
	cmds := make([]*redis.SliceCmd, len(keys))
	_, err := s.cfg.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = pipe.HMGet(ctx, s.reqKey(k), "env", "p", "h")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: requests: %w", err)
	}
	for i, c := range cmds {
		if e, ok := requestEntry(c.Val()); ok {
			out[keys[i]] = e
		}
	}
	return out, nil
}

func requestEntry(vals []any) (RequestEntry, bool) {
	var e RequestEntry
	if len(vals) != 3 || (vals[0] == nil && vals[2] == nil) {
		return e, false
	}
	e.EnvelopeID, _ = vals[0].(string)
	if p, ok := vals[1].(string); ok {
		n, _ := strconv.ParseInt(p, 10, 32)
		e.Partition = int32(n)
	}
	e.Hash, _ = vals[2].(string)
	return e, true
}

// ClaimRequests records, for each request not claimed before, the hash of
// its content (SET NX semantics), and returns every request's entry after
// the claim, in one round trip: an entry whose Hash is not the one given
// was claimed first with other content — a conflicting request.
func (s *Store) ClaimRequests(ctx context.Context, keys []RequestKey, hashes []string) ([]RequestEntry, error) {
	cmds := make([]*redis.SliceCmd, len(keys))
	_, err := s.cfg.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, k := range keys {
			pipe.HSetNX(ctx, s.reqKey(k), "h", hashes[i])
			cmds[i] = pipe.HMGet(ctx, s.reqKey(k), "env", "p", "h")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: claim requests: %w", err)
	}
	out := make([]RequestEntry, len(keys))
	for i, c := range cmds {
		out[i], _ = requestEntry(c.Val())
	}
	return out, nil
}

// Envelope returns an envelope's stored state; false when there is none.
func (s *Store) Envelope(ctx context.Context, p int32, id string) (envelope.Envelope, bool, error) {
	envs, err := s.Envelopes(ctx, p, []string{id})
	if err != nil {
		return envelope.Envelope{}, false, err
	}
	e, ok := envs[id]
	return e, ok, nil
}

// Envelopes returns the stored state of each id of partition p in one
// round trip; ids without state are absent from the map.
func (s *Store) Envelopes(ctx context.Context, p int32, ids []string) (map[string]envelope.Envelope, error) {
	envs := make(map[string]envelope.Envelope, len(ids))
	if len(ids) == 0 {
		return envs, nil
	}
	vals, err := s.cfg.Client.MGet(ctx, keysOf(ids, func(id string) string { return s.envKey(p, id) })...).Result()
	if err != nil {
		return nil, fmt.Errorf("store: read envelopes: %w", err)
	}
	return envs, s.decodeEnvelopes(ids, vals, envs)
}

// EnvelopesOf returns the stored state of each of stale's envelopes, in
// one round trip (an MGET per partition); those without state are absent
// from the map.
func (s *Store) EnvelopesOf(ctx context.Context, stale []Stale) (map[string]envelope.Envelope, error) {
	envs := make(map[string]envelope.Envelope, len(stale))
	byPart := map[int32][]string{}
	for _, st := range stale {
		byPart[st.Partition] = append(byPart[st.Partition], st.EnvelopeID)
	}
	cmds := map[int32]*redis.SliceCmd{}
	_, err := s.cfg.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for p, ids := range byPart {
			cmds[p] = pipe.MGet(ctx, keysOf(ids, func(id string) string { return s.envKey(p, id) })...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read envelopes: %w", err)
	}
	for p, c := range cmds {
		if err := s.decodeEnvelopes(byPart[p], c.Val(), envs); err != nil {
			return nil, err
		}
	}
	return envs, nil
}

// decodeEnvelopes decodes an MGET's answer for ids into envs.
func (s *Store) decodeEnvelopes(ids []string, vals []any, envs map[string]envelope.Envelope) error {
	for i, v := range vals {
		b, ok := v.(string)
		if !ok {
			continue
		}
		var e envelope.Envelope
		if err := s.codec.decodeEnvelope([]byte(b), &e); err != nil {
			return fmt.Errorf("store: envelope %s: %w", ids[i], err)
		}
		envs[ids[i]] = e
	}
	return nil
}

// Settled reports whether e needs nothing more from its provider: its
// status is terminal and carries no unresolved conflict. The reconciler's
// index (Stale) holds every envelope that is not settled — those in
// flight, and terminal ones whose sources disagreed (COMPLETED then
// DECLINED), which only the provider's answer to a poll settles
// (envelope.Apply); a batch's write and a restore both follow this rule,
// so a conflicted envelope stays polled until its answer comes.
func Settled(e envelope.Envelope) bool { return e.Terminal() && e.State.Conflict == nil }

// Stale is one envelope that is not settled, the partition it lives in and
// when it was last updated.
type Stale struct {
	EnvelopeID string
	Partition  int32
	UpdatedAt  time.Time
}

// Stale returns up to limit envelopes that are not Settled, last updated
// before cutoff, oldest first, across every partition.
func (s *Store) Stale(ctx context.Context, cutoff time.Time, limit int) ([]Stale, error) {
	parts, err := s.Partitions(ctx)
	if err != nil {
		return nil, err
	}
	cmds := make([]*redis.ZSliceCmd, len(parts))
	_, err = s.cfg.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range parts {
			cmds[i] = pipe.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
				Key: s.activeKey(p), ByScore: true, Start: "-inf", Stop: strconv.FormatInt(cutoff.UnixMilli(), 10), Count: int64(limit),
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: stale scan: %w", err)
	}
	var out []Stale
	for i, c := range cmds {
		for _, z := range c.Val() {
			out = append(out, Stale{EnvelopeID: z.Member.(string), Partition: parts[i], UpdatedAt: time.UnixMilli(int64(z.Score)).UTC()})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].UpdatedAt.Before(out[j].UpdatedAt) })
	return out[:min(len(out), limit)], nil
}

// Active returns how many envelopes are not Settled (in flight, or
// terminal with a conflict), across every partition.
func (s *Store) Active(ctx context.Context) (int64, error) {
	parts, err := s.Partitions(ctx)
	if err != nil {
		return 0, err
	}
	cmds := make([]*redis.IntCmd, len(parts))
	_, err = s.cfg.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range parts {
			cmds[i] = pipe.ZCard(ctx, s.activeKey(p))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: active count: %w", err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// Seed writes envelope states into partition p as a restore would, with
// their index entries, but no checkpoint: for tests and tools that need a
// store holding envelopes without running the processor (a processor that
// claims p restores it from its changelog instead of trusting them).
func (s *Store) Seed(ctx context.Context, p int32, envs ...envelope.Envelope) error {
	r := &Restore{s: s, p: p, enc: s.codec.encoder(), reqs: s.cfg.Client.Pipeline()}
	for i := range envs {
		if err := r.Put(ctx, &envs[i]); err != nil {
			return err
		}
	}
	if err := r.flush(ctx); err != nil {
		return err
	}
	if err := s.cfg.Client.SAdd(ctx, s.partitionsKey(), p).Err(); err != nil {
		return fmt.Errorf("store: seed partition %d: %w", p, err)
	}
	return nil
}

// Client returns the store's Redis connection, for components that keep
// their own keys beside the store's (leases, idempotency keys).
func (s *Store) Client() redis.Cmdable { return s.cfg.Client }

// Key returns name under the store's prefix.
func (s *Store) Key(name string) string { return s.cfg.Prefix + name }

// FailedEnvelopeID is the id of the envelope the processor records for a
// request the provider refused: it never had a provider id, and the request
// index must still say what became of the request.
func FailedEnvelopeID(requestID string) string { return "failed:" + requestID }
