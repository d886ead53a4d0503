package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/esignflow/esignflow/internal/envelope"
	"github.com/esignflow/esignflow/schemas"
)

// HasMarker reports whether the marker key exists. Missing means Redis is
// new or has lost its data: restore before applying events.
func (s *Store) HasMarker(ctx context.Context) (bool, error) {
	n, err := s.cfg.Client.Exists(ctx, s.markerKey()).Result()
	if err != nil {
		return false, fmt.Errorf("store: marker: %w", err)
	}
	return n == 1, nil
}

// SetMarker records that the state in Redis is complete. The processor
// calls it after a restore; Apply refuses to write without it.
func (s *Store) SetMarker(ctx context.Context) error {
	if err := s.cfg.Client.Set(ctx, s.markerKey(), s.cfg.Now().UTC().Format(time.RFC3339), 0).Err(); err != nil {
		return fmt.Errorf("store: set marker: %w", err)
	}
	return nil
}

// Restore writes envelope states recovered from the status topic, each only
// when Redis has nothing newer for it, in two round trips per call when no
// other writer interferes: a watched read and one MULTI/EXEC, as Apply
// writes but without its marker check. Pending audit entries of ignored
// events are not on the topic and are not restored.
func (s *Store) Restore(ctx context.Context, states []schemas.EnvelopeState) error {
	if len(states) == 0 {
		return nil
	}
	latest := make(map[string]schemas.EnvelopeState, len(states))
	var ids []string
	for _, st := range states {
		prev, ok := latest[st.EnvelopeID]
		if !ok {
			ids = append(ids, st.EnvelopeID)
		}
		if !ok || st.AuditSeq > prev.AuditSeq {
			latest[st.EnvelopeID] = st
		}
	}
	var stats Stats
	err := s.optimistic(ctx, &stats, func(tx *redis.Tx) (*writePlan, error) {
		keys := keysOf(ids, s.envKey)
		pipe := watched(ctx, tx, keys)
		vals := pipe.MGet(ctx, keys...)
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, err
		}
		cur := make(map[string]envelope.Envelope, len(ids))
		if err := s.decodeEnvelopes(ids, vals.Val(), cur); err != nil {
			return nil, err
		}
		plan := &writePlan{reqs: map[string]string{}}
		enc := s.codec.encoder()
		for i, id := range ids {
			st := latest[id]
			if e, ok := cur[id]; ok && e.Rev() >= st.AuditSeq {
				continue
			}
			w := &working{id: id, key: keys[i], env: envelope.Envelope{State: st}}
			var err error
			if w.value, err = enc.envelope(&w.env); err != nil {
				return nil, err
			}
			plan.envs = append(plan.envs, w)
			if st.RequestID != nil {
				plan.reqs[*st.RequestID] = id
			}
		}
		return plan, nil
	})
	if err != nil {
		return fmt.Errorf("store: restore %d envelopes: %w", len(ids), err)
	}
	return nil
}

// Envelope returns an envelope's stored state; false when there is none.
func (s *Store) Envelope(ctx context.Context, id string) (envelope.Envelope, bool, error) {
	envs, err := s.Envelopes(ctx, []string{id})
	if err != nil {
		return envelope.Envelope{}, false, err
	}
	e, ok := envs[id]
	return e, ok, nil
}

// EnvelopesForRequests returns, in one round trip, the envelope id created
// for each request id that has one.
func (s *Store) EnvelopesForRequests(ctx context.Context, requestIDs []string) (map[string]string, error) {
	out := map[string]string{}
	if len(requestIDs) == 0 {
		return out, nil
	}
	vals, err := s.cfg.Client.MGet(ctx, keysOf(requestIDs, s.reqKey)...).Result()
	if err != nil {
		return nil, fmt.Errorf("store: requests: %w", err)
	}
	for i, v := range vals {
		if env, ok := v.(string); ok {
			out[requestIDs[i]] = env
		}
	}
	return out, nil
}

// Stale is one non-terminal envelope and when it was last updated.
type Stale struct {
	EnvelopeID string
	UpdatedAt  time.Time
}

// Stale returns up to limit non-terminal envelopes last updated before
// cutoff, oldest first.
func (s *Store) Stale(ctx context.Context, cutoff time.Time, limit int) ([]Stale, error) {
	zs, err := s.cfg.Client.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
		Key: s.activeKey(), ByScore: true, Start: "-inf", Stop: strconv.FormatInt(cutoff.UnixMilli(), 10), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("store: stale scan: %w", err)
	}
	out := make([]Stale, len(zs))
	for i, z := range zs {
		out[i] = Stale{EnvelopeID: z.Member.(string), UpdatedAt: time.UnixMilli(int64(z.Score)).UTC()}
	}
	return out, nil
}

// Active returns how many envelopes are not terminal.
func (s *Store) Active(ctx context.Context) (int64, error) {
	n, err := s.cfg.Client.ZCard(ctx, s.activeKey()).Result()
	if err != nil {
		return 0, fmt.Errorf("store: active count: %w", err)
	}
	return n, nil
}

// Envelopes returns the stored state of each id in one round trip; ids
// without state are absent from the map.
func (s *Store) Envelopes(ctx context.Context, ids []string) (map[string]envelope.Envelope, error) {
	envs := make(map[string]envelope.Envelope, len(ids))
	if len(ids) == 0 {
		return envs, nil
	}
	vals, err := s.cfg.Client.MGet(ctx, keysOf(ids, s.envKey)...).Result()
	if err != nil {
		return nil, fmt.Errorf("store: read envelopes: %w", err)
	}
	return envs, s.decodeEnvelopes(ids, vals, envs)
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

// Client returns the store's Redis connection, for components that keep
// their own keys beside the store's (leases, idempotency keys).
func (s *Store) Client() redis.Cmdable { return s.cfg.Client }

// Key returns name under the store's prefix.
func (s *Store) Key(name string) string { return s.cfg.Prefix + name }

// FailedEnvelopeID is the id of the envelope the processor records for a
// request the provider refused: it never had a provider id, and the request
// index must still say what became of the request.
func FailedEnvelopeID(requestID string) string { return "failed:" + requestID }
