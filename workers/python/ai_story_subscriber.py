"""Receive the live progress of a project, with the API of the original Python ``RedisStreamSubscriber``.

The Python counterpart of the kit's TypeScript ``StreamSubscriber`` (server/src/subscriber.ts):

    from ai_story_subscriber import RedisStreamSubscriber

    with RedisStreamSubscriber("project-42", "rewrite", redis_url="redis://127.0.0.1:6379") as subscriber:
        subscriber.subscribe()                      # from now on nothing is missed
        for message in subscriber.listen(timeout=30):
            if message["type"] == "token":
                print(message["content"], end="", flush=True)
            if message["type"] in ("done", "error"):
                break

Messages are dicts in the original format: tokens published in linear form (``content`` + ``offset``) get their
``full_text`` back (and lose ``offset``), rebuilt as the hub does (protocol/compact.ts, ``TokenTexts``): each
stage's text is read from Redis right after subscribing, then every token continues it. A token whose text cannot
be known (a message was lost, or the stage's text is gone) is passed on as it came, with ``offset`` and without
``full_text``: never with a wrong text. A payload that is not a JSON object with a string ``type`` is passed on as
``{"type": "message", "data": <payload str>, "channel": <channel>}``.

Beyond the original:

* ``listen(last_id=...)`` resumes after a message id exactly as the hub does for ``Last-Event-ID``: it subscribes
  first, then reads the log after ``last_id`` in pages and merges it with the live messages by id, so nothing is
  missed and nothing comes twice. When ``last_id`` is no longer in the log (trimmed or expired: ``reason``
  ``"expired"``) or never was (``"unknown_id"``), the first message yielded is a ``reset`` dict (it does not raise):
  ``{"type": "reset", "id": <log id it is current up to>, "project_id", "stage", "reason", "stages", "timestamp"}``
  with ``stages`` shaped as :meth:`RedisStreamSubscriber.state`'s, and the live messages after that id follow.
* :meth:`RedisStreamSubscriber.state` reads the current state of the project in one atomic step: per stage the
  latest ``stage_update``, ``progress``, ``done`` and ``error`` and the text so far (the ``stages`` of the hub's
  ``snapshot`` event, protocol/messages.ts ``SnapshotMessage``).

On a Redis Cluster pass ``cluster=True`` (``redis_url`` is any node): reads go to the master of the project's
slot (all its keys share a hash tag); the subscription is made on the node of ``redis_url`` with a plain
connection (a classic PUBLISH reaches every node of a cluster), not through redis-py's ``ClusterPubSub``.
"""

from __future__ import annotations

import collections
import json
import re
import time
from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Tuple

import redis

from ai_story_stream import _check_id, _cluster_class, log_key, stage_channel, state_key, texts_key

__all__ = ["RedisStreamSubscriber", "is_log_id", "compare_log_ids"]

_LOG_ID = re.compile(r"(\d{1,20})-(\d{1,20})")

#: The types a stage's state keeps (StageState in protocol/messages.ts).
_STATE_TYPES = ("stage_update", "progress", "done", "error")

# One atomic read of what a subscriber needs: the state hash, the newest log id, and each stage's text with the id
# of its last token. KEYS: log, state, texts. ARGV[1]: the prefix of the text keys; ARGV[2]: one stage, or "" for all.
_READ_LUA = """
local state = redis.call('HGETALL', KEYS[2])
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local lengths = redis.call('HGETALL', KEYS[3])
local texts = {}
for i = 1, #lengths, 2 do
  local stage = lengths[i]
  if not string.find(stage, '|', 1, true) and (ARGV[2] == '' or ARGV[2] == stage) then
    local text = redis.call('GET', ARGV[1] .. stage)
    if text then
      local id = redis.call('HGET', KEYS[3], stage .. '|id') or ''
      table.insert(texts, stage)
      table.insert(texts, text)
      table.insert(texts, id)
    end
  end
end
local newest_id = ''
if newest[1] then newest_id = newest[1][1] end
return {state, newest_id, texts}
"""

# One page of the log after ARGV[1], and whether ARGV[1] is still in the log, read together (as the hub's replay).
_REPLAY_LUA = """
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return false end
return redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
"""


def is_log_id(value: Any) -> bool:
    """True for a Redis stream id ``<ms>-<seq>``, the ids of the log and of every message."""
    return isinstance(value, str) and _LOG_ID.fullmatch(value) is not None


