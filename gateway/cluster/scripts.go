package cluster

import "github.com/redis/go-redis/v9"

// The Lua scripts. Redis runs a script alone, so each one is an atomic
// check-and-set across every instance sharing the server: no two instances
// can both see a call unowned, both take the last admission slot, or both
// win a reap. Script.Run sends EVALSHA and falls back to EVAL once when the
// server does not have the script yet (a restart empties its cache).
//
// Keys a script builds from ARGV (the prefix "{p}:") are in the same hash
// slot as the ones it is passed, which Redis Cluster needs.

// luaAddrOf is prepended to the scripts that answer with an owner's address:
// "" when the owner's lease is gone (or its value is not ours).
const luaAddrOf = `
local function addr_of(prefix, inst)
  local j = redis.call('GET', prefix .. 'inst:' .. inst)
  if not j then return '' end
  local ok, v = pcall(cjson.decode, j)
  if ok and type(v) == 'table' and type(v.addr) == 'string' then return v.addr end
  return ''
end
`

// renewScript extends the lease. Reaped wins over everything: another
// instance has ended our calls. A missing lease that nobody reaped (Redis
// restarted empty, or failed over before the key reached the replica) is
// set again. Returns the LeaseStatus.
// KEYS: inst:<I>, reaped:<I>, instances. ARGV: lease JSON, lease ms, I.
var renewScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
if redis.call('PEXPIRE', KEYS[1], ARGV[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return 1
`)

// instancesScript lists the live instances with their lease values.
// KEYS: instances. ARGV: prefix. Returns {id, json, id, json, ...}.
var instancesScript = redis.NewScript(`
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('GET', ARGV[1] .. 'inst:' .. m)
  if v then
    out[#out + 1] = m
    out[#out + 1] = v
  end
end
return out
`)

// claimScript takes an unowned call for I.
// KEYS: call:<id>, info:<id>, inst:<I>:calls. ARGV: I, info, call ms, id, prefix.
// Returns {"won"|"ended"|"owned", owner, addr}.
var claimScript = redis.NewScript(luaAddrOf + `
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  redis.call('SADD', KEYS[3], ARGV[4])
  return {'won', '', ''}
end
if v == '` + ended + `' then return {'ended', '', ''} end
return {'owned', v, addr_of(ARGV[5], v)}
`)

// placeScript makes I the owner of a business-initiated call, whatever
// was there, and hands over the events held for it.
// KEYS: call:<waID>, held:<waID>. ARGV: I, call ms. Returns the held events.
var placeScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local held = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
return held
`)

// routeScript finds a call's owner, or holds the event until Place takes
// the call: the newest heldMax events, for heldTTL. markEnded leaves
// "!ended" (NX: never over a Place that got there first) so a later Claim
// of that call is refused.
// KEYS: call:<waID>, held:<waID>.
// ARGV: prefix, event, markEnded "1"/"0", held max, held ms, ended ms.
// Returns {"owned"|"ended"|"held", owner, addr}.
var routeScript = redis.NewScript(luaAddrOf + `
local v = redis.call('GET', KEYS[1])
if v == '` + ended + `' then return {'ended', '', ''} end
if v then return {'owned', v, addr_of(ARGV[1], v)} end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], '` + ended + `', 'NX', 'PX', ARGV[6])
end
return {'held', '', ''}
`)

// admitScript counts the calls of the live instances (I always counts) and
// takes one slot when both limits allow. A limit <= 0 is none; field ""
// counts no number.
// KEYS: instances, inst:<I>:load. ARGV: prefix, I, field, number limit, total limit.
// Returns {ok 1|0, why, total, number}: the counts with this call when admitted.
var admitScript = redis.NewScript(`
local field = ARGV[3]
local function load(key)
  if field == '' then
    return tonumber(redis.call('HGET', key, 'all')) or 0, 0
  end
  local v = redis.call('HMGET', key, 'all', field)
  return tonumber(v[1]) or 0, tonumber(v[2]) or 0
end
local total, num = load(KEYS[2])
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if m ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. 'inst:' .. m) == 1 then
    local a, n = load(ARGV[1] .. 'inst:' .. m .. ':load')
    total, num = total + a, num + n
  end
end
local numberLimit, totalLimit = tonumber(ARGV[4]), tonumber(ARGV[5])
if totalLimit > 0 and total >= totalLimit then return {0, 'max_calls', total, num} end
if field ~= '' and numberLimit > 0 and num >= numberLimit then
  return {0, 'number_limit', total, num}
end
redis.call('HINCRBY', KEYS[2], 'all', 1)
if field ~= '' then
  redis.call('HINCRBY', KEYS[2], field, 1)
  num = num + 1
end
return {1, '', total + 1, num}
`)

// releaseScript gives a slot back; a count never goes below 0, and a field
// at 0 is removed so the hash holds only numbers with calls.
// KEYS: inst:<I>:load. ARGV: field ("" for none).
var releaseScript = redis.NewScript(`
local function dec(f)
  local n = tonumber(redis.call('HGET', KEYS[1], f)) or 0
  if n > 1 then redis.call('HINCRBY', KEYS[1], f, -1) else redis.call('HDEL', KEYS[1], f) end
end
dec('all')
if ARGV[1] ~= '' then dec(ARGV[1]) end
return 1
`)

// deadScript lists the instances whose lease is gone, never I.
// KEYS: instances. ARGV: prefix, I.
var deadScript = redis.NewScript(`
local dead = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if m ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. 'inst:' .. m) == 0 then
    dead[#dead + 1] = m
  end
end
return dead
`)

// reapScript lets one instance take a dead instance's calls: the lock
// (NX) picks the winner, reaped:<inst> tells that instance, should it come
// back, that its calls were ended. A live lease is never reaped (it may
// have renewed since Dead listed it).
// KEYS: reap:<inst>, reaped:<inst>, inst:<inst>, inst:<inst>:calls.
// ARGV: I, lock ms, reaped ms, prefix.
// Returns {won 1|0, id, info, id, info, ...}; info is nil when gone.
var reapScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[3]) == 1 then return {0} end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
local out = {1}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('GET', ARGV[4] .. 'info:' .. id)
end
return out
`)

// forgetScript drops a dead instance once all its calls are reaped. It
// keeps reaped:<inst> (it expires by itself) for the instance to learn it
// was reaped if it comes back. Returns 1 when forgotten.
// KEYS: inst:<inst>, inst:<inst>:calls, inst:<inst>:load, reap:<inst>, instances.
// ARGV: inst.
var forgetScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('SCARD', KEYS[2]) > 0 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('SREM', KEYS[5], ARGV[1])
return 1
`)
