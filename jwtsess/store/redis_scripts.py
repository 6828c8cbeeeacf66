"""The Lua scripts behind RedisStore, one per state change.

Key names and the reply shape are in ``redis_protocol``. Values:

``P:{T}<rest of sid>``  STRING, one session: a MessagePack array (packed and
                    unpacked only inside these scripts) of 1 u user id, 2 r role,
                    3 x extra claims (JSON), 4 g generation, 5 rt last rotation,
                    6 c created, 7 lu last used, 8 ax absolute expiry, 9 it idle
                    TTL, 10 ua user agent, 11 ip client address, 12 b binding of
                    the client holding generation g, 13 ga grace answers given
                    for g, 14 we end of the rate-limit window, 15 wc refreshes
                    counted in it (times in ms). One packed string instead of a
                    hash: a real user agent is over the 64 bytes that keep a hash
                    in compact listpack encoding, and a hashtable costs ~850
                    bytes a session (docs/architecture.md).
                    TTL: until the session's expiry, min(ax, lu + it).
``P:{T}:u:<user>``  ZSET, the user's sessions: member sid, score expiry (ms).
                    TTL: the latest member's expiry.
``P:{T}:n:<user>``  STRING ``<not-before µs>:<until ms>``: the user's tokens with
                    an earlier iat_us are revoked, until ``until``.
``P:feed``          STREAM, the revocation feed. Entry fields: k kind (jti|sid|
                    user), s subject, u until (ms), n not-before (µs, user only).
                    IDs are ``<now ms>-<seq>`` from the caller's clock. Trimmed
                    from the oldest end once ``u`` has passed, by the scripts
                    that append (readers only read: docs/revocation-feed.md).

Every script takes the time as an argument (``now`` in ms), never reads the
server clock, decides liveness from stored instants (TTLs only collect
garbage), and sets relative TTLs, so frozen-time tests behave like production.
State scripts take the key prefix as ``ARGV[1]`` and the feed key as the last
ARGV, and answer ``{status, pending, payload...}``. MemoryStore is their
readable specification (tests/test_store_model.py).
"""

from __future__ import annotations

from typing import Final

from .redis_protocol import LUA_KEYS, LUA_REPLY

#: Drops up to 100 of the oldest feed entries whose until has passed. Returns
#: true when nothing more is dead at the head (it stopped at a live entry or the end).
TRIM_BATCH: Final = r"""
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
"""

# Shared helpers, prepended to every state script.
_PRELUDE: Final = (
    LUA_KEYS
    + TRIM_BATCH
    + r"""
local function load(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  local h = cmsgpack.unpack(v)
  -- Sessions written before bindings and per-session limits existed.
  if h[12] == nil then h[12], h[13], h[14], h[15] = '', 0, 0, 0 end
  return h
end

local function expiry(h)
  return math.min(h[8], h[7] + h[9])
end

"""
    + LUA_REPLY
    + r"""
local function save(key, h, now)
  redis.call('SET', key, cmsgpack.pack(h), 'PX', expiry(h) - now)
end

local function drop(key, index, sid)
  redis.call('DEL', key)
  redis.call('ZREM', index, sid)
end

-- The user's not-before (µs) while it lasts, else 0.
local function not_before(tag, user, now)
  local v = redis.call('GET', k_nbf(tag, user))
  if not v then return 0 end
  local nbf, until_ms = string.match(v, '^(%d+):(%d+)$')
  if not nbf then return (tonumber(v) or 0) * 1000000 end  -- 0.1.0: seconds; its TTL rules
  if tonumber(until_ms) <= now then return 0 end
  return tonumber(nbf)
end

-- A session's tokens carry iat_us <= max(now, the user's not-before): its
-- revocation outlives them all.
local function revocation_until(tag, user, now, ttl)
  return math.max(now, math.ceil(not_before(tag, user, now) / 1000)) + ttl
end

-- Where revocations go: the feed key, the last ARGV. On Redis Cluster it is ''
-- (the feed lives in another slot): the revocations are answered as pending
-- for the client to append with FEED_ADD right after.
local FEED = ARGV[#ARGV]
local PENDING = {}

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
  local u, n = string.format('%d', until_ms), string.format('%d', nbf)
  local r = redis.pcall('XADD', feed, string.format('%d-*', now),
    'k', kind, 's', subject, 'u', u, 'n', n)
  if type(r) == 'table' and r.err then
    redis.call('XADD', feed, '*', 'k', kind, 's', subject, 'u', u, 'n', n)
  end
end

local function feed_add(now, kind, subject, until_ms, nbf)
  if FEED == '' then
    for _, v in ipairs({kind, subject, string.format('%d', until_ms), string.format('%d', nbf)}) do
      PENDING[#PENDING + 1] = v
    end
  else
    xadd(FEED, now, kind, subject, until_ms, nbf)
  end
end

-- End a live session: drop it and revoke its access tokens.
local function end_session(key, tag, sid, user, now, ttl)
  drop(key, k_index(tag, user), sid)
  feed_add(now, 'sid', sid, revocation_until(tag, user, now, ttl), 0)
end

-- Strictly increasing, at most one µs past the clock per revocation: a token
-- issued right after one carries iat_us equal to it and must still be caught by
-- the next; a revocation takes far longer than a µs, so it never outruns the clock.
local function revoke_user(tag, user, now, now_us, ttl)
  local nbf = math.max(now_us + 1, not_before(tag, user, now) + 1)
  local until_ms = math.ceil(nbf / 1000) + ttl
  redis.call('SET', k_nbf(tag, user), string.format('%d:%d', nbf, until_ms), 'PX', until_ms - now)
  feed_add(now, 'user', user, until_ms, nbf)
end

-- The user's live sessions in sid order; expired members leave the index.
local function live_sids(index, now)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  local sids = redis.call('ZRANGE', index, 0, -1)
  table.sort(sids)
  return sids
end

-- Every state script answers {status, pending revocations, payload...}.
local function answer(status, payload)
  local out = {status, PENDING}
  for _, v in ipairs(payload or {}) do out[#out + 1] = v end
  return out
end

local function with_session(first, sid, h)
  local out = {first}
  for _, v in ipairs(reply(sid, h)) do out[#out + 1] = v end
  return out
end
"""
)

