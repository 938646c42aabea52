"""The Lua scripts of the Redis store and limiters, registered once per client.

Each script is one atomic step (Redis runs a script with nothing interleaved). Scripts
check everything that can fail before they write, because Redis does not roll a script
back when it stops half-way. Numbers that must keep full precision (epoch seconds) travel
as strings and are stored as given; Lua converts numbers with 14 significant digits.
Keys come from `RedisKeys`; `claim`, `dispatch_lease` and `pending_summary` append names
they only learn inside the script to prefixes the helper hands them, in its layout.
"""

from __future__ import annotations

from redis import Redis
from redis.commands.core import Script

_GROUP = """
local function ensure_group(stream, group)
  redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
end
"""

# Locks: a hash {owner, n} per name; n counts the owner's held entries that touch it.
# `release` puts the held entries of one consumer back on the waiting list, keeping
# their tickets (so their order), and parks them with the parking consumer.
_RELEASE = """
local function release_lock(key)
  if redis.call('HINCRBY', key, 'n', -1) <= 0 then redis.call('DEL', key) end
end
local function release(stream, group, held, waiting, tickets, parking, name)
  local count = 0
  local pending = redis.call('XPENDING', stream, group, '-', '+', 1000000, name)
  for _, p in ipairs(pending) do
    local id = p[1]
    local raw = redis.call('HGET', held, id)
    if raw then
      local h = cjson.decode(raw)
      for _, lock in ipairs(h.locks) do release_lock(lock) end
      redis.call('HDEL', held, id)
      redis.call('ZADD', waiting, h.ticket, id)
      count = count + 1
    else
      redis.call('ZADD', waiting, redis.call('INCR', tickets), id)
    end
    redis.call('XCLAIM', stream, group, parking, 0, id, 'JUSTID')
  end
  return count
end
local function release_dead(stream, group, held, waiting, tickets, parking, me, min_idle)
  local count = 0
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
    local info = {}
    for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
    local name = info['name']
    if name ~= me and name ~= parking and tonumber(info['idle']) >= min_idle then
      count = count + release(stream, group, held, waiting, tickets, parking, name)
      redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
    end
  end
  return count
end
"""

ENQUEUE = (
    _GROUP
    + """
local stream, accounts = KEYS[1], KEYS[2]
local group, limit, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3]
ensure_group(stream, group)
local depth = redis.call('XLEN', stream)
if depth >= limit then return {-1, depth} end
local accepted, duplicates = 0, 0
for i = 4, #ARGV, 7 do
  if redis.call('SET', ARGV[i], '1', 'NX', 'EX', ttl) then
    redis.call('XADD', stream, '*', 'a', ARGV[i + 1], 'e', ARGV[i + 3], 'p', ARGV[i + 4],
      'i', ARGV[i + 5], 't', ARGV[i + 6])
    redis.call('INCR', ARGV[i + 2])
    redis.call('SADD', accounts, ARGV[i + 1])
    accepted = accepted + 1
  else
    duplicates = duplicates + 1
  end
end
return {accepted, duplicates}
"""
)

# Fire due timers: each queued exactly as `ENQUEUE` queues an event (dedup, stream entry,
# counters) and disarmed, in this one script, so a timer fires once however many
# processes call it at the same moment.
FIRE_TIMERS = (
    _GROUP
    + """
local stream, accounts, timers = KEYS[1], KEYS[2], KEYS[3]
local group, ttl, now, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
ensure_group(stream, group)
local fired = 0
for _, key in ipairs(redis.call('ZRANGEBYSCORE', timers, '-inf', now, 'LIMIT', 0, limit)) do
  local t = redis.call('HGETALL', key)
  local f = {}
  for i = 1, #t, 2 do f[t[i]] = t[i + 1] end
  if f['dedup'] and redis.call('SET', f['dedup'], '1', 'NX', 'EX', ttl) then
    redis.call('XADD', stream, '*', 'a', f['a'], 'e', f['e'], 'p', f['p'], 'i', f['i'], 't', now)
    redis.call('INCR', f['queued'])
    redis.call('SADD', accounts, f['a'])
  end
  redis.call('ZREM', timers, key)
  redis.call('DEL', key)
  fired = fired + 1
end
return fired
"""
)

