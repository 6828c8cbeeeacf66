"""The Lua scripts behind RedisStore, one per state change.

Data model (``P`` is the key prefix, default ``js``; ``T`` the user tag, the
first 8 characters of every sid, so all keys of one user share a cluster slot):

``P:{T}<rest of sid>``  STRING, one session: a MessagePack array (packed and
                    unpacked only inside these scripts) of u user id, r role,
                    x extra claims (JSON), g generation, rt last rotation (ms),
                    c created (ms), lu last used (ms), ax absolute expiry (ms),
                    it idle TTL (ms), ua user agent, ip client address. One
                    packed string instead of a hash: a real user agent is over
                    the 64 bytes that keep a hash in compact listpack encoding,
                    and a hashtable costs ~850 bytes a session (docs/architecture.md).
                    TTL: until the session's expiry, min(ax, lu + it).
``P:{T}:u:<user>``  ZSET, the user's sessions: member sid, score expiry (ms).
                    TTL: the latest member's expiry.
``P:{T}:n:<user>``  STRING, the user's not-before (whole seconds): tokens with an
                    earlier iat are revoked. TTL: until they have all expired.
``P:feed``          STREAM, the revocation feed. Entry fields: k kind (jti|sid|
                    user), s subject, u until (ms), n not-before (s, user only).
                    IDs are ``<now ms>-<seq>`` from the caller's clock. Trimmed
                    from the oldest end once ``u`` has passed, by the scripts
                    that append (readers only read: docs/revocation-feed.md).

Every script takes the time as an argument (``now`` in ms), never reads the
server clock, and sets relative TTLs, so frozen-time tests behave like
production. Keys a script derives from a stored user id (the user index) are
built from ``ARGV`` prefixes and share the declared session key's slot.
"""

from __future__ import annotations

from typing import Final

# Shared helpers, prepended to scripts that need them.
_PRELUDE: Final = r"""
-- A session is a packed array: 1 u, 2 r, 3 x, 4 g, 5 rt, 6 c, 7 lu, 8 ax, 9 it, 10 ua, 11 ip.
local function load(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  return cmsgpack.unpack(v)
end

local function expiry(h)
  return math.min(h[8], h[7] + h[9])
end

local function save(key, h, now)
  redis.call('SET', key, cmsgpack.pack(h), 'PX', expiry(h) - now)
end

-- Where revocations go: the feed key, passed as the last ARGV. On Redis Cluster
-- it is '' (the feed lives in another slot), and the revocations are returned
-- for the client to append with FEED_ADD right after.
local FEED = ARGV[#ARGV]
local PENDING = {}

-- Drops up to 100 of the oldest feed entries whose until has passed. Returns
-- true when nothing more is dead at the head (it stopped at a live entry or the end).
local function trim_batch(feed, now)
  local batch = redis.call('XRANGE', feed, '-', '+', 'COUNT', 100)
  local dead = {}
  for _, entry in ipairs(batch) do
    local fields = entry[2]
    local until_ms
    for i = 1, #fields, 2 do
      if fields[i] == 'u' then until_ms = tonumber(fields[i + 1]) end
    end
    if until_ms and until_ms > now then break end
    dead[#dead + 1] = entry[1]
  end
  if #dead > 0 then redis.call('XDEL', feed, unpack(dead)) end
  return #dead < #batch or #batch == 0
end

-- The writer trims as it appends (one batch per script), so feed readers need
-- only read commands (docs/revocation-feed.md).
local TRIMMED = false

local function xadd(feed, now, kind, subject, until_ms, nbf)
  if not TRIMMED then
    TRIMMED = true
    trim_batch(feed, now)
  end
  -- The ID carries the caller's clock unless the stream already holds a later
  -- one (clock skew between processes); then Redis picks.
  local r = redis.pcall('XADD', feed, string.format('%d-*', now),
    'k', kind, 's', subject, 'u', string.format('%d', until_ms), 'n', nbf)
  if type(r) == 'table' and r.err then
    redis.call('XADD', feed, '*',
      'k', kind, 's', subject, 'u', string.format('%d', until_ms), 'n', nbf)
  end
end

local function feed_add(now, kind, subject, until_ms, nbf)
  if FEED == '' then
    for _, v in ipairs({kind, subject, string.format('%d', until_ms), tostring(nbf)}) do
      PENDING[#PENDING + 1] = v
    end
  else
    xadd(FEED, now, kind, subject, until_ms, nbf)
  end
end

-- Every script that may revoke returns {result, revocations not yet appended}.
local function publish(result)
  if result == nil then result = false end
  return {result, PENDING}
end

local function drop(key, index, sid)
  redis.call('DEL', key)
  redis.call('ZREM', index, sid)
end

local function reply(sid, h)
  local function n(x) return string.format('%d', x) end
  return {sid, h[1], h[2], h[3], n(h[4]), n(h[6]), n(h[7]), n(expiry(h)), n(h[8]), h[10], h[11]}
end
"""

