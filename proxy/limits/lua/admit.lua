--[[ admit.lua: check every limit of the sections given, then reserve in all of them, or in none.

Units: time in milliseconds (the Redis server's clock unless p.now is given), money in
integer nano-USD, tokens as integers. Called by proxy/limits.py (see its docstring).

KEYS, key section (when p.k), all under the key's hash tag:
  1 rate window (zset: "rid|tokens" scored by admission time)   2 tokens in that window (string)
  3 pending reservations (zset: "rid|nusd" scored by expiry)     4 pending sums (hash: nusd)
  5 usage of the day (hash)   6 usage of the month (hash)        7 total spend (string, nusd)
  8 task (hash: nusd, tok settled; pnusd, ptok pending)          9 task pending (zset "rid|nusd|tok")
KEYS, deployment section (when p.d), after the key section's nine, under the deployment's tag:
  1 rate window (zset)   2 tokens in that window (string)   3 in flight (zset: rid scored by expiry)

ARGV[1] = JSON {now?, ttl, k?, d?}
  k = {win, rpm?, tpm?, tok, nusd, wm, pm, tm, bday?, bmon?, btot?, task?: {cost?, tok?, ttl},
       prev?: {w, p, t}}
  d = {win, rpm?, tpm?, conc?, tok, wm, rid}
  wm/pm/tm: this reservation's members "rid|tok", "rid|nusd", "rid|nusd|tok" (built by the caller,
  so Lua never formats numbers).
  prev names the members of a reservation this one replaces (a fallback step of the same request):
  they are left out of every check and removed when this one is written, atomically.
Returns JSON {ok=true, now, k?: snapshot, b?: {day|month|total = nusd left}} or {ok=false, limit, retry_ms?, left?, k?: snapshot}.
]]

local p = cjson.decode(ARGV[1])
local now = clock_ms(p)  -- clock_ms, num, part: lib.lua
local ttl = p.ttl

local function reject(limit, retry_ms, snap, left)
  return cjson.encode({ok = false, limit = limit, retry_ms = retry_ms, k = snap, left = left, now = now})
end

-- drop window entries admitted at or before `cutoff`, and their tokens from the sum
local function prune_window(zkey, skey, cutoff)
  local old = redis.call('ZRANGEBYSCORE', zkey, '-inf', cutoff)
  if #old == 0 then return end
  local freed = 0
  for i = 1, #old do freed = freed + part(old[i], 1) end
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', cutoff)
  if redis.call('ZCARD', zkey) == 0 then
    redis.call('DEL', skey)
  elseif freed ~= 0 then
    redis.call('DECRBY', skey, freed)
  end
end

-- drop expired pending reservations, and their amounts from the running sums in `hkey`
local function prune_pending(zkey, hkey, fields)
  local old = redis.call('ZRANGEBYSCORE', zkey, '-inf', now)
  if #old == 0 then return end
  for j = 1, #fields do
    local freed = 0
    for i = 1, #old do freed = freed + part(old[i], j) end
    if freed ~= 0 then redis.call('HINCRBY', hkey, fields[j], -freed) end
  end
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', now)
end

-- ms until the window holds `limit - 1` requests (the (count - limit)-th oldest entry leaves)
local function requests_retry(zkey, count, limit, win)
  local idx = math.max(count - limit, 0)
  local e = redis.call('ZRANGE', zkey, idx, idx, 'WITHSCORES')
  if #e == 0 then return 0 end
  return math.max(tonumber(e[2]) + win - now, 1)
end

-- ms until enough tokens leave the window for `need` more to fit under `limit`
local function tokens_retry(zkey, used, need, limit, win)
  local e = redis.call('ZRANGE', zkey, 0, 1999, 'WITHSCORES')
  local freed = 0
  for i = 1, #e, 2 do
    freed = freed + part(e[i], 1)
    if used - freed + need <= limit then return math.max(tonumber(e[i + 1]) + win - now, 1) end
  end
  return win
end

-- ms until the oldest entry leaves the window (when `remaining` next goes up); 0 if empty
local function window_reset(zkey, win)
  local e = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
  if #e == 0 then return 0 end
  return math.max(tonumber(e[2]) + win - now, 0)
end

local k, d = p.k, p.d
local dbase = 0
local snap = nil
local budget_left = nil -- per budget period: nusd left once this request is reserved
local prev = (k and k.prev) or {}

