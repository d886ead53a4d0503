// Package ratebudget is a token bucket held in Redis, shared by every
// process that takes from it: one budget of calls per provider account,
// however many reconciler replicas spend it.
//
// A bucket is one Redis key (a hash), updated by one Lua script, so it
// works on Redis Cluster and every take is atomic. The script reads the
// clock with Redis TIME, so the replicas' own clocks do not matter: they
// may drift apart by seconds and still share one refill rate.
//
// Takes are reservations, as with golang.org/x/time/rate's Reserve: Take
// always takes its tokens, letting the bucket go into debt, and says how
// long the caller must wait before it may spend them. So callers are
// served in the order they asked, none starves, and a caller that waits
// asks Redis once, not in a retry loop. A reservation given up (the
// caller's context ended while it waited) is not refunded: the budget can
// only be under-spent, never over-spent.
package ratebudget

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable means the bucket could not be read or written (Redis is
// down or refused the script). No token was taken and none should be
// spent: a caller that went ahead without the shared budget could spend
// it once per replica.
var ErrUnavailable = errors.New("ratebudget: bucket unavailable")

// Config configures a Bucket. Client, Key and Rate are required.
type Config struct {
	// Client is the Redis connection (a *redis.Client, a
	// *redis.ClusterClient or a pipeline-less redis.Cmdable).
	Client redis.Scripter
	// Key is the bucket's Redis key: every process that uses the same key
	// shares one budget.
	Key string
	// Rate is how many tokens are added per second.
	Rate float64
	// Burst is how many tokens the bucket holds when full, default 1. A
	// bucket no one used (or whose key was lost) is full.
	Burst int
}

// Validate reports the first missing or invalid field.
func (c Config) Validate() error {
	switch {
	case c.Client == nil || c.Key == "":
		return errors.New("ratebudget: Client and Key are required")
	case !(c.Rate > 0) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("ratebudget: Rate %v: must be a positive number of tokens per second", c.Rate)
	case c.Burst < 0:
		return fmt.Errorf("ratebudget: Burst %d: must not be negative", c.Burst)
	}
	return nil
}

// Bucket is one shared token bucket. Safe for concurrent use; it holds no
// state of its own, so any number of Buckets, in any processes, with the
// same Key and configuration are one bucket.
type Bucket struct {
	cfg Config
}

// New returns the Bucket cfg describes. It makes no call to Redis.
func New(cfg Config) (*Bucket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Burst == 0 {
		cfg.Burst = 1
	}
	return &Bucket{cfg: cfg}, nil
}

// Key returns the bucket's Redis key.
func (b *Bucket) Key() string { return b.cfg.Key }

// takeScript updates the bucket and takes tokens from it.
//
// KEYS[1] is a hash: mt, the tokens in millionths (negative: a debt of
// reservations), and ms, the Redis time it was computed at, in Unix
// milliseconds. Both are stored as integers, which Lua prints exactly
// below 1e14 in every Redis and in miniredis.
//
// ARGV: rate (tokens per second, so millionths per microsecond), burst
// (tokens), n (tokens to take), hold (milliseconds during which no token
// is to be granted from now on: 0 for none).
//
// Returns {wait in microseconds, tokens left in millionths}. The key
// expires once it would be full again (a missing key reads as full), so
// an idle budget leaves nothing behind.
//
// A clock that went back (a failover to a server whose clock is behind)
// refills nothing until it catches up, rather than refilling twice.
var takeScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local full = tonumber(ARGV[2]) * 1000000
local n = tonumber(ARGV[3]) * 1000000
local hold = tonumber(ARGV[4])
local v = redis.call('HMGET', KEYS[1], 'mt', 'ms')
local mt = tonumber(v[1])
local at = tonumber(v[2])
if mt == nil or at == nil then
  mt = full
  at = now
end
if now > at then
  mt = math.min(full, mt + math.floor((now - at) * 1000 * rate))
  at = now
end
if hold > 0 then
  mt = math.min(mt, -math.floor(hold * 1000 * rate))
end
mt = mt - n
local wait = 0
if mt < 0 then
  wait = math.ceil(-mt / rate)
end
redis.call('HSET', KEYS[1], 'mt', mt, 'ms', at)
redis.call('PEXPIRE', KEYS[1], math.min(math.ceil((full - mt) / rate / 1000) + 1000, 1e13))
return {wait, mt}
`)

// Take takes n tokens (n ≥ 0) and returns how long the caller must wait
// before spending them: 0 when the bucket held them, otherwise the time
// the bucket takes to refill the debt this take left. The tokens are taken
// either way, so a caller that goes on to spend them must wait that long
// first, and one that does not is simply under budget. n may exceed the
// burst (the wait then covers the difference). ErrUnavailable when Redis
// could not be asked; nothing was taken then.
func (b *Bucket) Take(ctx context.Context, n int) (time.Duration, error) {
	wait, _, err := b.run(ctx, n, 0)
	return wait, err
}

// Wait takes n tokens and waits until they may be spent. It returns
// whether it had to wait, ctx's error when ctx ended first (the tokens
// are not given back), and ErrUnavailable when Redis could not be asked.
func (b *Bucket) Wait(ctx context.Context, n int) (waited bool, err error) {
	d, err := b.Take(ctx, n)
	if err != nil || d <= 0 {
		return false, err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return true, ctx.Err()
	case <-t.C:
		return true, nil
	}
}

// Hold empties the bucket for d from now: no take is granted a token
// before d has passed, in any process. It is what a provider's "retry
// after d" answer does to its account's budget, so that every replica
// pauses, not only the one that was told.
func (b *Bucket) Hold(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	_, _, err := b.run(ctx, 0, d)
	return err
}

// Tokens returns the tokens the bucket holds now (negative: reserved
// ahead), without taking any.
func (b *Bucket) Tokens(ctx context.Context) (float64, error) {
	_, mt, err := b.run(ctx, 0, 0)
	return float64(mt) / 1e6, err
}

func (b *Bucket) run(ctx context.Context, n int, hold time.Duration) (time.Duration, int64, error) {
	if n < 0 {
		return 0, 0, fmt.Errorf("ratebudget: take %d tokens: must not be negative", n)
	}
	holdMs := int64(0)
	if hold > 0 {
		holdMs = int64(math.Ceil(float64(hold) / float64(time.Millisecond)))
	}
	res, err := takeScript.Run(ctx, b.cfg.Client, []string{b.cfg.Key},
		strconv.FormatFloat(b.cfg.Rate, 'g', -1, 64), b.cfg.Burst, n, holdMs).Int64Slice()
	if err != nil {
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		return 0, 0, fmt.Errorf("%w: %s: %w", ErrUnavailable, b.cfg.Key, err)
	}
	if len(res) != 2 {
		return 0, 0, fmt.Errorf("%w: %s: script answered %v", ErrUnavailable, b.cfg.Key, res)
	}
	return time.Duration(res[0]) * time.Microsecond, res[1], nil
}
