-- The one atomic log-and-publish step of the live-progress kit. Every publisher (Node, Python, any
-- language) runs this file with EVALSHA/EVAL; it is the single source of truth, never copy it.
--
-- Key names (logKey, stateKey, textsKey and textKey in server/src/channels.ts): the project id in braces, a Redis
-- Cluster hash tag, so all four keys live in one hash slot and this script runs on a cluster too. With prefix
-- "ai_story" and project "42": ai_story:project:{42}:log, ai_story:project:{42}:text:rewrite.
-- The channel is not a key and has no braces (its name is the external contract); PUBLISH is not bound
-- to a slot: a cluster forwards it to every node, so subscribers on any node hear it.
--
-- KEYS[1]  the project's replay log, a stream:   <prefix>:project:{<project_id>}:log
-- KEYS[2]  the project's latest state, a hash:    <prefix>:project:{<project_id>}:state
-- ARGV[1]  channel                                <prefix>:project:<project_id>:stage:<stage>
-- ARGV[2]  stage name
-- ARGV[3]  message type (the state-hash field is "<stage>|<type>")
-- ARGV[4]  the message: a compact JSON object text WITHOUT an "id" field, starting with "{"
-- ARGV[5]  maximum length of the log (exact trimming)
-- ARGV[6]  time to live of the log and the state, in seconds
-- Returns the new id, a stream id "<ms>-<seq>", unique and ordered within the project.
--
-- A token in linear form (every publisher of this kit sends them so): the message carries "content" and "offset"
-- (where the piece starts in the stage's text, in UTF-16 code units, as JavaScript counts) and no "full_text",
-- and the stage's text so far is kept once, in a key that grows by appending. Then also:
-- KEYS[3]  the project's text lengths, a hash:    <prefix>:project:{<project_id>}:texts
--          field "<stage>": the length of the stage's text in UTF-16 code units; "<stage>|id": the id of its last token
-- KEYS[4]  the stage's text so far, a string:     <prefix>:project:{<project_id>}:text:<stage>
-- ARGV[7]  the piece ("content"), as in the message
-- ARGV[8]  its offset, as in the message: 0 starts a new run of the stage (the text becomes the piece); any other
--          offset must be the text's length, or nothing is written and the call fails (a lost or repeated token
--          must never become a silently wrong text)
-- ARGV[9]  optional: the whole text including the piece, when a publisher joins a stage mid-run (a retried task,
--          or a worker of an older version wrote the text before): the kept text becomes it, whatever it was
-- Without ARGV[7] the message is logged and published as it is (the original format, and older callers).

local message = ARGV[4]
local maxlen = tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])
if string.sub(message, 1, 1) ~= '{' then
  return redis.error_reply('ERR publish.lua: the message must be a JSON object text starting with "{"')
end
if not maxlen or maxlen < 1 or maxlen % 1 ~= 0 or not ttl or ttl < 1 or ttl % 1 ~= 0 then
  return redis.error_reply('ERR publish.lua: maxlen and ttl must be positive integers')
end
-- The stage and the type name the state-hash field, and so keys of every snapshot built from it: refuse the
-- names of a JavaScript object's internals, as every publisher does (RESERVED_IDS in server/src/channels.ts).
local reserved = { ['__proto__'] = true, constructor = true, prototype = true }
if reserved[ARGV[2]] or reserved[ARGV[3]] then
  return redis.error_reply('ERR publish.lua: the stage and the type must not be "__proto__", "constructor" or "prototype": they name an object\'s internals')
end
maxlen = string.format('%d', maxlen)
ttl = string.format('%d', ttl)

-- UTF-16 code units of a UTF-8 text: one per character (every byte that is not a continuation byte), and a
-- second one for each character beyond the BMP (a 4-byte sequence). O(piece), never O(text).
local function utf16_length(text)
  local _, chars = string.gsub(text, '[^\128-\191]', '')
  local _, astral = string.gsub(text, '[\240-\247]', '')
  return chars + astral
end

local piece = ARGV[7]
if piece then
  if #KEYS < 4 then
    return redis.error_reply('ERR publish.lua: a linear token needs KEYS[3] (texts hash) and KEYS[4] (the stage text)')
  end
  local offset = tonumber(ARGV[8])
  if not offset or offset < 0 or offset % 1 ~= 0 then
    return redis.error_reply('ERR publish.lua: the token offset must be an integer >= 0')
  end
  local whole = ARGV[9]
  if whole and whole ~= '' then
    redis.call('SET', KEYS[4], whole)
    redis.call('HSET', KEYS[3], ARGV[2], utf16_length(whole))
  elseif offset == 0 then
    redis.call('SET', KEYS[4], piece)
    redis.call('HSET', KEYS[3], ARGV[2], utf16_length(piece))
  else
    local length = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
    if offset ~= length then
      return redis.error_reply(string.format(
        'ERR publish.lua: token offset %d does not continue the text of stage "%s", which has %d UTF-16 code units: a token was lost or sent twice',
        offset, ARGV[2], length))
    end
    redis.call('APPEND', KEYS[4], piece)
    redis.call('HINCRBY', KEYS[3], ARGV[2], utf16_length(piece))
  end
end

-- The log keeps the message without its id: the entry id is the id.
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '=', maxlen, '*', 'stage', ARGV[2], 'data', message)

-- Insert "id" as the first field; an empty object gets no separating comma.
local rest = string.sub(message, 2)
local live
if string.find(rest, '^[ \t\r\n]*}') then
  live = '{"id":"' .. id .. '"}'
else
  live = '{"id":"' .. id .. '",' .. rest
end

redis.call('HSET', KEYS[2], ARGV[2] .. '|' .. ARGV[3], live)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
if piece then
  redis.call('HSET', KEYS[3], ARGV[2] .. '|id', id)
  redis.call('EXPIRE', KEYS[3], ttl)
  redis.call('EXPIRE', KEYS[4], ttl)
end
redis.call('PUBLISH', ARGV[1], live)
return id
