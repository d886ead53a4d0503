package bench

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// redisCopy is a point-in-time copy of every key of a Redis database, by
// type, with its time to live: what a Redis restarted from an older RDB or
// AOF (appendfsync everysec loses up to a second or more), or a lagging
// replica promoted, holds. It is taken and put back by Lua scripts, so
// each is atomic, on a real server and on miniredis alike (miniredis's
// DUMP knows strings only).
type redisCopy struct {
	// args is the copy as the put-back script reads it: per key its name,
	// type, milliseconds to live (-1: none), item count, items.
	args []any
	keys int
}

// copyScript returns, per key: name, type, pttl, then the items (a
// string's value; a hash's fields and values; a zset's members and
// scores; a list's or a set's elements) as one array.
var copyScript = redis.NewScript(`
local out = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  local t = redis.call('TYPE', k)
  if type(t) == 'table' then t = t.ok end
  local items
  if t == 'string' then items = {redis.call('GET', k)}
  elseif t == 'hash' then items = redis.call('HGETALL', k)
  elseif t == 'zset' then items = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  elseif t == 'list' then items = redis.call('LRANGE', k, 0, -1)
  elseif t == 'set' then items = redis.call('SMEMBERS', k)
  end
  if items then
    out[#out+1] = {k, t, redis.call('PTTL', k), items}
  end
end
return out
`)

// putBackScript deletes every key and writes the copy in ARGV.
var putBackScript = redis.NewScript(`
for _, k in ipairs(redis.call('KEYS', '*')) do redis.call('DEL', k) end
local i = 1
local function chunked(cmd, k, items, step)
  for j = 1, #items, step do
    local args = {}
    for x = j, math.min(j + step - 1, #items) do args[#args+1] = items[x] end
    redis.call(cmd, k, unpack(args))
  end
end
while i <= #ARGV do
  local k, t, ttl, n = ARGV[i], ARGV[i+1], tonumber(ARGV[i+2]), tonumber(ARGV[i+3])
  local items = {}
  for x = 1, n do items[x] = ARGV[i+3+x] end
  i = i + 4 + n
  if t == 'string' then redis.call('SET', k, items[1])
  elseif t == 'hash' then chunked('HSET', k, items, 1000)
  elseif t == 'zset' then
    local sm = {}
    for x = 1, #items, 2 do sm[#sm+1] = items[x+1]; sm[#sm+1] = items[x] end
    chunked('ZADD', k, sm, 1000)
  elseif t == 'list' then chunked('RPUSH', k, items, 1000)
  elseif t == 'set' then chunked('SADD', k, items, 1000)
  end
  if ttl > 0 then redis.call('PEXPIRE', k, ttl) end
end
return 1
`)

// copyRedis takes a copy of rc's database.
func copyRedis(ctx context.Context, rc redis.Scripter) (*redisCopy, error) {
	v, err := copyScript.Run(ctx, rc, nil).Slice()
	if err != nil {
		return nil, fmt.Errorf("copy redis: %w", err)
	}
	c := &redisCopy{keys: len(v)}
	for _, kv := range v {
		f, ok := kv.([]any)
		if !ok || len(f) != 4 {
			return nil, fmt.Errorf("copy redis: unexpected entry %T", kv)
		}
		items, _ := f[3].([]any)
		ttl, _ := f[2].(int64)
		c.args = append(c.args, f[0], f[1], strconv.FormatInt(ttl, 10), strconv.Itoa(len(items)))
		c.args = append(c.args, items...)
	}
	return c, nil
}

// putBack replaces rc's database with the copy, atomically.
func (c *redisCopy) putBack(ctx context.Context, rc redis.Scripter) error {
	if err := putBackScript.Run(ctx, rc, nil, c.args...).Err(); err != nil {
		return fmt.Errorf("put redis back: %w", err)
	}
	return nil
}
