"""
The cluster's operations on Redis, each one Lua script.

Redis runs a script alone, start to end: each operation below is atomic
cluster-wide without locks or retries, which is what makes a name claim
all-or-nothing, a rename one step, and a room's message ids and its order
on the bus the same thing.

Keys (all under the prefix C{chatsvc:}; the database is the URL's):

  - C{nodes}: a sorted set, node id -> its last heartbeat (ms, Redis time);
  - C{node:N:members}: the member ids a node holds;
  - C{name:KEY}: the member id holding a name key (L{nameKeys});
  - C{member:M}: a hash: C{name} as shown, C{keys} (LF-separated);
    C{member:M:rooms}: the room keys it is in;
  - C{rooms}: every room key known; C{room:R}: a hash: C{name} as shown,
    C{last} (its last message id), C{topic}, C{setter}, C{tts};
    C{room:R:members}: a sorted set, member id -> order of entry;
  - C{history:R}: the room's messages, a stream whose entry ids are
    C{0-ID}, ID the message id: Redis refuses an id that is not above
    the last, so a message is never stored twice nor overwritten;
  - C{bus}: the stream every node reads (L{chatsvc.cluster.node}),
    trimmed to about C{maxlen} entries.  Its entries: C{t=ev} an event
    (C{e} its JSON without id, C{i} the id given, C{d} a node that
    delivered it already, C{x=1} made by the reaper); C{t=eb} several
    events of one node's turn (L{PUBLISH_MANY}); C{t=cl} a name
    claimed (C{m}, C{n}); C{t=rl} a member gone (C{m}).

A member id is C{NODE:N}: whose node holds a name is read off its id, and
a name held by a node whose heartbeat is older than the timeout is free.
"""

from __future__ import annotations

__all__ = ["PREFIX", "SCRIPTS"]

PREFIX = "chatsvc:"

_COMMON = """
local P = 'chatsvc:'
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function nodeOf(mid)
  return string.match(mid, '^([^:]+):')
end
local function alive(node, now, ttl)
  local beat = redis.call('ZSCORE', P .. 'nodes', node)
  return beat and (now - tonumber(beat)) <= ttl
end
local function splitKeys(s)
  local out = {}
  if s then
    for k in string.gmatch(s, '[^\\n]+') do out[#out + 1] = k end
  end
  return out
end
local function forgetIfIdle(rkey)
  local rk = P .. 'room:' .. rkey
  if redis.call('ZCARD', rk .. ':members') == 0
      and not redis.call('HGET', rk, 'last')
      and not redis.call('HGET', rk, 'topic') then
    redis.call('DEL', rk)
    redis.call('SREM', P .. 'rooms', rkey)
  end
end
local function release(mid, maxlen)
  local mkey = P .. 'member:' .. mid
  for _, k in ipairs(splitKeys(redis.call('HGET', mkey, 'keys'))) do
    if redis.call('GET', P .. 'name:' .. k) == mid then
      redis.call('DEL', P .. 'name:' .. k)
    end
  end
  for _, rkey in ipairs(redis.call('SMEMBERS', mkey .. ':rooms')) do
    redis.call('ZREM', P .. 'room:' .. rkey .. ':members', mid)
    forgetIfIdle(rkey)
  end
  redis.call('DEL', mkey, mkey .. ':rooms')
  redis.call('SREM', P .. 'node:' .. nodeOf(mid) .. ':members', mid)
  redis.call('XADD', P .. 'bus', 'MAXLEN', '~', maxlen, '*', 't', 'rl', 'm', mid)
end
"""