#: KEYS[1] session. ARGV: P, sid, user, role, extra JSON, now ms, absolute TTL ms,
#: idle TTL ms, ua, ip, binding, feed.
#: Answers 'ok' with {not-before µs, session fields}.
CREATE: Final = (
    _PRELUDE
    + r"""
local sid, user = ARGV[2], ARGV[3]
local now = tonumber(ARGV[6])
local h = {user, ARGV[4], ARGV[5], 0, now, now, now, now + tonumber(ARGV[7]),
           tonumber(ARGV[8]), ARGV[9], ARGV[10], ARGV[11], 0, 0, 0}
save(KEYS[1], h, now)
local tag = string.sub(sid, 1, 8)
local index = k_index(tag, user)
redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
redis.call('ZADD', index, expiry(h), sid)
local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', index, tonumber(last[2]) - now)
return answer('ok', with_session(string.format('%d', not_before(tag, user, now)), sid, h))
"""
)

#: KEYS[1] session.
#: ARGV: P, sid, presented generation, now ms, grace ms, ua, ip, revocation TTL ms,
#:       binding, grace answers allowed, refresh limit, window ms, address retry ms, feed.
#: First the generation decides (theft is detected whatever any limit says), then
#: the limits apply to a request that may go ahead (refused ones are not counted).
#: Answers 'ok' | 'grace' with {not-before µs, session fields}; 'nf' (no live
#: session); 'reused' with {user} after revoking the session (theft); 'limited'
#: with {retry ms}; 'unbound' (a key-bound session, another binding).
ROTATE: Final = (
    _PRELUDE
    + r"""
local sid = ARGV[2]
local now = tonumber(ARGV[4])
local h = load(KEYS[1])
if not h then return answer('nf') end
local tag = string.sub(sid, 1, 8)
local index = k_index(tag, h[1])
if now >= expiry(h) then
  drop(KEYS[1], index, sid)
  return answer('nf')
end
local presented, binding = tonumber(ARGV[3]), ARGV[9]
local outcome
if presented == h[4] then
  if string.sub(h[12], 1, 4) == 'jkt:' and binding ~= h[12] then return answer('unbound') end
  outcome = 'ok'
elseif presented == h[4] - 1 and now - h[5] < tonumber(ARGV[5]) and binding == h[12] then
  if h[13] >= tonumber(ARGV[10]) then return answer('limited', {'1000', 'grace'}) end
  outcome = 'grace'
else
  end_session(KEYS[1], tag, sid, h[1], now, tonumber(ARGV[8]))
  return answer('reused', {h[1]})
end
local window = tonumber(ARGV[12])
if h[14] <= now then h[14], h[15] = (math.floor(now / window) + 1) * window, 0 end
if h[15] >= tonumber(ARGV[11]) then
  return answer('limited', {string.format('%d', h[14] - now)})
end
if tonumber(ARGV[13]) > 0 then return answer('limited', {ARGV[13]}) end
h[15] = h[15] + 1
if outcome == 'ok' then
  h[4], h[5], h[12], h[13] = h[4] + 1, now, binding, 0
else
  h[13] = h[13] + 1
end
h[7] = now
if ARGV[6] ~= '' then h[10] = ARGV[6] end
if ARGV[7] ~= '' then h[11] = ARGV[7] end
save(KEYS[1], h, now)
local exp = expiry(h)
redis.call('ZADD', index, exp, sid)
if redis.call('PTTL', index) < exp - now then redis.call('PEXPIRE', index, exp - now) end
return answer(outcome, with_session(string.format('%d', not_before(tag, h[1], now)), sid, h))
"""
)