#: KEYS[1] session, KEYS[2] user index, KEYS[3] user not-before.
#: ARGV: sid, user, role, extra JSON, now ms, absolute TTL ms, idle TTL ms, ua, ip.
#: Returns the user's not-before (seconds, 0 if none).
CREATE: Final = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[5])
local h = {ARGV[2], ARGV[3], ARGV[4], 0, now, now, now, now + tonumber(ARGV[6]),
           tonumber(ARGV[7]), ARGV[8], ARGV[9]}
save(KEYS[1], h, now)
local exp = expiry(h)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], exp, ARGV[1])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[2], tonumber(last[2]) - now)
return tonumber(redis.call('GET', KEYS[3]) or '0')
"""
)

#: KEYS[1] session.
#: ARGV: sid, presented generation, now ms, grace ms, ua, ip, revocation TTL ms,
#:       user-key prefix ("P:{T}:"), feed key ('' on a cluster).
#: Returns one flat array (the refresh path: no nesting for the client to parse):
#: {'ok'|'grace', not-before, 11 session fields}, {'nf'} for no live session, or
#: {'reused', user} after revoking the session (theft); on a cluster, followed
#: by the revocations to append (4 values each).
ROTATE: Final = (
    _PRELUDE
    + r"""
local sid = ARGV[1]
local now = tonumber(ARGV[3])
local h = load(KEYS[1])
if not h then return {'nf'} end
local index = ARGV[8] .. 'u:' .. h[1]
if now >= expiry(h) then
  drop(KEYS[1], index, sid)
  return {'nf'}
end
local presented = tonumber(ARGV[2])
local outcome
if presented == h[4] then
  h[4] = h[4] + 1
  h[5] = now
  outcome = 'ok'
elseif presented == h[4] - 1 and now - h[5] < tonumber(ARGV[4]) then
  outcome = 'grace'
else
  drop(KEYS[1], index, sid)
  feed_add(now, 'sid', sid, now + tonumber(ARGV[7]), 0)
  local out = {'reused', h[1]}
  for _, v in ipairs(PENDING) do out[#out + 1] = v end
  return out
end
h[7] = now
if ARGV[5] ~= '' then h[10] = ARGV[5] end
if ARGV[6] ~= '' then h[11] = ARGV[6] end
save(KEYS[1], h, now)
local exp = expiry(h)
redis.call('ZADD', index, exp, sid)
if redis.call('PTTL', index) < exp - now then redis.call('PEXPIRE', index, exp - now) end
local nbf = redis.call('GET', ARGV[8] .. 'n:' .. h[1]) or '0'
local out = {outcome, nbf}
for _, v in ipairs(reply(sid, h)) do out[#out + 1] = v end
return out
"""
)

#: KEYS[1] session. ARGV: sid, now ms. Returns session fields, or nil.
GET: Final = (
    _PRELUDE
    + r"""
local h = load(KEYS[1])
if not h or tonumber(ARGV[2]) >= expiry(h) then return nil end
return reply(ARGV[1], h)
"""
)

#: KEYS[1] user index. ARGV: now ms, session-key prefix ("P:{T}").
#: Returns a flat list of session field groups (11 each), live sessions only.
LIST: Final = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = load(ARGV[2] .. string.sub(sid, 9))
  if h and now < expiry(h) then
    for _, v in ipairs(reply(sid, h)) do out[#out + 1] = v end
  end
end
return out
"""
)

#: KEYS[1] session. ARGV: role, extra JSON, now ms. Returns 1 if updated, 0 if gone.
UPDATE_CLAIMS: Final = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[3])
local h = load(KEYS[1])
if not h or now >= expiry(h) then return 0 end
h[2], h[3] = ARGV[1], ARGV[2]
save(KEYS[1], h, now)
return 1
"""
)

#: KEYS[1] session. ARGV: sid, now ms, revocation TTL ms, user-key prefix, feed key.
#: Ends one session and revokes its access tokens. The revocation is written
#: even if the session has already ended: its access tokens may still be live.
#: Returns the session's fields if it was live, else nil.
REVOKE_SESSION: Final = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[2])
local h = load(KEYS[1])
if h then drop(KEYS[1], ARGV[4] .. 'u:' .. h[1], ARGV[1]) end
feed_add(now, 'sid', ARGV[1], now + tonumber(ARGV[3]), 0)
if not h or now >= expiry(h) then return publish(nil) end
return publish(reply(ARGV[1], h))
"""
)