def _id_key(value: str) -> Tuple[int, int]:
    ms, seq = value.split("-")
    return int(ms), int(seq)


def compare_log_ids(a: str, b: str) -> int:
    """-1, 0 or 1 as log id ``a`` is older than, the same as, or newer than ``b``."""
    ka, kb = _id_key(a), _id_key(b)
    return (ka > kb) - (ka < kb)


def _str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


class _TokenTexts:
    """TokenTexts of protocol/compact.ts, counting in UTF-16 code units as JavaScript does."""

    def __init__(self) -> None:
        # stage -> [text, its UTF-16 length, id of its last token or None]
        self._stages: Dict[str, list] = {}

    def set(self, stage: str, text: str, message_id: Optional[str]) -> None:
        self._stages[stage] = [text, len(_utf16(text)) // 2, message_id]

    def apply(self, stage: str, content: str, offset: int, message_id: Optional[str]) -> Optional[str]:
        known = self._stages.get(stage)
        size = len(_utf16(content)) // 2
        end = offset + size
        if known and message_id is not None and known[2] is not None and compare_log_ids(message_id, known[2]) <= 0:
            # Already in the text that was read: only check that it is.
            units = _utf16(known[0])
            if units[2 * offset : 2 * end] != _utf16(content) or 2 * end > len(units):
                return None
            try:
                return units[: 2 * end].decode("utf-16-le")
            except UnicodeDecodeError:
                return None
        if offset == 0:
            text = content
        elif known and offset == known[1]:
            text = known[0] + content
        else:
            self._stages.pop(stage, None)
            return None
        self._stages[stage] = [text, end, message_id if message_id is not None else (known[2] if known else None)]
        return text


def _token_form(message: Mapping[str, Any]):
    """("whole", full_text) or ("linear", content, offset) for a token, else None (live-texts.ts, tokenForm)."""
    if message.get("type") != "token" or not isinstance(message.get("content"), str):
        return None
    if isinstance(message.get("full_text"), str):
        return ("whole", message["full_text"])
    offset = message.get("offset")
    if "full_text" not in message and isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0:
        return ("linear", message["content"], offset)
    return None


class _LiveTexts:
    """LiveTexts of server/src/hub/live-texts.ts: primed once from the read texts and the messages that raced it."""

    def __init__(self) -> None:
        self._texts = _TokenTexts()
        self._prime_at: Dict[str, Tuple[str, Tuple[str, Optional[str]]]] = {}

    def prime(self, kept: Mapping[str, Tuple[str, Optional[str]]], held: List[Mapping[str, Any]]) -> None:
        ends: Dict[str, int] = {}
        last_break: Dict[str, str] = {}
        for message in held:
            form = _token_form(message)
            if form is None:
                continue
            stage = message.get("stage") if isinstance(message.get("stage"), str) else ""
            # BreakFinder: where a stage's text starts over.
            end = ends.get(stage)
            if form[0] == "whole":
                ends[stage] = len(_utf16(form[1])) // 2
                is_break = True
            else:
                ends[stage] = form[2] + len(_utf16(form[1])) // 2
                is_break = form[2] == 0 or (end is not None and form[2] != end)
            message_id = message.get("id")
            read = kept.get(stage)
            if not is_break or not is_log_id(message_id) or read is None or read[1] is None:
                continue
            if compare_log_ids(message_id, read[1]) <= 0:
                last_break[stage] = message_id
        for stage, read in kept.items():
            if read[1] is None:
                continue  # a text without the id of its last token cannot be placed among the messages
            at = last_break.get(stage)
            if at is None:
                self._texts.set(stage, read[0], read[1])
            else:
                self._prime_at[stage] = (at, read)

    def track(self, message: Mapping[str, Any]) -> Optional[str]:
        """The full text of a linear token (None when it cannot be known); remembers a whole token's text."""
        form = _token_form(message)
        if form is None:
            return None
        stage = message.get("stage") if isinstance(message.get("stage"), str) else ""
        message_id = message.get("id") if is_log_id(message.get("id")) else None
        waiting = self._prime_at.get(stage)
        if waiting and message_id is not None and compare_log_ids(message_id, waiting[0]) >= 0:
            del self._prime_at[stage]
            self._texts.set(stage, waiting[1][0], waiting[1][1])
        if form[0] == "whole":
            self._texts.set(stage, form[1], message_id)
            return None
        return self._texts.apply(stage, form[1], form[2], message_id)


class RedisStreamSubscriber:
    """Receives the messages of one stage, or of every stage, of one project. Use it as a context manager.

    :param project_id: matches ``^[A-Za-z0-9_-]{1,64}$`` and is no reserved name (``_check_id`` of ai_story_stream).
    :param stage_name: one stage, or None for every stage of the project.
    :param redis_url: the Redis the publishers write (with ``cluster=True``: any node of the cluster).
    :param prefix: the hub's ``CHANNEL_PREFIX``.
    :param client: a ``redis.Redis`` or ``RedisCluster`` to read with; it stays the caller's. The subscription
        uses its connection pool (a cluster's: its default node).
    :param cluster: ``redis_url`` is a node of a Redis Cluster.
    :param socket_timeout: seconds to wait for Redis to connect or answer.
    :param page_size: log entries read per page by ``listen(last_id=...)``.
    :raises ValueError: for an invalid id or option.
    """

    def __init__(
        self,
        project_id: str,
        stage_name: Optional[str] = None,
        redis_url: str = "redis://127.0.0.1:6379",
        prefix: str = "ai_story",
        *,
        client: Any = None,
        cluster: bool = False,
        socket_timeout: float = 5.0,
        page_size: int = 500,
    ) -> None:
        _check_id("project_id", project_id)
        if stage_name is not None:
            _check_id("stage_name", stage_name)
        _check_id("prefix", prefix)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size: {page_size!r} must be a positive integer")
        self.project_id = project_id
        self.stage_name = stage_name
        self.prefix = prefix
        self.page_size = page_size
        self.socket_timeout = socket_timeout
        #: The channel, or for every stage the pattern, subscribed to.
        self.channel = stage_channel(prefix, project_id, stage_name if stage_name is not None else "*")
        self._log_key = log_key(prefix, project_id)
        self._state_key = state_key(prefix, project_id)
        self._texts_key = texts_key(prefix, project_id)
        self._text_prefix = f"{prefix}:project:{{{project_id}}}:text:"
        self._owns_client = client is None
        if client is not None:
            self._redis = client
        else:
            factory = _cluster_class() if cluster else redis.Redis
            self._redis = factory.from_url(redis_url, socket_connect_timeout=socket_timeout, socket_timeout=socket_timeout)
        is_cluster = hasattr(self._redis, "get_default_node")
        if is_cluster:
            node = self._redis.get_default_node() if client is not None else None
            self._pubsub_client = (
                node.redis_connection
                if node is not None and node.redis_connection is not None
                else redis.Redis.from_url(redis_url, socket_connect_timeout=socket_timeout, socket_timeout=socket_timeout)
            )
            self._owns_pubsub_client = node is None or node.redis_connection is None
        else:
            self._pubsub_client = self._redis
            self._owns_pubsub_client = False
        self._read_script = self._redis.register_script(_READ_LUA)
        self._replay_script = self._redis.register_script(_REPLAY_LUA)
        self._pubsub = None
        self._buffer: Deque[Dict[str, Any]] = collections.deque()
        self._texts = _LiveTexts()
        self._fences = 0
        self._closed = False

    # -- the original API ---------------------------------------------------------------------------

    def subscribe(self) -> None:
        """Subscribes, if not already: everything published from now on arrives. Reads the stages' texts (they
        give linear tokens their ``full_text`` back). Idempotent."""
        if self._pubsub is None:
            self._start(None)

    def listen(self, timeout: Optional[float] = None, last_id: Optional[str] = None) -> Iterator[Dict[str, Any]]:
        """Yields messages as they arrive, subscribing first if need be. Ends when ``timeout`` seconds pass without
        a message (None: never), or after ``unsubscribe()`` once the messages already received are yielded.

        With ``last_id`` it first yields the messages of the log after that id (see the module's doc: exactly once,
        merged with the live ones; a ``reset`` dict first when the id is not in the log).
        Breaking out of the loop does not unsubscribe.

        :raises ValueError: when ``last_id`` is not a log id ``<ms>-<seq>``.
        """
        if last_id is not None and not is_log_id(last_id):
            raise ValueError(f"last_id: {last_id!r} must be a message id <ms>-<seq>")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
            raise ValueError(f"timeout: {timeout!r} must be a number of seconds >= 0, or None")
        if last_id is not None or self._pubsub is None:
            self._start(last_id)
        while True:
            if self._buffer:
                yield self._deliver(self._buffer.popleft())
                continue
            if self._pubsub is None:
                return
            if not self._poll(timeout):
                return

    def get_message(self) -> Optional[Dict[str, Any]]:
        """The next message already received, or None; never waits."""
        if not self._buffer and self._pubsub is not None:
            self._poll(0)
        return self._deliver(self._buffer.popleft()) if self._buffer else None

    def unsubscribe(self) -> None:
        """Stops receiving; messages already received stay readable. ``subscribe()`` starts again."""
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                if self.stage_name is None:
                    pubsub.punsubscribe()
                else:
                    pubsub.unsubscribe()
            except redis.exceptions.RedisError:
                pass
            pubsub.close()

    def close(self) -> None:
        """Unsubscribes, and closes the connections the subscriber opened. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.unsubscribe()
        if self._owns_pubsub_client:
            self._pubsub_client.close()
        if self._owns_client:
            self._redis.close()

    def __enter__(self) -> "RedisStreamSubscriber":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self.close()

    # -- the current state --------------------------------------------------------------------------

    def state(self) -> Dict[str, Any]:
        """The current state of the project (or of the subscriber's stage), read in one atomic step:

        ``{"type": "snapshot", "id": <newest log id or None>, "project_id", "stage", "stages", "timestamp"}``, with
        ``stages`` mapping each stage to its latest ``stage_update``, ``progress``, ``done`` and ``error`` messages
        (those it has) and ``text``, its text so far (absent when ``done`` is there or it has none): the shape of
        ``SnapshotMessage.stages`` (protocol/messages.ts). ``id`` is what it is current up to: ``listen(last_id=id)``
        continues from it exactly.
        """
        last, stages, _ = self._read()
        return self._snapshot("snapshot", last, stages)

    current_state = state

    # -- the machinery ------------------------------------------------------------------------------

    def _snapshot(self, kind: str, last: Optional[str], stages: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
        return {"type": kind, "id": last, "project_id": self.project_id, "stage": self.stage_name, **extra,
                "stages": stages, "timestamp": time.time()}

    def _read(self) -> Tuple[Optional[str], Dict[str, Dict[str, Any]], Dict[str, Tuple[str, Optional[str]]]]:
        """(newest log id, the stages' state, the stages' kept texts), read in one step."""
        state, newest, texts = self._read_script(
            keys=[self._log_key, self._state_key, self._texts_key], args=[self._text_prefix, self.stage_name or ""]
        )
        kept: Dict[str, Tuple[str, Optional[str]]] = {}
        for i in range(0, len(texts), 3):
            message_id = _str(texts[i + 2])
            kept[_str(texts[i])] = (_str(texts[i + 1]), message_id if is_log_id(message_id) else None)
        latest: Dict[str, Dict[str, Any]] = {}
        for i in range(0, len(state), 2):
            stage, _, kind = _str(state[i]).partition("|")
            if self.stage_name is not None and stage != self.stage_name:
                continue
            try:
                message = json.loads(_str(state[i + 1]))
            except ValueError:
                continue
            latest.setdefault(stage, {})[kind] = message
        stages: Dict[str, Dict[str, Any]] = {}
        for stage, by_type in latest.items():
            entry = {kind: by_type[kind] for kind in _STATE_TYPES if kind in by_type}
            if "done" not in entry:
                text = kept.get(stage)
                token = by_type.get("token")
                # An original-format token newer than the kept text (or without one) holds the text itself.
                if isinstance(token, dict) and isinstance(token.get("full_text"), str) and (
                    text is None or text[1] is None or not is_log_id(token.get("id"))
                    or compare_log_ids(token["id"], text[1]) > 0
                ):
                    entry["text"] = token["full_text"]
                elif text is not None:
                    entry["text"] = text[0]
            stages[stage] = entry
        last = _str(newest) if newest else None
        return (last if last else None), stages, kept

    def _replay(self, last_id: str) -> Tuple[List[Dict[str, Any]], bool]:
        """The log's messages after ``last_id`` (in pages), and whether the log still held ``last_id`` throughout."""
        entries: List[Dict[str, Any]] = []
        after = last_id
        while True:
            page = self._replay_script(keys=[self._log_key], args=[after, self.page_size])
            if page is None:
                return entries, False
            for entry_id, fields in page:
                entry_id = _str(entry_id)
                fields = {_str(k): _str(v) for k, v in (fields.items() if isinstance(fields, dict) else zip(fields[::2], fields[1::2]))}
                after = entry_id
                if self.stage_name is not None and fields.get("stage") != self.stage_name:
                    continue
                message = _parse(fields.get("data", ""), self.channel)
                if message.get("type") != "message" or "id" in message:
                    message = {"id": entry_id, **{k: v for k, v in message.items() if k != "id"}}
                entries.append(message)
            if len(page) < self.page_size:
                return entries, True

    def _start(self, last_id: Optional[str]) -> None:
        """Subscribes if need be, replays after ``last_id`` if given, reads the texts, and merges by id."""
        if self._closed:
            raise RuntimeError("the subscriber is closed; create a new one")
        if self._pubsub is None:
            pubsub = self._pubsub_client.pubsub()
            try:
                if self.stage_name is None:
                    pubsub.psubscribe(self.channel)
                else:
                    pubsub.subscribe(self.channel)
                deadline = time.monotonic() + self.socket_timeout
                while True:
                    reply = pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
                    if reply is not None and reply["type"] in ("subscribe", "psubscribe"):
                        break
                    if time.monotonic() >= deadline:
                        raise redis.exceptions.TimeoutError("no confirmation of the subscription")
            except BaseException:
                pubsub.close()
                raise
            self._pubsub = pubsub
            self._buffer.clear()
        replayed: List[Dict[str, Any]] = []
        covered = True
        if last_id is not None:
            replayed, covered = self._replay(last_id)
        last, stages, kept = self._read()
        # Everything published before the read is in the buffer once the pong of a PING sent after it arrives
        # (one Redis delivers in order on the subscription's connection).
        self._fence()
        first: List[Dict[str, Any]] = []
        up_to: Optional[str] = None
        if not covered:
            first = [self._snapshot("reset", last, stages, reason="unknown_id" if last is None else "expired")]
            replayed, up_to = [], last
        elif last_id is not None:
            up_to = replayed[-1]["id"] if replayed else last_id
        live = list(self._buffer)
        if up_to is not None:
            live = [m for m in live if not (is_log_id(m.get("id")) and compare_log_ids(m["id"], up_to) <= 0)]
        held = replayed + live
        self._texts = _LiveTexts()
        self._texts.prime(kept, [m for m in held if not _is_raw(m)])
        self._buffer = collections.deque(first + held)

    def _fence(self) -> None:
        self._fences += 1
        token = f"ai-story-fence-{self._fences}"
        self._pubsub.ping(token)
        deadline = time.monotonic() + self.socket_timeout
        while not self._poll(max(0.0, deadline - time.monotonic()), fence=token):
            if time.monotonic() >= deadline:
                return  # no pong (a cluster forwarding late): tokens that raced the read may lack full_text

    def _poll(self, timeout: Optional[float], fence: Optional[str] = None) -> bool:
        """Reads the subscription into the buffer until a message (or the ``fence`` pong) arrives; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pubsub is not None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            reply = self._pubsub.get_message(timeout=remaining if remaining is not None else 3600)
            if reply is not None:
                kind = reply["type"]
                if kind in ("message", "pmessage"):
                    self._buffer.append(_parse(_str(reply["data"]), _str(reply["channel"])))
                    if fence is None:
                        return True
                elif kind == "pong" and fence is not None and _str(reply["data"]) == fence:
                    return True
                continue
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return False

    def _deliver(self, message: Dict[str, Any]) -> Dict[str, Any]:
        """A linear token with its ``full_text`` rebuilt (``offset`` dropped); anything else as it is."""
        if _is_raw(message) or message.get("type") in ("reset",):
            return message
        full_text = self._texts.track(message)
        if isinstance(full_text, str):
            message = {k: v for k, v in message.items() if k != "offset"}
            message["full_text"] = full_text
        return message


def _is_raw(message: Mapping[str, Any]) -> bool:
    return message.get("type") == "message" and isinstance(message.get("channel"), str) and isinstance(message.get("data"), str)


def _parse(payload: str, channel: str) -> Dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return value
    return {"type": "message", "data": payload, "channel": channel}