#: KEYS[1] session. ARGV: P, sid, now ms, feed. Answers 'ok' with session fields, or 'nf'.
GET: Final = (
    _PRELUDE
    + r"""
local h = load(KEYS[1])
if not h or tonumber(ARGV[3]) >= expiry(h) then return answer('nf') end
return answer('ok', reply(ARGV[2], h))
"""
)

#: KEYS[1] user index. ARGV: P, tag, now ms, feed.
#: Answers 'ok' with the live sessions' fields, one group each, in sid order.
LIST: Final = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[3])
local out = {}
for _, sid in ipairs(live_sids(KEYS[1], now)) do
  local h = load(k_session(sid))
  if h and now < expiry(h) then
    for _, v in ipairs(reply(sid, h)) do out[#out + 1] = v end
  end
end
return answer('ok', out)
"""
)

#: KEYS[1] session. ARGV: P, role, extra JSON, now ms, feed. Answers 'ok', or 'nf' if gone.
UPDATE_CLAIMS: Final = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[4])
local h = load(KEYS[1])
if not h or now >= expiry(h) then return answer('nf') end
h[2], h[3] = ARGV[2], ARGV[3]
save(KEYS[1], h, now)
return answer('ok')
"""
)

#: KEYS[1] session. ARGV: P, sid, now ms, revocation TTL ms, feed.
#: Ends one session and revokes its access tokens. The revocation is written
#: even if the session has already ended: its access tokens may still be live.
#: Answers 'ok' with the session's fields if it was live, else 'nf'.
REVOKE_SESSION: Final = (
    _PRELUDE
    + r"""
local sid = ARGV[2]
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local tag = string.sub(sid, 1, 8)
local h = load(KEYS[1])
if h and now < expiry(h) then
  end_session(KEYS[1], tag, sid, h[1], now, ttl)
  return answer('ok', reply(sid, h))
end
if h then drop(KEYS[1], k_index(tag, h[1]), sid) end
feed_add(now, 'sid', sid, now + ttl, 0)
return answer('nf')
"""
)

#: KEYS[1] session. ARGV: P, sid, now ms, revocation TTL ms, feed.
#: Ends every other live session of the same user. Answers 'ok' with the ended
#: sids, or 'nf' if ``sid`` itself is not live.
LOGOUT_OTHERS: Final = (
    _PRELUDE
    + r"""
local sid = ARGV[2]
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local h = load(KEYS[1])
if not h or now >= expiry(h) then return answer('nf') end
local tag = string.sub(sid, 1, 8)
local ended = {}
for _, other in ipairs(live_sids(k_index(tag, h[1]), now)) do
  if other ~= sid then
    end_session(k_session(other), tag, other, h[1], now, ttl)
    ended[#ended + 1] = other
  end
end
return answer('ok', ended)
"""
)

#: KEYS[1] user index. ARGV: P, tag, user, now ms, now µs, revocation TTL ms,
#: own sid ('' for none), feed.
#: Revokes every access token of the user issued up to now and ends every live
#: session. Answers 'ok' with the ended sids, or 'nf' (nothing done) if the own
#: session is given and no longer live.
LOGOUT_ALL: Final = (
    _PRELUDE
    + r"""
local tag, user = ARGV[2], ARGV[3]
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[6])
if ARGV[7] ~= '' then
  local own = load(k_session(ARGV[7]))
  if not own or now >= expiry(own) or own[1] ~= user then return answer('nf') end
end
revoke_user(tag, user, now, tonumber(ARGV[5]), ttl)
local sids = live_sids(KEYS[1], now)
for _, sid in ipairs(sids) do
  -- Exact, whatever the iat: every token of an ended session is revoked.
  end_session(k_session(sid), tag, sid, user, now, ttl)
end
redis.call('DEL', KEYS[1])
return answer('ok', sids)
"""
)

#: KEYS[1] user index. ARGV: P, tag, user, now ms, now µs, revocation TTL ms,
#: role ('' keeps), extra JSON ('' keeps), feed.
#: Revokes every access token of the user issued up to now; the sessions live on
#: with the new claims. Answers 'ok'.
REISSUE: Final = (
    _PRELUDE
    + r"""
local tag, user = ARGV[2], ARGV[3]
local now = tonumber(ARGV[4])
revoke_user(tag, user, now, tonumber(ARGV[5]), tonumber(ARGV[6]))
for _, sid in ipairs(live_sids(KEYS[1], now)) do
  local key = k_session(sid)
  local h = load(key)
  if h and now < expiry(h) then
    if ARGV[7] ~= '' then h[2] = ARGV[7] end
    if ARGV[8] ~= '' then h[3] = ARGV[8] end
    save(key, h, now)
  end
end
return answer('ok')
"""
)

#: KEYS[1] feed. ARGV: P, now ms, then (kind, subject, until ms, not-before) per
#: entry, then the feed key again (the prelude's FEED). Appends revocations: one
#: access token (``revoke_token``), or on a cluster the ones a state script answered.
FEED_ADD: Final = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[2])
for i = 3, #ARGV - 4, 4 do
  xadd(KEYS[1], now, ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]))
end
return answer('ok')
"""
)