#: ARGV: member id, shown name, timeout ms, bus maxlen, key...
#: Takes every key or none; a member's keys not among them are given up
#: (a rename).  Returns C{{'ok'}} or C{{'taken', shown name of holder}}.
CLAIM = """
local mid, name, ttl, maxlen = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = nowMs()
for i = 5, #ARGV do
  local h = redis.call('GET', P .. 'name:' .. ARGV[i])
  if h and h ~= mid and alive(nodeOf(h), now, ttl) then
    return {'taken', redis.call('HGET', P .. 'member:' .. h, 'name') or ARGV[i]}
  end
end
local mkey = P .. 'member:' .. mid
local wanted, keys = {}, {}
for i = 5, #ARGV do
  wanted[ARGV[i]] = true
  keys[#keys + 1] = ARGV[i]
  redis.call('SET', P .. 'name:' .. ARGV[i], mid)
end
for _, k in ipairs(splitKeys(redis.call('HGET', mkey, 'keys'))) do
  if not wanted[k] and redis.call('GET', P .. 'name:' .. k) == mid then
    redis.call('DEL', P .. 'name:' .. k)
  end
end
redis.call('HSET', mkey, 'name', name, 'keys', table.concat(keys, '\\n'))
redis.call('SADD', P .. 'node:' .. nodeOf(mid) .. ':members', mid)
redis.call('XADD', P .. 'bus', 'MAXLEN', '~', maxlen, '*', 't', 'cl', 'm', mid, 'n', name)
return {'ok'}
"""

#: ARGV: member id, bus maxlen.
RELEASE = """
release(ARGV[1], ARGV[2])
return 1
"""

#: ARGV: member id, room key, room name.  Returns C{{shown name, 1 if
#: newly in}}, or C{{}} when the member holds no name (it lost it).
ENTER = """
local mid, rkey = ARGV[1], ARGV[2]
if redis.call('EXISTS', P .. 'member:' .. mid) == 0 then return {} end
local rk = P .. 'room:' .. rkey
redis.call('HSETNX', rk, 'name', ARGV[3])
redis.call('SADD', P .. 'rooms', rkey)
local added = 0
if not redis.call('ZSCORE', rk .. ':members', mid) then
  redis.call('ZADD', rk .. ':members', redis.call('INCR', P .. 'seq'), mid)
  added = 1
end
redis.call('SADD', P .. 'member:' .. mid .. ':rooms', rkey)
return {redis.call('HGET', rk, 'name'), added}
"""

#: ARGV: member id, room key.
LEAVE = """
local mid, rkey = ARGV[1], ARGV[2]
local n = redis.call('ZREM', P .. 'room:' .. rkey .. ':members', mid)
redis.call('SREM', P .. 'member:' .. mid .. ':rooms', rkey)
forgetIfIdle(rkey)
return n
"""

#: ARGV: event JSON (without id), room key ('' for none), '1' if it is
#: kept in the history, the node that delivered it already (or ''), the
#: sender's member id (or ''), bus maxlen.
#: The message id, the history and the bus entry are one step, so ids
#: and the order on the bus agree.  Returns the id ('' if none), or -1
#: when the sender holds no name any more (its message is dropped).
PUBLISH = """
local json, rkey, historic, done, origin, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if origin ~= '' and redis.call('EXISTS', P .. 'member:' .. origin) == 0 then
  return -1
end
local id = ''
if historic == '1' then
  local rk = P .. 'room:' .. rkey
  id = redis.call('HINCRBY', rk, 'last', 1)
  redis.call('SADD', P .. 'rooms', rkey)
  redis.call('XADD', P .. 'history:' .. rkey, '0-' .. id, 'e', json)
end
redis.call('XADD', P .. 'bus', 'MAXLEN', '~', maxlen, '*', 't', 'ev', 'e', json, 'i', id, 'd', done)
return id
"""

