-- The one atomic log-and-publish step of the live-progress kit. Every publisher (Node, Python, any
-- language) runs this file with EVALSHA/EVAL; it is the single source of truth, never copy it.
--
-- Key names: the project id in braces, a Redis Cluster hash tag, so both keys live in one hash slot and
-- this script runs on a cluster too. With prefix "ai_story" and project "42": ai_story:project:{42}:log.
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
redis.call('PUBLISH', ARGV[1], live)
return id