-- ---------------------------------------------------------------- check phase (no reservations)
if k then
  dbase = 9
  if k.rpm or k.tpm then
    prune_window(KEYS[1], KEYS[2], now - k.win)
    local count = redis.call('ZCARD', KEYS[1])
    local used = num(redis.call('GET', KEYS[2]))
    if prev.w and redis.call('ZSCORE', KEYS[1], prev.w) then
      count = count - 1
      used = used - part(prev.w, 1)
    end
    snap = {rpm = k.rpm, tpm = k.tpm, count = count, used = used, reset_ms = window_reset(KEYS[1], k.win)}
    if k.rpm and count + 1 > k.rpm then
      return reject('rpm', requests_retry(KEYS[1], count, k.rpm, k.win), snap)
    end
    if k.tpm and k.tok > k.tpm then
      return reject('tpm_size', nil, snap)
    end
    if k.tpm and used + k.tok > k.tpm then
      return reject('tpm', tokens_retry(KEYS[1], used, k.tok, k.tpm, k.win), snap)
    end
  end
  if k.bday or k.bmon or k.btot then
    prune_pending(KEYS[3], KEYS[4], {'nusd'})
    local pend = num(redis.call('HGET', KEYS[4], 'nusd'))
    if prev.p and redis.call('ZSCORE', KEYS[3], prev.p) then pend = pend - part(prev.p, 1) end
    if k.nusd > 0 then
      local budgets = {
        {'day', k.bday, function() return num(redis.call('HGET', KEYS[5], 'nusd')) end},
        {'month', k.bmon, function() return num(redis.call('HGET', KEYS[6], 'nusd')) end},
        {'total', k.btot, function() return num(redis.call('GET', KEYS[7])) end},
      }
      budget_left = {}
      for _, b in ipairs(budgets) do
        if b[2] then
          local left = b[2] - b[3]() - pend
          if k.nusd > left then return reject(b[1], nil, snap, left) end
          budget_left[b[1]] = left - k.nusd
        end
      end
    end
  end
  if k.task then
    prune_pending(KEYS[9], KEYS[8], {'pnusd', 'ptok'})
    local t = redis.call('HMGET', KEYS[8], 'nusd', 'tok', 'pnusd', 'ptok')
    local cost, tok = num(t[1]) + num(t[3]), num(t[2]) + num(t[4])
    if prev.t and redis.call('ZSCORE', KEYS[9], prev.t) then
      cost = cost - part(prev.t, 1)
      tok = tok - part(prev.t, 2)
    end
    if k.task.cost and k.nusd > 0 and cost + k.nusd > k.task.cost then
      return reject('task_cost', nil, snap, k.task.cost - cost)
    end
    if k.task.tok and tok + k.tok > k.task.tok then
      return reject('task_tokens', nil, snap, k.task.tok - tok)
    end
  end
end

if d then
  local W, WS, INF = KEYS[dbase + 1], KEYS[dbase + 2], KEYS[dbase + 3]
  if d.rpm or d.tpm then
    prune_window(W, WS, now - d.win)
    local count = redis.call('ZCARD', W)
    local used = num(redis.call('GET', WS))
    if d.rpm and count + 1 > d.rpm then
      return reject('d_rpm', requests_retry(W, count, d.rpm, d.win), snap)
    end
    if d.tpm and d.tok > d.tpm then return reject('d_tpm_size', nil, snap) end
    if d.tpm and used + d.tok > d.tpm then
      return reject('d_tpm', tokens_retry(W, used, d.tok, d.tpm, d.win), snap)
    end
  end
  if d.conc then
    redis.call('ZREMRANGEBYSCORE', INF, '-inf', now)
    if redis.call('ZCARD', INF) + 1 > d.conc then return reject('d_conc', nil, snap) end
  end
end

-- ---------------------------------------------------------------- reserve phase
if k then
  local score = now
  if prev.w then
    local s = redis.call('ZSCORE', KEYS[1], prev.w)
    if s then
      score = tonumber(s)
      redis.call('ZREM', KEYS[1], prev.w)
      redis.call('DECRBY', KEYS[2], part(prev.w, 1))
    end
  end
  if prev.p and redis.call('ZREM', KEYS[3], prev.p) == 1 then
    redis.call('HINCRBY', KEYS[4], 'nusd', 0 - part(prev.p, 1))
  end
  if prev.t and redis.call('ZREM', KEYS[9], prev.t) == 1 then
    redis.call('HINCRBY', KEYS[8], 'pnusd', 0 - part(prev.t, 1))
    redis.call('HINCRBY', KEYS[8], 'ptok', 0 - part(prev.t, 2))
  end
  if k.rpm or k.tpm then
    redis.call('ZADD', KEYS[1], score, k.wm)
    redis.call('INCRBY', KEYS[2], k.tok)
    redis.call('PEXPIRE', KEYS[1], k.win + 1000)
    redis.call('PEXPIRE', KEYS[2], k.win + 1000)
    snap.count = snap.count + 1
    snap.used = snap.used + k.tok
    snap.reset_ms = window_reset(KEYS[1], k.win)
  end
  if (k.bday or k.bmon or k.btot) and k.nusd > 0 then
    redis.call('ZADD', KEYS[3], now + ttl, k.pm)
    redis.call('HINCRBY', KEYS[4], 'nusd', k.nusd)
    redis.call('PEXPIRE', KEYS[3], ttl + 1000)
    redis.call('PEXPIRE', KEYS[4], ttl + 1000)
  end
  if k.task then
    redis.call('ZADD', KEYS[9], now + ttl, k.tm)
    redis.call('HINCRBY', KEYS[8], 'pnusd', k.nusd)
    redis.call('HINCRBY', KEYS[8], 'ptok', k.tok)
    redis.call('EXPIRE', KEYS[8], k.task.ttl)
    redis.call('EXPIRE', KEYS[9], k.task.ttl)
  end
end

if d then
  local W, WS, INF = KEYS[dbase + 1], KEYS[dbase + 2], KEYS[dbase + 3]
  if d.rpm or d.tpm then
    redis.call('ZADD', W, now, d.wm)
    redis.call('INCRBY', WS, d.tok)
    redis.call('PEXPIRE', W, d.win + 1000)
    redis.call('PEXPIRE', WS, d.win + 1000)
  end
  if d.conc then
    redis.call('ZADD', INF, now + ttl, d.rid)
    redis.call('PEXPIRE', INF, ttl + 1000)
  end
end

return cjson.encode({ok = true, now = now, k = snap, b = budget_left})
