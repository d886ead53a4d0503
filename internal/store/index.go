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
// when Redis has nothing newer for it, in one round trip per call. Pending
// audit entries of ignored events are not on the topic and are not
// restored.
func (s *Store) Restore(ctx context.Context, states []schemas.EnvelopeState) error {
	if len(states) == 0 {
		return nil
	}
	keys := []string{s.activeKey()}
	args := []any{}
	for _, st := range states {
		e := envelope.Envelope{State: st}
		blob, err := s.codec.encodeEnvelope(e)
		if err != nil {
			return err
		}
		score := ""
		if !e.Terminal() {
			score = strconv.FormatInt(st.UpdatedAt.UnixMilli(), 10)
		}
		keys = append(keys, s.envKey(st.EnvelopeID))
		args = append(args, e.Rev(), blob, score, st.EnvelopeID)
		if st.RequestID != nil {
			keys = append(keys, s.reqKey(*st.RequestID))
		} else {
			keys = append(keys, "")
		}
	}
	if err := restoreScript.Run(ctx, s.cfg.Client, keys, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("store: restore %d envelopes: %w", len(states), err)
	}
	return nil
}

var restoreScript = redis.NewScript(`
local n = (#KEYS - 1) / 2
for i = 1, n do
  local k = KEYS[2 * i]
  local b = (i - 1) * 4
  local cur = tonumber(redis.call('HGET', k, 'rev') or '0')
  if cur < tonumber(ARGV[b + 1]) then
    redis.call('HSET', k, 'rev', ARGV[b + 1], 's', ARGV[b + 2])
    if ARGV[b + 3] == '' then
      redis.call('ZREM', KEYS[1], ARGV[b + 4])
    else
      redis.call('ZADD', KEYS[1], ARGV[b + 3], ARGV[b + 4])
    end
    if KEYS[2 * i + 1] ~= '' then
      redis.call('SET', KEYS[2 * i + 1], ARGV[b + 4])
    end
  end
end
return 0
`)

// Envelope returns an envelope's stored state; false when there is none.
func (s *Store) Envelope(ctx context.Context, id string) (envelope.Envelope, bool, error) {
	raw, err := s.cfg.Client.HGet(ctx, s.envKey(id), "s").Bytes()
	if errors.Is(err, redis.Nil) {
		return envelope.Envelope{}, false, nil
	}
	if err != nil {
		return envelope.Envelope{}, false, fmt.Errorf("store: envelope %s: %w", id, err)
	}
	e, err := s.codec.decodeEnvelope(raw)
	if err != nil {
		return envelope.Envelope{}, false, fmt.Errorf("store: envelope %s: %w", id, err)
	}
	return e, true, nil
}

// EnvelopesForRequests returns, in one round trip, the envelope id created
// for each request id that has one.
func (s *Store) EnvelopesForRequests(ctx context.Context, requestIDs []string) (map[string]string, error) {
	out := map[string]string{}
	if len(requestIDs) == 0 {
		return out, nil
	}
	keys := make([]string, len(requestIDs))
	for i, id := range requestIDs {
		keys[i] = s.reqKey(id)
	}
	vals, err := s.cfg.Client.MGet(ctx, keys...).Result()
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
	pipe := s.cfg.Client.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGet(ctx, s.envKey(id), "s")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: read envelopes: %w", err)
	}
	out := make(map[string]envelope.Envelope, len(ids))
	for i, c := range cmds {
		raw, err := c.Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: envelope %s: %w", ids[i], err)
		}
		e, err := s.codec.decodeEnvelope(raw)
		if err != nil {
			return nil, fmt.Errorf("store: envelope %s: %w", ids[i], err)
		}
		out[ids[i]] = e
	}
	return out, nil
}

// Client returns the store's Redis connection, for components that keep
// their own keys beside the store's (leases, idempotency keys).
func (s *Store) Client() redis.Cmdable { return s.cfg.Client }

// Key returns name under the store's prefix.
func (s *Store) Key(name string) string { return s.cfg.Prefix + name }