RELEASE = (
    _GROUP
    + _RELEASE
    + """
local stream, held, waiting, tickets = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, parking, me, min_idle = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
ensure_group(stream, group)
return release_dead(stream, group, held, waiting, tickets, parking, me, min_idle)
"""
)

CLAIM = (
    _GROUP
    + _RELEASE
    + """
local stream, held, waiting, tickets, attempts = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, parking, me = ARGV[1], ARGV[2], ARGV[3]
local min_idle, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local scan, prefix = tonumber(ARGV[6]), ARGV[7]
ensure_group(stream, group)
release(stream, group, held, waiting, tickets, parking, me)
release_dead(stream, group, held, waiting, tickets, parking, me, min_idle)

local blocked, out = {}, {}

-- The lock names of an entry: its identifiers and the profiles they are linked to now.
local function lockset(fields)
  local f = {}
  for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
  local base = prefix .. ':' .. f['a']
  local names, seen = {}, {}
  for _, id in ipairs(cjson.decode(f['i'])) do
    for _, n in ipairs({id, redis.call('HGET', base .. ':identities', id)}) do
      if n and not seen[n] then
        seen[n] = true
        names[#names + 1] = base .. ':lock:' .. n
      end
    end
  end
  return f, names
end

local function takeable(names)
  for _, n in ipairs(names) do
    if blocked[n] then return false end
    local owner = redis.call('HGET', n, 'owner')
    if owner and owner ~= me then return false end
  end
  return true
end

local function take(id, f, names, ticket)
  for _, n in ipairs(names) do
    redis.call('HSET', n, 'owner', me)
    redis.call('HINCRBY', n, 'n', 1)
  end
  redis.call('HSET', held, id,
    cjson.encode({owner = me, account = f['a'], ticket = ticket, locks = names}))
  local n = redis.call('HINCRBY', attempts, id, 1)
  out[#out + 1] = {id, n, f['a'], f['e'], f['p']}
end

local function block(names)
  for _, n in ipairs(names) do blocked[n] = true end
end

-- Entries waiting for a lock go first, in ticket order; a later one touching a name an
-- earlier one waits for waits too, so no event of a profile overtakes an older one.
local backlog = redis.call('ZRANGE', waiting, 0, scan - 1, 'WITHSCORES')
local complete = #backlog < 2 * scan
for i = 1, #backlog, 2 do
  if #out >= limit then complete = false break end
  local id, ticket = backlog[i], tonumber(backlog[i + 1])
  local entry = redis.call('XRANGE', stream, id, id)
  if #entry == 0 then
    redis.call('ZREM', waiting, id)
  else
    local f, names = lockset(entry[1][2])
    if takeable(names) then
      redis.call('XCLAIM', stream, group, me, 0, id, 'JUSTID')
      redis.call('ZREM', waiting, id)
      take(id, f, names, ticket)
    else
      block(names)
    end
  end
end

if complete and #out < limit then
  local read = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', limit - #out,
    'STREAMS', stream, '>')
  if read then
    for _, e in ipairs(read[1][2]) do
      local id, ticket = e[1], redis.call('INCR', tickets)
      local f, names = lockset(e[2])
      if takeable(names) then
        take(id, f, names, ticket)
      else
        redis.call('ZADD', waiting, ticket, id)
        redis.call('XCLAIM', stream, group, parking, 0, id, 'JUSTID')
        block(names)
      end
    end
  end
else
  -- Nothing new is read, but the consumer must still look alive to the others.
  redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', 1, 'STREAMS', stream, '0')
end
return out
"""
)