#: KEYS[1] session.
#: ARGV: sid, now ms, revocation TTL ms, user-key prefix, session-key prefix, feed key.
#: Ends every other session of the same user. Returns the ended sids, or nil
#: if ``sid`` itself is not live.
REVOKE_OTHERS: Final = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[2])
local h = load(KEYS[1])
if not h or now >= expiry(h) then return publish(nil) end
local index = ARGV[4] .. 'u:' .. h[1]
local ended = {}
for _, other in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  if other ~= ARGV[1] then
    drop(ARGV[5] .. string.sub(other, 9), index, other)
    feed_add(now, 'sid', other, now + tonumber(ARGV[3]), 0)
    ended[#ended + 1] = other
  end
end
return publish(ended)
"""
)

#: KEYS[1] user index, KEYS[2] user not-before.
#: ARGV: user, now ms, revocation TTL ms, end sessions (1|0), session-key prefix ("P:{T}"),
#:       role ('' keeps), extra JSON ('' keeps), feed key.
#: Revokes every access token of the user issued up to now; ends the sessions
#: (logout everywhere) or rewrites their claims (reissue). Returns ended sids.
REVOKE_USER: Final = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[2])
-- Strictly increasing: a token issued after a revocation in the same second
-- carries iat == the previous not-before, and must still be caught.
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local nbf = math.max(math.floor(now / 1000) + 1, previous + 1)
local until_ms = nbf * 1000 + tonumber(ARGV[3])
redis.call('SET', KEYS[2], nbf, 'PX', until_ms - now)
feed_add(now, 'user', ARGV[1], until_ms, nbf)
local sids = redis.call('ZRANGE', KEYS[1], 0, -1)
if ARGV[4] == '1' then
  for _, sid in ipairs(sids) do
    redis.call('DEL', ARGV[5] .. string.sub(sid, 9))
    -- Exact, whatever the iat: every token of an ended session is revoked.
    feed_add(now, 'sid', sid, now + tonumber(ARGV[3]), 0)
  end
  redis.call('DEL', KEYS[1])
  return publish(sids)
end
for _, sid in ipairs(sids) do
  local key = ARGV[5] .. string.sub(sid, 9)
  local h = load(key)
  if h and now < expiry(h) then
    if ARGV[6] ~= '' then h[2] = ARGV[6] end
    if ARGV[7] ~= '' then h[3] = ARGV[7] end
    save(key, h, now)
  end
end
return publish({})
"""
)

#: KEYS[1] feed. ARGV: now ms, then (kind, subject, until ms, not-before) per entry,
#: then KEYS[1] again (the prelude's FEED). Appends revocations: one access token
#: (REVOKE_TOKEN), or on a cluster the ones a state script returned.
FEED_ADD: Final = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[1])
for i = 2, #ARGV - 4, 4 do
  xadd(KEYS[1], now, ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3])
end
return #ARGV
"""
)

#: KEYS: one counter per bucket. ARGV: now ms, limit, window ms.
#: Fixed windows aligned to multiples of the window. Returns 0 if every bucket
#: is within the limit, else the ms until the fullest bucket's window ends.
RATE_LIMIT: Final = r"""
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ends = (math.floor(now / window) + 1) * window
local retry = 0
for _, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, ends - now) end
  if count > limit then retry = ends - now end
end
return retry
"""

#: KEYS: one counter per bucket (the keys RATE_LIMIT counted in). ARGV: none.
#: Takes one back from each counter that still exists and is above zero; an
#: expired window is never recreated (DECR on a missing key would make one
#: without a TTL). DECR keeps the key's TTL. Returns nothing.
RATE_REFUND: Final = r"""
for _, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count > 0 then redis.call('DECR', key) end
end
return 0
"""

#: KEYS[1] feed. ARGV: now ms.
#: Removes the oldest entries whose ``until`` has passed; stops at the first
#: live one. Returns the stream length after trimming.
TRIM: Final = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[1])
while not trim_batch(KEYS[1], now) do end
return redis.call('XLEN', KEYS[1])
"""
)
