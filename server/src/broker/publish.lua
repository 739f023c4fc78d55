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
--
-- Control (what the kit's publishers send by default; older callers and plain workers leave it out): one more
-- key, the project's control hash, always the LAST key (so KEYS has 3 or 5 entries), and one more argument, a JSON
-- object of options, always the LAST argument. With a linear token ARGV[9] is then always present ('' = no whole text).
-- KEYS[#KEYS] the project's control hash:        <prefix>:project:{<project_id>}:control
--          "status|<stage>"  running | done | error | cancelled | lost      "run|<stage>"   the run publishing it
--          "lease|<stage>"   "<run>|<deadline ms, Redis TIME>"              "lost|<stage>"  the run whose lease expired
--          "cancel|<stage>"  the run that was cancelled ("*": none known)    "cancelid|<stage>" the cancel message's id
--          "seq|<producer>"  the producer's highest sequence number          "sid|<producer>|<seq % 32>" "<seq>:<id>"
--          "ttl_at"          when a call last set the TTLs (ms, Redis time; see "Time to live" below)
--          It has the log's TTL.
-- ARGV[#ARGV] options, all optional: {"op": "publish" (default) | "renew" | "cancel" | "reap",
--          "producer": "<id>", "seq": N, "run": "<id>" (default: producer), "lease_ms": N, "final": true}
--   publish  with producer and seq: a sequence already logged returns its original id and writes and publishes
--            nothing (a retried publish whose reply was lost). With run: refused with
--            'ERR publish.lua: lease lost ...' once the run's lease expired and the stage was marked lost, and with
--            'ERR publish.lua: stage cancelled ...' once the run was cancelled, unless "final" (its last word).
--            A new run of a stage starts it over (status running); done and error end it and drop its lease;
--            with lease_ms a publish of a running run renews its lease once a third of it has passed. Returns the id.
--   renew    (a heartbeat; the message is ignored, pass "{}") renews the run's lease: returns
--            {"ok", deadline_ms} or {"cancelled"|"lost"|"superseded"|"finished", 0}.
--   cancel   the message is the "cancelled" message to log and publish: returns {"cancelled", id} for a running
--            stage, {"already_cancelled", id}, {"finished", "<done|error|lost>"} or {"not_running", ""}.
--   reap     the message is the worker-lost "error" to log and publish when the stage's lease has expired:
--            returns {"reaped", id}, {"alive", deadline_ms} or {"gone", ""}. Atomic: one caller of many wins.
--   cancel and reap also PUBLISH the message on <prefix>:project:<project_id>:control:<stage> (derived from
--   ARGV[1]), where the stage's worker listens.

local message = ARGV[4]
if string.sub(message, 1, 1) ~= '{' then
  return redis.error_reply('ERR publish.lua: the message must be a JSON object text starting with "{"')
end
-- Positive integers, as texts for the commands: taken as they are when written as digits (what every publisher
-- sends), else read as numbers and written again ("1000.0" is 1000).
local function count(text)
  if string.find(text, '^[1-9]%d*$') then return text, tonumber(text) end
  local n = tonumber(text)
  if not n or n < 1 or n % 1 ~= 0 then return nil end
  return string.format('%d', n), n
end
local maxlen = count(ARGV[5])
local ttl, ttl_seconds = count(ARGV[6])
if not maxlen or not ttl then
  return redis.error_reply('ERR publish.lua: maxlen and ttl must be positive integers')
end
-- The stage and the type name the state-hash field, and so keys of every snapshot built from it: refuse the
-- names of a JavaScript object's internals, as every publisher does (RESERVED_IDS in server/src/channels.ts).
local reserved = { ['__proto__'] = true, constructor = true, prototype = true }
if reserved[ARGV[2]] or reserved[ARGV[3]] then
  return redis.error_reply('ERR publish.lua: the stage and the type must not be "__proto__", "constructor" or "prototype": they name an object\'s internals')
end

-- Control: the last key and the last argument (see the header).
local control_key, options = nil, {}
local linear = #KEYS >= 4
if #KEYS == 3 or #KEYS == 5 then
  control_key = KEYS[#KEYS]
  local ok, parsed = pcall(cjson.decode, ARGV[#ARGV])
  if not ok or type(parsed) ~= 'table' then
    return redis.error_reply('ERR publish.lua: the last argument must be a JSON object of control options')
  end
  options = parsed
end
local op = options.op or 'publish'
local stage = ARGV[2]
local function is_text(v) return type(v) == 'string' and #v > 0 and #v <= 128 end
-- The control fields a publish reads, in one HMGET; any other field is read when asked for (false: absent).
local known = {}
if control_key then
  local names = { 'status|' .. stage, 'run|' .. stage, 'lost|' .. stage, 'cancel|' .. stage, 'lease|' .. stage, 'ttl_at' }
  if is_text(options.producer) then names[#names + 1] = 'seq|' .. options.producer end
  local values = redis.call('HMGET', control_key, unpack(names))
  for i = 1, #names do known[names[i]] = values[i] end
end
local function cget(field)
  if not control_key then return false end
  local value = known[field]
  if value == nil then
    value = redis.call('HGET', control_key, field)
    known[field] = value
  end
  return value
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if options.producer ~= nil and not is_text(options.producer) then
  return redis.error_reply('ERR publish.lua: "producer" must be a text of 1 to 128 bytes')
end
if options.seq ~= nil and (type(options.seq) ~= 'number' or options.seq < 1 or options.seq % 1 ~= 0) then
  return redis.error_reply('ERR publish.lua: "seq" must be a positive integer')
end
local run = options.run or options.producer
if run ~= nil and not is_text(run) then return redis.error_reply('ERR publish.lua: "run" must be a text of 1 to 128 bytes') end
local lease_ms = tonumber(options.lease_ms)
if lease_ms ~= nil and (lease_ms < 1 or lease_ms % 1 ~= 0) then return redis.error_reply('ERR publish.lua: "lease_ms" must be a positive integer') end
if op ~= 'publish' and not control_key then return redis.error_reply('ERR publish.lua: "op" needs the control key') end
local terminal = { done = true, error = true, cancelled = true, lost = true }

if op == 'renew' then
  if not run or not lease_ms then return redis.error_reply('ERR publish.lua: renew needs "run" and "lease_ms"') end
  if cget('lost|' .. stage) == run then return { 'lost', 0 } end
  if cget('cancel|' .. stage) == run then return { 'cancelled', 0 } end
  local current = cget('run|' .. stage)
  if current and current ~= run then return { 'superseded', 0 } end
  if terminal[cget('status|' .. stage) or ''] then return { 'finished', 0 } end
  local deadline = now_ms() + lease_ms
  redis.call('HSET', control_key, 'lease|' .. stage, run .. '|' .. deadline, 'run|' .. stage, run, 'status|' .. stage, 'running')
  redis.call('EXPIRE', control_key, ttl)
  return { 'ok', deadline }
end

-- The status of a stage whose publishers sent no control (older workers): from its latest messages in the state.
local function legacy_status()
  local latest, latest_type = nil, nil
  local fields = redis.call('HGETALL', KEYS[2])
  for i = 1, #fields, 2 do
    local name = fields[i]
    if string.sub(name, 1, #stage + 1) == stage .. '|' then
      local id = string.match(fields[i + 1], '^{"id":"(%d+%-%d+)"')
      if id then
        local ms, sq = string.match(id, '(%d+)-(%d+)')
        local key = { tonumber(ms), tonumber(sq) }
        if not latest or key[1] > latest[1] or (key[1] == latest[1] and key[2] > latest[2]) then
          latest, latest_type = key, string.sub(name, #stage + 2)
        end
      end
    end
  end
  if not latest then return nil end
  if terminal[latest_type] then return latest_type end
  return 'running'
end

if op == 'cancel' then
  local status = cget('status|' .. stage) or legacy_status()
  if not status then return { 'not_running', '' } end
  if status == 'cancelled' then return { 'already_cancelled', cget('cancelid|' .. stage) or '' } end
  if terminal[status] then return { 'finished', status } end
elseif op == 'reap' then
  local lease = cget('lease|' .. stage)
  if not lease then return { 'gone', '' } end
  local owner, deadline = string.match(lease, '^(.*)|(%d+)$')
  deadline = tonumber(deadline)
  if owner and deadline and deadline > now_ms() then return { 'alive', deadline } end
  redis.call('HDEL', control_key, 'lease|' .. stage)
  if terminal[cget('status|' .. stage) or ''] then return { 'gone', '' } end
  redis.call('HSET', control_key, 'lost|' .. stage, owner or '', 'status|' .. stage, 'lost')
elseif op == 'publish' then
  -- A sequence already logged: its id, and nothing written or published.
  if options.producer and options.seq then
    local last = tonumber(cget('seq|' .. options.producer) or '0')
    if options.seq <= last then
      local kept = cget('sid|' .. options.producer .. '|' .. (options.seq % 32)) or ''
      local kept_seq, kept_id = string.match(kept, '^(%d+):(.*)$')
      if tonumber(kept_seq) == options.seq then return kept_id end
      return redis.error_reply(string.format('ERR publish.lua: sequence %d of producer "%s" is older than the last 32 it logged', options.seq, options.producer))
    end
  end
  if run then
    if cget('lost|' .. stage) == run then
      return redis.error_reply(string.format('ERR publish.lua: lease lost: the lease of run "%s" on stage "%s" expired and the stage was marked lost', run, stage))
    end
    if cget('cancel|' .. stage) == run and not options.final then
      return redis.error_reply(string.format('ERR publish.lua: stage cancelled: stage "%s" was cancelled (run "%s")', stage, run))
    end
  end
else
  return redis.error_reply('ERR publish.lua: unknown "op"')
end

-- UTF-16 code units of a UTF-8 text: one per character (every byte that is not a continuation byte), and a
-- second one for each character beyond the BMP (a 4-byte sequence). O(piece), never O(text).
local function utf16_length(text)
  local _, chars = string.gsub(text, '[^\128-\191]', '')
  local _, astral = string.gsub(text, '[\240-\247]', '')
  return chars + astral
end

local piece, fresh_text = nil, false
if linear or (not control_key and ARGV[7]) then piece = ARGV[7] end
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
    redis.call('SET', KEYS[4], whole, 'EX', ttl)
    fresh_text = redis.call('HSET', KEYS[3], ARGV[2], utf16_length(whole)) == 1
  elseif offset == 0 then
    redis.call('SET', KEYS[4], piece, 'EX', ttl)
    fresh_text = redis.call('HSET', KEYS[3], ARGV[2], utf16_length(piece)) == 1
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
-- Redis's clock in ms, from the id (XADD's "*" takes it from the clock, never below the log's last id).
local now_text = string.match(id, '^(%d+)')
local now = tonumber(now_text)

-- Insert "id" as the first field; an empty object gets no separating comma.
local rest = string.sub(message, 2)
local live
if string.find(rest, '^[ \t\r\n]*}') then
  live = '{"id":"' .. id .. '"}'
else
  live = '{"id":"' .. id .. '",' .. rest
end

local fresh_state = redis.call('HSET', KEYS[2], ARGV[2] .. '|' .. ARGV[3], live) == 1
if piece then redis.call('HSET', KEYS[3], ARGV[2] .. '|id', id) end

-- Time to live. Without control every call sets it on every key. With control, the control hash remembers when
-- it last did ("ttl_at"), and a call sets it again only after a tenth of the TTL (at most a minute): every key then
-- expires between 0.9 × ttl and ttl after the project's last message. A key this call may have created gets it
-- at once (a new state or text field; the text is SET with it), so no key is ever left without one.
local refresh = not control_key
if control_key then
  local at = tonumber(cget('ttl_at') or '')
  refresh = not at or now - at >= math.min(ttl_seconds * 100, 60000) or now < at
end
if refresh or fresh_state then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
if piece and (refresh or fresh_text) then
  redis.call('EXPIRE', KEYS[3], ttl)
  if not control_key then redis.call('EXPIRE', KEYS[4], ttl) end
end
if piece and refresh and control_key then redis.call('EXPIRE', KEYS[4], ttl) end
redis.call('PUBLISH', ARGV[1], live)

if control_key then
  local mtype = ARGV[3]
  -- Every field this call writes, in one HSET.
  local writes = {}
  local function put(field, value)
    writes[#writes + 1] = field
    writes[#writes + 1] = value
  end
  if op == 'publish' then
    if options.producer and options.seq then
      local seq = string.format('%d', options.seq)
      put('seq|' .. options.producer, seq)
      put('sid|' .. options.producer .. '|' .. (options.seq % 32), seq .. ':' .. id)
    end
    if run then
      local status = cget('status|' .. stage)
      if cget('run|' .. stage) ~= run then
        put('run|' .. stage, run)
        status = 'running'
      end
      if mtype == 'done' or mtype == 'error' or mtype == 'cancelled' then
        if not terminal[status or ''] then status = mtype end
        redis.call('HDEL', control_key, 'lease|' .. stage)
      elseif not terminal[status or ''] then
        status = 'running'
        -- The lease is renewed once a third of it has passed (a publish every few ms need not write it each time).
        if lease_ms then
          local owner, deadline = string.match(cget('lease|' .. stage) or '', '^(.*)|(%d+)$')
          if owner ~= run or tonumber(deadline) - now < lease_ms * 2 / 3 then
            put('lease|' .. stage, run .. '|' .. string.format('%d', now + lease_ms))
          end
        end
      end
      status = status or 'running'
      if status ~= cget('status|' .. stage) then put('status|' .. stage, status) end
    end
  elseif op == 'cancel' then
    put('status|' .. stage, 'cancelled')
    put('cancel|' .. stage, cget('run|' .. stage) or '*')
    put('cancelid|' .. stage, id)
    redis.call('HDEL', control_key, 'lease|' .. stage)
  end
  if refresh then put('ttl_at', now_text) end
  if #writes > 0 then redis.call('HSET', control_key, unpack(writes)) end
  if refresh or op ~= 'publish' then redis.call('EXPIRE', control_key, ttl) end
  if op == 'cancel' or op == 'reap' then
    local control_channel = string.gsub(ARGV[1], ':stage:([^:]*)$', ':control:%1')
    redis.call('PUBLISH', control_channel, live)
    return { op == 'cancel' and 'cancelled' or 'reaped', id }
  end
end
return id