#: ARGV: the node that delivered them already (or ''), bus maxlen, then
#: four per event: its JSON (without id), room key, '1' if kept in the
#: history, the sender's member id (or '').  L{PUBLISH} for several events
#: at once, in their order, as one bus entry (C{t=eb}, C{b} a JSON array
#: of C{{"i": id or null, "e": event}}): a busy node's events of one
#: reactor turn.  The events of a sender that holds no name any more are
#: dropped.  Returns how many were put on the bus.
PUBLISH_MANY = """
local done, maxlen = ARGV[1], ARGV[2]
local parts, holds, known = {}, {}, {}
for i = 3, #ARGV, 4 do
  local json, rkey, historic, origin = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local holder = holds[origin]
  if holder == nil then
    holder = origin == '' or redis.call('EXISTS', P .. 'member:' .. origin) == 1
    holds[origin] = holder
  end
  if holder then
    local id = 'null'
    if historic == '1' then
      local rk = P .. 'room:' .. rkey
      local n = redis.call('HINCRBY', rk, 'last', 1)
      if not known[rkey] then
        redis.call('SADD', P .. 'rooms', rkey)
        known[rkey] = true
      end
      redis.call('XADD', P .. 'history:' .. rkey, '0-' .. n, 'e', json)
      id = tostring(n)
    end
    parts[#parts + 1] = '{"i":' .. id .. ',"e":' .. json .. '}'
  end
end
if #parts > 0 then
  redis.call('XADD', P .. 'bus', 'MAXLEN', '~', maxlen, '*',
             't', 'eb', 'b', '[' .. table.concat(parts, ',') .. ']', 'd', done)
end
return #parts
"""

#: ARGV: room key, room name, text ('' clears), setter, ts.
TOPIC = """
local rk = P .. 'room:' .. ARGV[1]
redis.call('HSETNX', rk, 'name', ARGV[2])
redis.call('SADD', P .. 'rooms', ARGV[1])
if ARGV[3] == '' then
  redis.call('HDEL', rk, 'topic', 'setter', 'tts')
  forgetIfIdle(ARGV[1])
else
  redis.call('HSET', rk, 'topic', ARGV[3], 'setter', ARGV[4], 'tts', ARGV[5])
end
return 1
"""

#: ARGV: node id, timeout ms, bus maxlen, reason text.
#: The heartbeat, then the reaper: every node whose heartbeat is older
#: than the timeout loses its members (each room hears they left, with
#: a LEAVE on the bus, C{x=1}) and their names.  When no node at all had
#: a heartbeat for longer than the timeout (Redis itself was stopped, or
#: every node was), nobody is reaped for one timeout more: each node
#: gets that long to say it is alive.  Returns C{{1 if this node was
#: not registered (new, or reaped), reaped member ids...}}.
HEARTBEAT = """
local node, ttl, maxlen, reason = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local now = nowMs()
local last = tonumber(redis.call('GET', P .. 'beat-at') or '0')
redis.call('SET', P .. 'beat-at', now)
local fresh = redis.call('ZADD', P .. 'nodes', now, node)
local out = {fresh}
if last > 0 and now - last > ttl then
  redis.call('SET', P .. 'grace-until', now + ttl)
  return out
end
if now < tonumber(redis.call('GET', P .. 'grace-until') or '0') then
  return out
end
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', now - ttl - 1)) do
  local nm = P .. 'node:' .. dead .. ':members'
  for _, mid in ipairs(redis.call('SMEMBERS', nm)) do
    local mkey = P .. 'member:' .. mid
    local name = redis.call('HGET', mkey, 'name') or '?'
    for _, rkey in ipairs(redis.call('SMEMBERS', mkey .. ':rooms')) do
      local shown = redis.call('HGET', P .. 'room:' .. rkey, 'name') or rkey
      local event = cjson.encode({kind = 'leave', room = shown, name = name, text = reason,
                                  ts = now / 1000, origin = mid})
      redis.call('XADD', P .. 'bus', 'MAXLEN', '~', maxlen, '*',
                 't', 'ev', 'e', event, 'i', '', 'd', '', 'x', '1')
    end
    release(mid, maxlen)
    out[#out + 1] = mid
  end
  redis.call('DEL', nm)
  redis.call('ZREM', P .. 'nodes', dead)
end
return out
"""

#: ARGV: node id.  A node that stops cleanly says so: its heartbeat goes
#: at once (its members have left by then).
RETIRE = """
redis.call('ZREM', P .. 'nodes', ARGV[1])
redis.call('DEL', P .. 'node:' .. ARGV[1] .. ':members')
return 1
"""