COMMIT = """
local stream, held, attempts = KEYS[1], KEYS[2], KEYS[3]
local group, now = ARGV[1], ARGV[2]
local payload = cjson.decode(ARGV[3])

local records = {}
for i, d in ipairs(payload.done) do
  local raw = redis.call('HGET', held, d.id)
  if not raw then return {'lost', d.id} end
  local h = cjson.decode(raw)
  if d.owner ~= '' and h.owner ~= d.owner then return {'lost', d.id} end
  records[i] = h
end

local function coalesce(w)
  local current = redis.call('HMGET', w.pending, 'fp', 'sv', 'due')
  local pfp, sv, due = current[1], current[2], current[3]
  local wfp = redis.call('HGET', w.written, 'fp')
  if pfp and pfp == w.fp then return end
  if wfp == w.fp and ((not pfp) or sv == '0') then
    redis.call('DEL', w.pending)
    redis.call('ZREM', w.due, w.member)
    return
  end
  if pfp then
    if tonumber(now) < tonumber(due) then due = now end
    redis.call('HSET', w.pending, 'ids', w.ids, 'props', w.props, 'fp', w.fp, 'n', 0, 'due', due)
    redis.call('HINCRBY', w.pending, 'v', 1)
    redis.call('ZADD', w.due, due, w.member)
  else
    redis.call('HSET', w.pending, 'ids', w.ids, 'props', w.props, 'fp', w.fp, 'v', 1,
      'sv', 0, 'n', 0, 'due', now, 'first', now)
    redis.call('ZADD', w.due, now, w.member)
    redis.call('SADD', w.platforms, w.platform)
  end
end

for _, u in ipairs(payload.updates) do
  if redis.call('GET', u.context_key) ~= u.context then
    redis.call('SET', u.context_key, u.context)
    local version = redis.call('INCR', u.version_key)
    redis.call('PUBLISH', payload.changed, cjson.encode({u.account, u.key, version}))
  end
  for _, name in ipairs(u.identifiers) do
    if redis.call('HSETNX', u.identities, name, u.key) == 1 then
      redis.call('SADD', u.links, name)
    end
  end
  for _, w in ipairs(u.writes) do coalesce(w) end
end

for i, d in ipairs(payload.done) do
  for _, lock in ipairs(records[i].locks) do
    if redis.call('HINCRBY', lock, 'n', -1) <= 0 then redis.call('DEL', lock) end
  end
  redis.call('HDEL', held, d.id)
  redis.call('HDEL', attempts, d.id)
  redis.call('XACK', stream, group, d.id)
  redis.call('XDEL', stream, d.id)
  if redis.call('DECR', d.queued) <= 0 then redis.call('DEL', d.queued) end
end
return {'ok', ''}
"""

MARK_SENDING = """
local lease, me, ms = KEYS[1], ARGV[1], ARGV[2]
if lease ~= '' then
  if redis.call('GET', lease) ~= me then return {} end
  redis.call('PEXPIRE', lease, ms)
end
local marked = {}
for i = 3, #ARGV, 2 do
  if redis.call('HGET', ARGV[i], 'v') == ARGV[i + 1] then
    redis.call('HSET', ARGV[i], 'sv', ARGV[i + 1])
    table.insert(marked, (i - 1) / 2)
  end
end
return marked
"""

# The dispatch lease: one store instance at a time sends an account's writes to a
# platform. Taking over a free or expired lease clears `sv`: nothing is in flight any more.
DISPATCH_LEASE = """
local lease, due = KEYS[1], KEYS[2]
local me, ms, pending_prefix = ARGV[1], ARGV[2], ARGV[3]
local holder = redis.call('GET', lease)
if holder and holder ~= me then return 0 end
redis.call('SET', lease, me, 'PX', ms)
if not holder then
  for _, member in ipairs(redis.call('ZRANGE', due, 0, -1)) do
    local key = pending_prefix .. member
    if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'sv', 0) end
  end
end
return 1
"""

SETTLE = """
local dead_letters, now = KEYS[1], ARGV[1]
for _, s in ipairs(cjson.decode(ARGV[2])) do
  if s.status == 'written' then
    redis.call('HSET', s.written, 'fp', s.fp, 'props', s.props, 'at', now)
  elseif s.status == 'fatal' then
    redis.call('XADD', dead_letters, '*', 'a', s.account, 'd', s.dead)
  end
  if redis.call('EXISTS', s.pending) == 1 then
    redis.call('HSET', s.pending, 'sv', 0)
    local current = redis.call('HMGET', s.pending, 'v', 'fp')
    if s.status == 'retry' then
      if current[1] == s.version then
        redis.call('HINCRBY', s.pending, 'n', 1)
        redis.call('HSET', s.pending, 'due', s.retry_at)
        redis.call('ZADD', s.due, s.retry_at, s.member)
      end
    elseif current[1] == s.version or (s.status == 'written' and current[2] == s.fp) then
      redis.call('DEL', s.pending)
      redis.call('ZREM', s.due, s.member)
    end
  end
end
return 1
"""

