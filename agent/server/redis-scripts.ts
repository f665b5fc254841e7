/**
 * The Lua scripts of the Redis registry (redis-registry.ts): each runs atomically on the primary
 * that holds its keys. Kept apart so the registry's file holds the client logic and this one the
 * rules the fleet's entries obey.
 */
/**
 * Newest registration wins (P1), atomically. ARGV: address, port, seen (now), timestamp, node,
 * TTL, refresh (ms), identity generation, and a node known dead (its liveness key is gone; '' none).
 * Returns '0' (not newer: replay), 'h|' and the holder (held: another node holds the device and
 * keeps its entry fresh), '1' (new), or '1|' and the previous fields.
 *
 * Write on change means the holder does not write every registration, so `t` may lag the newest
 * timestamp the holder accepted by up to `refresh` (it rewrites at least that often while the
 * device registers). A registration replayed at another node could then be newer than `t` and
 * steal the device. So another node takes over only when the holder's entry is due for refresh
 * (`s` + refresh passed: the device stopped registering there) or the timestamp is more than
 * `refresh` newer than `t` (newer than anything the holder can have accepted unwritten), or the
 * holder marked it stale (x=1, its `t` exact), or the holder is dead: the node calls again
 * naming it once it finds the holder's liveness key gone (a cluster script cannot read that key:
 * another slot). P1 still holds then: only a newer
 * timestamp than `t` is accepted, and what the dead holder accepted unwritten is lost with it;
 * the device's own next registration is newer than any of it and ends a replay's effect.
 */
/** Per device in RECORD_MANY_LUA's ARGV: key, address, port, seen, timestamp, node, generation. */
const RECORD_MANY_FIELDS = 7;
const RECORD_FUNCTION_LUA = `
local function record(key, a, p, s, t, n, ttl, refresh, g, dead)
  local prev = redis.pcall('HMGET', key, 'a', 'p', 's', 't', 'n', 'x')
  if prev.err then return 'x' end
  local ts = tonumber(t)
  if prev[4] then
    local pt = tonumber(prev[4])
    if pt >= ts then return '0' end
    if prev[5] and prev[5] ~= n and prev[5] ~= dead and prev[6] ~= '1' and tonumber(prev[3]) + refresh > tonumber(s) and ts <= pt + refresh then
      return 'h|' .. prev[5]
    end
  end
  redis.call('HSET', key, 'a', a, 'p', p, 's', s, 't', t, 'n', n, 'g', g)
  redis.call('HDEL', key, 'x')
  redis.call('PEXPIRE', key, ttl)
  if not prev[1] then return '1' end
  return '1|' .. prev[1] .. '|' .. prev[2] .. '|' .. prev[3] .. '|' .. prev[4] .. '|' .. (prev[5] or '')
end
`;
export const RECORD_LUA = `${RECORD_FUNCTION_LUA}
local r = record(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], ARGV[9])
if r == 'x' then return redis.error_reply('ERR the device entry could not be read') end
return r
`;
/**
 * RECORD_LUA for several devices at once, each as if alone. KEYS[1] is the first device's key (it
 * routes the call to its primary); ARGV: TTL, refresh, then per device its key, address, port,
 * seen, timestamp, node, generation. The keys are in ARGV because a cluster refuses declared keys
 * of several slots (CROSSSLOT); Redis 7's allow-cross-slot-keys lets the script reach any key of
 * this primary. A key this primary does not serve (the topology changed) is answered 'x' and
 * written nothing: the node sends that one alone. Returns one RECORD_LUA answer per device. One
 * call per primary per write batch instead of one per registration: the node's per-command work
 * (command, promise, timer, reply) is paid once per batch (npm run bench -- fleet).
 */
export const RECORD_MANY_LUA = `#!lua flags=allow-cross-slot-keys
${RECORD_FUNCTION_LUA}
local ttl, refresh, out = ARGV[1], tonumber(ARGV[2]), {}
for j = 3, #ARGV, ${RECORD_MANY_FIELDS} do
  out[#out + 1] = record(ARGV[j], ARGV[j + 1], ARGV[j + 2], ARGV[j + 3], ARGV[j + 4], ARGV[j + 5], ttl, refresh, ARGV[j + 6])
end
return out
`;

/**
 * GCRA on one key (rate-limiter.ts's algorithm, shared): KEYS[1] holds the theoretical arrival
 * time; ARGV: interval, tolerance (ms), charge (1/0). Redis's clock, so nodes' clocks do not matter.
 */
export const LIMIT_LUA = `
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local interval = tonumber(ARGV[1])
if tat + interval - now > tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '1' then redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(tat + interval - now) + 1) end
return 1
`;

/**
 * The holder marks a device stale (see `staleMark`): KEYS[1] its entry; ARGV: node, last seen,
 * timestamp. Only while the entry is still this node's and not newer than what this node has.
 * `t` becomes the newest timestamp the holder accepted, so the entry no longer lags it: another
 * node may take the device over with any newer one (RECORD_LUA: a marked entry is never held).
 */
export const MARK_STALE_LUA = `
local e = redis.call('HMGET', KEYS[1], 'n', 't')
if e[1] ~= ARGV[1] or not e[2] or tonumber(e[2]) > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 's', ARGV[2], 't', ARGV[3], 'x', '1')
return 1
`;