#: ARGV: node id, then four per member: member id, name, its keys
#: (LF-separated), its rooms (LF-separated C{key TAB name} lines).
#: After Redis lost its data, a node that comes back writes what it knew
#: of another node's members, unless that node is back already (then it
#: answers for its own), with a heartbeat of now: a node that is alive
#: takes its members over at its own return (same ids, so no conflict),
#: and the reaper releases, with the usual LEAVEs, the members of one
#: that died meanwhile.  Returns 1 if written, 0 if the node was back.
RESTORE = """
local node = ARGV[1]
if redis.call('ZSCORE', P .. 'nodes', node) then return 0 end
redis.call('ZADD', P .. 'nodes', nowMs(), node)
for i = 2, #ARGV, 4 do
  local mid, name, keys, rooms = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local mkey = P .. 'member:' .. mid
  if redis.call('EXISTS', mkey) == 0 then
    local held = {}
    for _, k in ipairs(splitKeys(keys)) do
      if redis.call('SET', P .. 'name:' .. k, mid, 'NX') then held[#held + 1] = k end
    end
    redis.call('HSET', mkey, 'name', name, 'keys', table.concat(held, '\\n'))
    redis.call('SADD', P .. 'node:' .. node .. ':members', mid)
    for _, line in ipairs(splitKeys(rooms)) do
      local rkey, rname = string.match(line, '^([^\\t]*)\\t(.*)$')
      local rk = P .. 'room:' .. rkey
      redis.call('HSETNX', rk, 'name', rname)
      redis.call('SADD', P .. 'rooms', rkey)
      if not redis.call('ZSCORE', rk .. ':members', mid) then
        redis.call('ZADD', rk .. ':members', redis.call('INCR', P .. 'seq'), mid)
      end
      redis.call('SADD', mkey .. ':rooms', rkey)
    end
  end
end
return 1
"""

#: No ARGV.  The whole shared state at one point of the bus:
#: C{{last bus entry id, {member id, name, ...}, {{room key, name, last id,
#: topic, setter, tts, member id...}, ...}}}.
SNAPSHOT = """
local tail = redis.call('XREVRANGE', P .. 'bus', '+', '-', 'COUNT', 1)
local lastId = '0-0'
if #tail > 0 then lastId = tail[1][1] end
local members = {}
for _, node in ipairs(redis.call('ZRANGE', P .. 'nodes', 0, -1)) do
  for _, mid in ipairs(redis.call('SMEMBERS', P .. 'node:' .. node .. ':members')) do
    local name = redis.call('HGET', P .. 'member:' .. mid, 'name')
    if name then
      members[#members + 1] = mid
      members[#members + 1] = name
    end
  end
end
local rooms = {}
for _, rkey in ipairs(redis.call('SMEMBERS', P .. 'rooms')) do
  local rk = P .. 'room:' .. rkey
  local h = redis.call('HMGET', rk, 'name', 'last', 'topic', 'setter', 'tts')
  local entry = {rkey, h[1] or rkey, h[2] or '0', h[3] or '', h[4] or '', h[5] or ''}
  for _, mid in ipairs(redis.call('ZRANGE', rk .. ':members', 0, -1)) do
    entry[#entry + 1] = mid
  end
  rooms[#rooms + 1] = entry
end
return {lastId, members, rooms}
"""

#: Every script by its operation's name, with the shared functions.
SCRIPTS = {
    name: _COMMON + body
    for name, body in {
        "claim": CLAIM,
        "release": RELEASE,
        "enter": ENTER,
        "leave": LEAVE,
        "publish": PUBLISH,
        "publishMany": PUBLISH_MANY,
        "topic": TOPIC,
        "heartbeat": HEARTBEAT,
        "retire": RETIRE,
        "restore": RESTORE,
        "snapshot": SNAPSHOT,
    }.items()
}
