--[[ lib.lua: helpers every script shares. proxy/store.py load_script() puts this in front of
each script, so a script is still one EVAL (Redis scripts cannot load modules).

  clock_ms(p)   p.now if the caller fixed the time (tests), else the Redis server's clock in ms
  num(v)        a number, or 0 for nil / non-numeric
  part(m, i)    the i-th number after the rid in a member "rid|a|b" (i = 1 for a)

Negate as `0 - x`, never `-x`: -0 is sent to Redis as "-0", which HINCRBY/INCRBY refuse ("value
is not an integer"), e.g. when settling a task's free (0 nano-USD) reservation.
]]

local function clock_ms(p)
  if p.now then return p.now end
  if redis.replicate_commands then redis.replicate_commands() end -- Redis < 5: writes after TIME
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function num(v)
  return tonumber(v) or 0
end

local function part(member, i)
  local j = 0
  for f in string.gmatch(member, '[^|]+') do
    if j == i then return tonumber(f) or 0 end
    j = j + 1
  end
  return 0
end