ERASE = """
local context, identities, links, key = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local version_key, decision, account, changed = KEYS[4], KEYS[5], ARGV[2], ARGV[3]
for _, name in ipairs(redis.call('SMEMBERS', links)) do
  if redis.call('HGET', identities, name) == key then redis.call('HDEL', identities, name) end
end
redis.call('DEL', context, links, decision)
local version = redis.call('INCR', version_key)
redis.call('PUBLISH', changed, cjson.encode({account, key, version}))
for i = 4, #ARGV, 3 do
  redis.call('DEL', ARGV[i], ARGV[i + 2])
  redis.call('ZREM', ARGV[i + 1], key)
end
return 1
"""

PENDING_SUMMARY = """
local due, pending_prefix = KEYS[1], ARGV[1]
local count, oldest, retrying = 0, '', 0
for _, member in ipairs(redis.call('ZRANGE', due, 0, -1)) do
  local row = redis.call('HMGET', pending_prefix .. member, 'first', 'n')
  if row[1] then
    count = count + 1
    if oldest == '' or tonumber(row[1]) < tonumber(oldest) then oldest = row[1] end
    if tonumber(row[2]) > 0 then retrying = retrying + 1 end
  end
end
return {count, oldest, retrying}
"""

ROLLING_WINDOW = """
local calls, seq = KEYS[1], KEYS[2]
local now, cutoff, limit, ttl_ms = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', calls, '-inf', cutoff)
if redis.call('ZCARD', calls) < limit then
  redis.call('ZADD', calls, now, now .. '#' .. redis.call('INCR', seq))
  redis.call('PEXPIRE', calls, ttl_ms)
  redis.call('PEXPIRE', seq, ttl_ms)
  return ''
end
return redis.call('ZRANGE', calls, 0, 0, 'WITHSCORES')[2]
"""

FIXED_WINDOWS = """
local full = {}
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[2 * i - 1]) then
    full[#full + 1] = i
  end
end
if #full > 0 then return full end
for i, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ARGV[2 * i]) end
end
return full
"""

PAUSE = """
local pauses, reasons = KEYS[1], KEYS[2]
local scope, untils, reason = ARGV[1], ARGV[2], ARGV[3]
local current = redis.call('ZSCORE', pauses, scope)
if (not current) or tonumber(current) < tonumber(untils) then
  redis.call('ZADD', pauses, untils, scope)
  redis.call('HSET', reasons, scope, reason)
end
return 1
"""


class StoreScripts:
    """The store's scripts, registered with `client` once (EVALSHA, loaded on first use)."""

    def __init__(self, client: Redis) -> None:
        self.enqueue: Script = client.register_script(ENQUEUE)
        self.release: Script = client.register_script(RELEASE)
        self.claim: Script = client.register_script(CLAIM)
        self.commit: Script = client.register_script(COMMIT)
        self.mark_sending: Script = client.register_script(MARK_SENDING)
        self.fire_timers: Script = client.register_script(FIRE_TIMERS)
        self.dispatch_lease: Script = client.register_script(DISPATCH_LEASE)
        self.settle: Script = client.register_script(SETTLE)
        self.erase: Script = client.register_script(ERASE)
        self.pending_summary: Script = client.register_script(PENDING_SUMMARY)


class LimitScripts:
    """The rate limiters' and pauses' scripts, registered with `client` once."""

    def __init__(self, client: Redis) -> None:
        self.rolling_window: Script = client.register_script(ROLLING_WINDOW)
        self.fixed_windows: Script = client.register_script(FIXED_WINDOWS)
        self.pause: Script = client.register_script(PAUSE)
