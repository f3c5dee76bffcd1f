--[[ spent.lua (read-only): what a key has spent and holds reserved, for budget homeostasis.

KEYS: the nine keys of admit.lua's key section (only 3-9 are read).
ARGV[1] = JSON {now?}
Returns JSON {day, month, total, pending, task_nusd, task_tok} (nano-USD and tokens; pending sums
count live reservations only: expired ones are subtracted here, and pruned by the next admit).
]]

local p = cjson.decode(ARGV[1])
local now = clock_ms(p)  -- clock_ms, num, part: lib.lua

-- a running sum minus the expired entries that still sit in the zset
local function live(zkey, sum, i)
  local old = redis.call('ZRANGEBYSCORE', zkey, '-inf', now)
  for n = 1, #old do sum = sum - part(old[n], i) end
  return sum
end

local t = redis.call('HMGET', KEYS[8], 'nusd', 'tok', 'pnusd', 'ptok')
return cjson.encode({
  day = num(redis.call('HGET', KEYS[5], 'nusd')),
  month = num(redis.call('HGET', KEYS[6], 'nusd')),
  total = num(redis.call('GET', KEYS[7])),
  pending = live(KEYS[3], num(redis.call('HGET', KEYS[4], 'nusd')), 1),
  task_nusd = num(t[1]) + live(KEYS[9], num(t[3]), 1),
  task_tok = num(t[2]) + live(KEYS[9], num(t[4]), 2),
})
