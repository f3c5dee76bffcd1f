--[[ settle.lua: turn a reservation into real usage (settle) or give it back (release).

Units as in admit.lua. Sections may be given together (one Redis node) or one per call (Cluster);
each section touches only keys under one hash tag.

KEYS, key section (when p.k): the nine keys of admit.lua's key section.
KEYS, deployment section (when p.d), next: rate window, tokens in window, in flight.
KEYS, agent section (when p.a), next: usage of the day (hash), usage of the month (hash).

ARGV[1] = JSON {k?, d?, a?}
  k = {w, nw, tok, p, t?, drop?, use?}   w/p/t: the reservation's members (admit.lua)
  d = {w, nw, tok, rid, drop?}            nw: the window member rewritten to hold `tok` tokens
  a = {use, name}
  use = {model, inp, out, nusd, exp_d, exp_m, tot_ttl?, task_ttl?}  (exp_*: unix seconds)
  tok: the tokens the window entry should now hold (actual, or 0 on release);
  drop: remove the window entry altogether (the request slot is given back too).
  Without `use` (release) no usage is recorded.
]]

local p = cjson.decode(ARGV[1])  -- part: lib.lua

-- replace a window entry's tokens by `tok` (same admission time), or drop it
local function rewrite_window(zkey, skey, member, new_member, tok, drop)
  if not member then return end
  local score = redis.call('ZSCORE', zkey, member)
  if not score then return end -- already left the window: nothing to correct there
  redis.call('ZREM', zkey, member)
  local delta = -part(member, 1)
  if not drop then
    redis.call('ZADD', zkey, score, new_member)
    delta = delta + tok
  end
  if delta ~= 0 then redis.call('INCRBY', skey, delta) end
end

local function add_usage(hkey, use, expire_at)
  local m = 'm|' .. use.model .. '|'
  for _, f in ipairs({{'req', 1}, {'in', use.inp}, {'out', use.out}, {'nusd', use.nusd}}) do
    if f[2] ~= 0 then
      redis.call('HINCRBY', hkey, f[1], f[2])
      redis.call('HINCRBY', hkey, m .. f[1], f[2])
    end
  end
  redis.call('EXPIREAT', hkey, expire_at)
end

local base = 0
local k = p.k
if k then
  base = 9
  rewrite_window(KEYS[1], KEYS[2], k.w, k.nw, k.tok, k.drop)
  if k.p and redis.call('ZREM', KEYS[3], k.p) == 1 then
    redis.call('HINCRBY', KEYS[4], 'nusd', 0 - part(k.p, 1))
  end
  if k.t and redis.call('ZREM', KEYS[9], k.t) == 1 then
    redis.call('HINCRBY', KEYS[8], 'pnusd', 0 - part(k.t, 1))
    redis.call('HINCRBY', KEYS[8], 'ptok', 0 - part(k.t, 2))
  end
  local use = k.use
  if use then
    add_usage(KEYS[5], use, use.exp_d)
    add_usage(KEYS[6], use, use.exp_m)
    if use.nusd ~= 0 then redis.call('INCRBY', KEYS[7], use.nusd) end
    if redis.call('EXISTS', KEYS[7]) == 1 then redis.call('EXPIRE', KEYS[7], use.tot_ttl) end
    if use.task_ttl then
      redis.call('HINCRBY', KEYS[8], 'nusd', use.nusd)
      redis.call('HINCRBY', KEYS[8], 'tok', use.inp + use.out)
      redis.call('EXPIRE', KEYS[8], use.task_ttl)
      if redis.call('EXISTS', KEYS[9]) == 1 then redis.call('EXPIRE', KEYS[9], use.task_ttl) end
    end
  end
end

local d = p.d
if d then
  rewrite_window(KEYS[base + 1], KEYS[base + 2], d.w, d.nw, d.tok, d.drop)
  redis.call('ZREM', KEYS[base + 3], d.rid)
  base = base + 3
end

local a = p.a
if a then
  add_usage(KEYS[base + 1], a.use, a.use.exp_d)
  add_usage(KEYS[base + 2], a.use, a.use.exp_m)
  redis.call('HSET', KEYS[base + 1], 'name', a.name)
  redis.call('HSET', KEYS[base + 2], 'name', a.name)
end

return 1
