"""Publish the live progress of a long AI job, for the browser viewers of the SSE hub.

The Python counterpart of the kit's TypeScript ``StreamPublisher``, with the API of the original
``RedisStreamPublisher``. Each message is logged (for resume) and published in one atomic step by
``server/src/broker/publish.lua`` -- the very file the Node side runs, loaded from disk, never copied.

    from ai_story_stream import RedisStreamPublisher

    with RedisStreamPublisher("project-42", "rewrite", redis_url="redis://127.0.0.1:6379") as publisher:
        publisher.publish_stage_update("processing", 0, "rewriting")
        publisher.publish_token("Once", "Once")
        publisher.publish_done("Once upon a time", {"tokens_used": 4})

Unlike the original, which returned False and logged, a failed publish raises (a
``redis.exceptions.ConnectionError`` or ``TimeoutError``): a message is never dropped silently.
Every publish returns the message's id.

Tokens go out in linear form (as the TypeScript publisher's): each carries its piece and its ``offset`` (where the
piece starts in the stage's text, in UTF-16 code units) instead of ``full_text``, and Redis keeps each stage's
text once, so a long answer costs about its own size. ``linear_tokens=False`` publishes the original format, for
as long as hubs of an older version still run (deploy/README.md, "Upgrading to linear tokens").

On a Redis Cluster, pass ``cluster=True`` (``redis_url`` is then any node of the cluster): the project's
log and state keys share a hash tag, so the script runs on the master of that slot, and the cluster
forwards the live PUBLISH to every node.

Batching (off by default): ``batch=True`` (or ``batch={"max_tokens": 10, "max_delay_ms": 50}``) coalesces tokens:
``publish_token`` buffers its piece and returns ``""``, and the buffered pieces go out as ONE token message (the joined
``content``, the first piece's ``offset``, or the last ``full_text`` without linear tokens) once ``max_tokens`` are
buffered (that call returns the batch's id), or ``max_delay_ms`` after the first of them. The time bound is kept by
a small background thread (``"thread": False`` for none: the next publish after the deadline sends the buffer, and
``flush()`` sends it at any time). Every other message, ``flush()``, ``close()`` and the end of the ``with`` block send
the buffer first, so the order is kept. A batch that failed without a caller waiting (the count, the time) raises
at the next call, which did not take its own message then; a batch Redis could not take is kept, with its sequence
number, and sent again first.

Needs redis-py (Debian: ``apt-get install python3-redis``; or ``pip install redis``; >= 4.1 for clusters).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import redis

__all__ = [
    "RedisStreamPublisher",
    "TokenOffsetError",
    "StageCancelled",
    "LeaseLost",
    "control_key",
    "control_channel",
    "lease_index_key",
    "DEFAULT_LUA_PATH",
    "STATUSES",
    "stage_channel",
    "log_key",
    "state_key",
    "texts_key",
    "text_key",
    "utf16_length",
]

#: ``project_id``, ``stage_name``, message types and the prefix: no glob characters, no separators, bounded length.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: Names that match :data:`ID_PATTERN` but are refused as ids: as keys of a JavaScript object (the hub's and the
#: browsers' maps of stages and types) they name the object's internals. RESERVED_IDS of server/src/channels.ts.
RESERVED_IDS = ("__proto__", "constructor", "prototype")

#: Values of ``stage_update.status``.
STATUSES = ("pending", "processing", "completed", "failed")

#: The publish step, in the server's folder of this repository. Override it with the ``lua_path``
#: argument or the ``AI_STORY_PUBLISH_LUA`` environment variable when this module lives elsewhere.
DEFAULT_LUA_PATH = Path(__file__).resolve().parent.parent.parent / "server" / "src" / "broker" / "publish.lua"

_RESERVED = ("id", "type", "stage", "project_id", "timestamp")


# -- names: the rule of server/src/channels.ts, documented in publish.lua -------------------------------


def stage_channel(prefix: str, project_id: str, stage_name: str) -> str:
    """The live channel of a stage (the external contract; no hash tag)."""
    return f"{prefix}:project:{project_id}:stage:{stage_name}"


def log_key(prefix: str, project_id: str) -> str:
    """The project's replay log. The project id in braces is a Redis Cluster hash tag: log and state share a slot."""
    return f"{prefix}:project:{{{project_id}}}:log"


def state_key(prefix: str, project_id: str) -> str:
    """The latest message of each stage and type of the project, in the slot of its log."""
    return f"{prefix}:project:{{{project_id}}}:state"


def texts_key(prefix: str, project_id: str) -> str:
    """The length of each stage's text (UTF-16 code units) and the id of its last token, in the slot of the log."""
    return f"{prefix}:project:{{{project_id}}}:texts"


def text_key(prefix: str, project_id: str, stage_name: str) -> str:
    """One stage's text so far, grown by APPEND, in the slot of the log."""
    return f"{prefix}:project:{{{project_id}}}:text:{stage_name}"


def control_key(prefix: str, project_id: str) -> str:
    """The project's control hash (runs, statuses, leases, cancels, producer sequences), in the slot of the log."""
    return f"{prefix}:project:{{{project_id}}}:control"


def control_channel(prefix: str, project_id: str, stage_name: str) -> str:
    """Where a stage's worker hears its cancel and worker-lost messages."""
    return f"{prefix}:project:{project_id}:control:{stage_name}"


def lease_index_key(prefix: str) -> str:
    """The sorted set of leases the hubs' reapers read (member ``<project_id>|<stage>``, score a deadline in ms)."""
    return f"{prefix}:leases"


class StageCancelled(Exception):
    """The stage was cancelled (``POST .../stages/{stage}/cancel/``): nothing was published. Let it propagate out of
    a Celery task (it is not a failure to retry); :meth:`RedisStreamPublisher.publish_cancelled` may say where the
    work stopped first."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"stage {stage!r} was cancelled: stop the work (nothing was published)")
        self.stage = stage


class LeaseLost(Exception):
    """This run's lease on the stage expired (no publish or heartbeat within ``lease_ms``) and a hub marked the stage
    lost with a ``worker_lost`` error: this run may not publish into it any more. Nothing was published."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"the lease on stage {stage!r} expired and the stage was marked lost (worker_lost)")
        self.stage = stage


def utf16_length(text: str) -> int:
    """The length of ``text`` in UTF-16 code units, as JavaScript's ``length`` and publish.lua count it."""
    return len(text.encode("utf-16-le")) // 2


class TokenOffsetError(ValueError):
    """A token that does not continue its stage's text: a token was lost, or sent twice (or another publisher
    wrote the stage meanwhile). Nothing was logged or published.

    :ivar stage: the stage.
    :ivar expected: the length of the stage's text so far, in UTF-16 code units: the offset that continues it.
    :ivar got: the token's offset.
    """

    def __init__(self, stage: str, expected: int, got: int) -> None:
        super().__init__(
            f"token offset {got} does not continue the text of stage {stage!r}, which has {expected} UTF-16 code "
            f"units: a token was lost or sent twice; publish from offset {expected}, or start over with "
            "full_text == content"
        )
        self.stage = stage
        self.expected = expected
        self.got = got


_CANCELLED_REFUSAL = re.compile(r'publish\.lua: stage cancelled: stage "([^"]*)"')
_LOST_REFUSAL = re.compile(r'publish\.lua: lease lost: the lease of run "[^"]*" on stage "([^"]*)"')

#: publish.lua's refusal of a token offset (its message, after the "ERR" that redis-py strips or keeps).
_OFFSET_REFUSAL = re.compile(
    r'publish\.lua: token offset (\d+) does not continue the text of stage "([^"]*)", which has (\d+) UTF-16 code units'
)


class RedisStreamPublisher:
    """Publishes the messages of one stage of one project. Use it as a context manager, or call ``close()``.

    :param project_id: matches ``^[A-Za-z0-9_-]{1,64}$`` and is none of :data:`RESERVED_IDS`.
    :param stage_name: matches ``^[A-Za-z0-9_-]{1,64}$`` and is none of :data:`RESERVED_IDS`.
    :param redis_url: the Redis the SSE hub reads.
    :param prefix: first part of every key and channel name (the hub's ``CHANNEL_PREFIX``); follows the id rule.
    :param log_maxlen: entries kept in the project's replay log.
    :param log_ttl: seconds the replay log and state of the project live after its last message.
    :param client: a ``redis.Redis`` (or ``redis.cluster.RedisCluster``) to use instead of opening one; it stays
        the caller's (not closed).
    :param cluster: ``redis_url`` is a node of a Redis Cluster: open a ``redis.cluster.RedisCluster``.
    :param lua_path: where ``publish.lua`` is; default ``$AI_STORY_PUBLISH_LUA`` or :data:`DEFAULT_LUA_PATH`.
    :param socket_timeout: seconds to wait for Redis to connect or answer before raising.
    :param linear_tokens: publish tokens in linear form (``offset`` instead of ``full_text``; see the module's
        doc). Default True; False for the original format while hubs of an older version still run.
    :param producer_id: this publisher's producer id and run of the stage (1-128 bytes). Default a random UUID.
    :param idempotent: send each message with the producer id and a sequence number, so that a publish retried
        after a lost reply returns the original id instead of logging a duplicate. Default True.
    :param lease_ms: hold a lease on the stage, renewed by every publish and by heartbeats; when it expires without
        ``done`` or ``error`` a hub publishes a ``worker_lost`` error. None for no lease (and no cancel). Default 30000.
    :param heartbeat: renew the lease from a background thread every third of ``lease_ms`` (it also listens for the
        cancel, so :attr:`cancelled` turns true at once). False: call :meth:`heartbeat` yourself. Default True.
    :param retries: how often a publish that raised ``ConnectionError``/``TimeoutError`` is sent again (same
        sequence number, so never twice in the log). Default 2.
    :param batch: coalesce tokens (see the module's doc): ``True`` for ``{"max_tokens": 10, "max_delay_ms": 50}``, or
        a mapping with any of ``max_tokens`` (int >= 1), ``max_delay_ms`` (int >= 0) and ``thread`` (bool, default
        True: a background thread sends the buffer at its deadline). Default None: one message per token.
    :raises ValueError: for an invalid id or option.
    :raises FileNotFoundError: when ``publish.lua`` is not where it should be.
    """

    def __init__(
        self,
        project_id: str,
        stage_name: str,
        redis_url: str = "redis://127.0.0.1:6379",
        prefix: str = "ai_story",
        log_maxlen: int = 1000,
        log_ttl: int = 86400,
        *,
        client: Optional[redis.Redis] = None,
        lua_path: Union[str, os.PathLike, None] = None,
        socket_timeout: float = 5.0,
        cluster: bool = False,
        linear_tokens: bool = True,
        producer_id: Optional[str] = None,
        idempotent: bool = True,
        lease_ms: Optional[int] = 30000,
        heartbeat: bool = True,
        retries: int = 2,
        batch: Union[bool, Mapping[str, Any], None] = None,
    ) -> None:
        _check_id("project_id", project_id)
        _check_id("stage_name", stage_name)
        _check_id("prefix", prefix)
        _check_count("log_maxlen", log_maxlen)
        _check_count("log_ttl", log_ttl)
        self.project_id = project_id
        self.stage_name = stage_name
        self.prefix = prefix
        self.log_maxlen = log_maxlen
        self.log_ttl = log_ttl
        self.channel = stage_channel(prefix, project_id, stage_name)
        self.log_key = log_key(prefix, project_id)
        self.state_key = state_key(prefix, project_id)
        self.texts_key = texts_key(prefix, project_id)
        self.text_key = text_key(prefix, project_id, stage_name)
        self.linear_tokens = bool(linear_tokens)
        self.producer_id = producer_id or uuid.uuid4().hex
        if not isinstance(self.producer_id, str) or not 1 <= len(self.producer_id.encode()) <= 128:
            raise ValueError("producer_id: must be a str of 1 to 128 bytes")
        if lease_ms is not None:
            _check_count("lease_ms", lease_ms)
        self.idempotent = bool(idempotent)
        self.lease_ms = lease_ms
        self.retries = retries
        self.control_key = control_key(prefix, project_id)
        self.control_channel = control_channel(prefix, project_id, stage_name)
        self._use_heartbeat_thread = bool(heartbeat)
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._leased = False
        #: "cancelled" or "lost" once the hub said so.
        self._ended: Optional[str] = None
        # True once a linear token of this publisher went out: the stage's text in Redis is then its own.
        self._joined = False
        #: The stage's text as this publisher last published it (for tokens sent without ``full_text``).
        self._text = ""
        # Batching: tokens wait in _pending ([content, full_text, count, deadline, timestamp]); _prepare_batch turns
        # them into one message at the end of _outbox; _drain sends the outbox in order. _batch_lock (re-entrant)
        # guards all of it and every send while batching is on, so the flusher thread and the caller never interleave.
        self._batch = _batching(batch)
        self._pending: Optional[list] = None
        self._outbox: list = []
        self._failure: Optional[BaseException] = None
        self._batch_lock = threading.RLock()
        self._batch_wake = threading.Condition(self._batch_lock)
        self._flusher: Optional[threading.Thread] = None

        path = Path(lua_path or os.environ.get("AI_STORY_PUBLISH_LUA") or DEFAULT_LUA_PATH)
        if not path.is_file():
            raise FileNotFoundError(
                f"publish.lua not found at {path}: pass lua_path= or set AI_STORY_PUBLISH_LUA "
                "to the kit's server/src/broker/publish.lua"
            )
        self._owns_client = client is None
        if client is not None:
            self._redis = client
        else:
            factory = _cluster_class() if cluster else redis.Redis
            self._redis = factory.from_url(redis_url, socket_connect_timeout=socket_timeout, socket_timeout=socket_timeout)
        # EVALSHA, falling back to loading the script when Redis does not know it (after a restart).
        self._publish_script = self._redis.register_script(path.read_text(encoding="utf-8"))
        self._closed = False

    # -- the original API ---------------------------------------------------------------------------

    def publish_token(self, content: str, full_text: str = "") -> str:
        """A piece of generated text, and everything generated so far (``full_text``, which ends with ``content``).

        In linear form (the default) the message carries ``offset`` (where the piece starts in ``full_text``, in
        UTF-16 code units) in place of ``full_text``, and Redis appends the piece to the stage's text. A
        ``full_text`` that is just ``content`` starts the stage over. The first token of this publisher that
        continues a text (a retried task, or a worker that takes over a stage) also sends the whole ``full_text``,
        so the text is right whoever wrote it before.

        Without ``full_text`` (as workers of the original API often call it) the piece continues what this
        publisher sent so far: the publisher keeps its own text, so its first such token starts the stage over.

        :raises ValueError: when ``full_text`` does not end with ``content``.
        :raises TokenOffsetError: when a later token does not continue the stage's text (another publisher wrote
            it meanwhile); nothing is published then.
        """
        _text("content", content)
        _text("full_text", full_text)
        if full_text == "" and content != "":
            full_text = self._text + content
        if not full_text.endswith(content):
            raise ValueError("full_text: must end with content: it is everything generated so far, this piece included")
        if self._batch is not None:
            return self._buffer(content, full_text)
        if not self.linear_tokens:
            message_id = self.publish("token", {"content": content, "full_text": full_text})
            self._text = full_text
            return message_id
        offset = utf16_length(full_text) - utf16_length(content)
        # offset is the last field: the hub puts full_text back in its place (protocol/compact.ts, withFullText).
        text = self._message("token", {"content": content, "offset": offset})
        args = [content, offset]
        if not self._joined and offset > 0:
            args.append(full_text)
        message_id = self._run("token", text, [self.texts_key, self.text_key], args)
        self._joined = True
        self._text = full_text
        return message_id

    def publish_stage_update(self, status: str, progress: float, message: str = "") -> str:
        """The stage's status (one of :data:`STATUSES`), its progress (0-100) and a line for humans."""
        if status not in STATUSES:
            raise ValueError(f"status: {status!r} must be one of {', '.join(STATUSES)}")
        if isinstance(progress, bool) or not isinstance(progress, (int, float)) or not 0 <= progress <= 100:
            raise ValueError(f"progress: {progress!r} must be a number from 0 to 100")
        return self.publish("stage_update", {"status": status, "progress": progress, "message": _text("message", message)})

    def publish_progress(self, current: float, total: float, item_name: str = "") -> str:
        """Item ``current`` of ``total`` is done; ``progress`` is the rounded percent (0 when ``total`` is 0)."""
        _check_number("current", current)
        _check_number("total", total)
        # Rounds half up, exactly as the TypeScript publisher's Math.round.
        progress = min(100, math.floor(current / total * 100 + 0.5)) if total > 0 else 0
        return self.publish(
            "progress", {"current": current, "total": total, "progress": progress, "item_name": _text("item_name", item_name)}
        )

    def publish_done(self, full_text: str = "", metadata: Optional[Mapping[str, Any]] = None) -> str:
        """The stage finished: its whole result, and free metadata (``tokens_used``, ``latency_ms``...)."""
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ValueError("metadata: must be a mapping")
        return self.publish("done", {"full_text": _text("full_text", full_text), "metadata": dict(metadata or {})})

    def publish_error(self, error: Union[str, BaseException], retry_count: int = 0) -> str:
        """The stage failed (the task, not the transport): what went wrong and how often it was retried."""
        if isinstance(retry_count, bool) or not isinstance(retry_count, int) or retry_count < 0:
            raise ValueError(f"retry_count: {retry_count!r} must be an integer >= 0")
        text = str(error) if isinstance(error, BaseException) else _text("error", error)
        return self.publish("error", {"error": text, "retry_count": retry_count})

    # -- any message --------------------------------------------------------------------------------

    def publish(self, message_type: str, fields: Optional[Mapping[str, Any]] = None) -> str:
        """Logs and publishes one message; returns its id (``<ms>-<seq>``).

        The message gets ``type``, ``stage``, ``project_id`` and ``timestamp`` (seconds, float) first;
        ``fields`` may not set those, nor ``id`` (Redis assigns it).
        """
        return self._send(message_type, self._message(message_type, fields))

    # -- batching -----------------------------------------------------------------------------------

    def flush(self) -> Optional[str]:
        """With ``batch``: sends the buffered tokens now and returns the id of the last batch sent (None when nothing
        was buffered). Raises the failure of this or of an earlier batch (see the module's doc). Without ``batch``
        it has nothing to do and returns None."""
        if self._batch is None:
            return None
        with self._batch_lock:
            self._take_failure()
            self._prepare_batch()
            return self._drain(background=False)

    def _send(self, message_type: str, text: str, final: bool = False) -> str:
        """Publishes a message; with batching, after the buffered tokens."""
        if self._batch is None:
            return self._run(message_type, text, final=final)
        with self._batch_lock:
            try:
                self._take_failure()
                self._prepare_batch()
                self._drain(background=False)
            except StageCancelled:
                # The closing message of a cancelled stage goes out even though the tokens before it were refused.
                if not final:
                    raise
            return self._run(message_type, text, final=final)

    def _buffer(self, content: str, full_text: str) -> str:
        with self._batch_lock:
            if self._closed:
                raise RuntimeError("the publisher is closed; create a new one")
            self._take_failure()
            pending = self._pending
            now = time.monotonic()
            if pending is not None and full_text == pending[1] + content:
                pending[0] += content
                pending[1] = full_text
                pending[2] += 1
            else:
                # A token that does not continue the batch (a new run of the stage): the batch goes first, on its own.
                if pending is not None:
                    self._prepare_batch()
                    self._drain(background=True)
                self._pending = pending = [content, full_text, 1, now + self._batch["max_delay_ms"] / 1000.0, time.time()]
                if self._batch["thread"]:
                    self._start_flusher()
                    self._batch_wake.notify_all()
            self._text = full_text
            if pending[2] < self._batch["max_tokens"] and now < pending[3]:
                return ""
            # Full, or past its deadline (without a thread, the next token sends it).
            self._prepare_batch()
            return self._drain(background=True) or ""

    def _prepare_batch(self) -> None:
        """Turns the buffered tokens into one message at the end of the outbox (under _batch_lock)."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        content, full_text, _count, _deadline, timestamp = pending
        if not self.linear_tokens:
            text = self._message("token", {"content": content, "full_text": full_text}, timestamp)
            self._outbox.append({"text": text, "keys": [], "args": [], "seq": None})
            return
        offset = utf16_length(full_text) - utf16_length(content)
        text = self._message("token", {"content": content, "offset": offset}, timestamp)
        args = [content, offset]
        if not self._joined and offset > 0:
            args.append(full_text)
        self._joined = True
        self._outbox.append({"text": text, "keys": [self.texts_key, self.text_key], "args": args, "seq": None})

    def _drain(self, background: bool) -> Optional[str]:
        """Sends the outbox in order (under _batch_lock); returns the last id sent. A batch Redis could not take
        (ConnectionError/TimeoutError after the retries) stays first in the outbox, with its sequence number, and is
        sent again by the next drain; any other failure empties it. In the background the failure is kept for the
        next call; otherwise it raises, as does a failure kept from before."""
        message_id = None
        try:
            if not background:
                self._take_failure()
            while self._outbox:
                batch = self._outbox[0]
                # Its sequence number is taken when it is first sent, and kept for every retry.
                if self.idempotent and batch["seq"] is None:
                    with self._lock:
                        self._seq += 1
                        batch["seq"] = self._seq
                message_id = self._run("token", batch["text"], batch["keys"], batch["args"], seq=batch["seq"])
                self._outbox.pop(0)
            return message_id
        except Exception as error:  # noqa: BLE001 - kept or raised, never dropped silently
            if not isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
                self._outbox.clear()
            if not background:
                raise
            if self._failure is None:
                self._failure = error
            return message_id

    def _take_failure(self) -> None:
        """Raises (once) the failure of a batch sent without a caller waiting."""
        failure = self._failure
        if failure is not None:
            self._failure = None
            raise failure

    def _start_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_at_deadlines, name=f"batch:{self.project_id}:{self.stage_name}", daemon=True)
            self._flusher.start()

    def _flush_at_deadlines(self) -> None:
        """The flusher thread: sends the buffer at its deadline (a failure is kept for the caller's next call)."""
        with self._batch_lock:
            while not self._closed:
                pending = self._pending
                if pending is None:
                    self._batch_wake.wait()
                    continue
                remaining = pending[3] - time.monotonic()
                if remaining > 0:
                    self._batch_wake.wait(remaining)
                    continue
                self._prepare_batch()
                self._drain(background=True)

    def _message(self, message_type: str, fields: Optional[Mapping[str, Any]], timestamp: Optional[float] = None) -> str:
        """The message JSON: ``type``, ``stage``, ``project_id``, ``timestamp``, then ``fields`` in their order."""
        if self._closed:
            raise RuntimeError("the publisher is closed; create a new one")
        _check_id("message_type", message_type)
        fields = dict(fields or {})
        for key in _RESERVED:
            if key in fields:
                raise ValueError(f"fields: must not set {key!r}: the publisher sets it")
        message = {
            "type": message_type,
            "stage": self.stage_name,
            "project_id": self.project_id,
            "timestamp": time.time() if timestamp is None else timestamp,
            **fields,
        }
        # Compact and starting with "{": publish.lua inserts the id right after the brace.
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    # -- cancel, leases, retries --------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """True once the stage was cancelled: the next publish raises :class:`StageCancelled`."""
        return self._ended == "cancelled"

    @property
    def lost(self) -> bool:
        """True once this run's lease expired and the stage was marked lost (the next publish raises :class:`LeaseLost`)."""
        return self._ended == "lost"

    def publish_cancelled(self, message: str = "cancelled", progress: float = 0) -> str:
        """The closing message of a cancelled stage (a ``stage_update`` ``failed``), allowed after the cancel."""
        return self._send(
            "stage_update",
            self._message("stage_update", {"status": "failed", "progress": progress, "message": _text("message", message)}),
            final=True,
        )

    def heartbeat(self) -> bool:
        """Renews the lease now (the background thread does it every third of ``lease_ms``). Call it from a long step
        without publishes when ``heartbeat=False`` (a Celery task on a prefork pool may prefer that). Returns False
        once the stage was cancelled or lost (the next publish raises), or ended."""
        if self.lease_ms is None or self._closed:
            return False
        with self._lock:
            reply = self._publish_script(
                keys=[self.log_key, self.state_key, self.control_key],
                args=[self.channel, self.stage_name, "heartbeat", "{}", self.log_maxlen, self.log_ttl,
                      json.dumps({"op": "renew", "run": self.producer_id, "lease_ms": self.lease_ms})],
            )
        outcome = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if outcome == "ok":
            self._redis.zadd(lease_index_key(self.prefix), {f"{self.project_id}|{self.stage_name}": int(reply[1])})
            return True
        if outcome in ("cancelled", "lost"):
            self._ended = outcome
        return False

    def _watch(self) -> None:
        """The heartbeat thread: renews the lease every third of it, and hears the cancel on the control channel."""
        interval = self.lease_ms / 3000.0
        pubsub = None
        try:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(self.control_channel)
        except Exception:  # noqa: BLE001 - without the channel, heartbeats still report a cancel
            pubsub = None
        next_beat = time.monotonic() + interval
        while not self._stop.is_set():
            try:
                if pubsub is not None:
                    message = pubsub.get_message(timeout=min(0.2, interval))
                    if message and message.get("type") == "message":
                        data = message["data"].decode() if isinstance(message["data"], bytes) else str(message["data"])
                        if '"type":"cancelled"' in data:
                            self._ended = "cancelled"
                        elif '"worker_lost"' in data:
                            self._ended = "lost"
                else:
                    self._stop.wait(min(0.2, interval))
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + interval
                    if not self.heartbeat() and self._ended is None:
                        break
            except Exception:  # noqa: BLE001 - a missed heartbeat is retried at the next one
                self._stop.wait(min(0.5, interval))
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:  # noqa: BLE001
                pass

    def _run(
        self, message_type: str, text: str, linear_keys: Sequence[str] = (), linear_args: Sequence[Any] = (), final: bool = False,
        seq: Optional[int] = None,
    ) -> str:
        """Runs publish.lua (its KEYS and ARGV are documented at its top); returns the new id."""
        if self._ended == "cancelled" and not final:
            raise StageCancelled(self.stage_name)
        if self._ended == "lost":
            raise LeaseLost(self.stage_name)
        keys = [self.log_key, self.state_key, *linear_keys]
        args = [self.channel, self.stage_name, message_type, text, self.log_maxlen, self.log_ttl, *linear_args]
        leased = self.lease_ms is not None
        if self.idempotent or leased:
            options: dict = {}
            with self._lock:
                if self.idempotent:
                    if seq is None:
                        self._seq += 1
                        seq = self._seq
                    options.update(producer=self.producer_id, seq=seq)
            if leased:
                options.update(run=self.producer_id, lease_ms=self.lease_ms)
            if final:
                options["final"] = True
            if linear_keys and len(args) == 8:
                args.append("")
            keys.append(self.control_key)
            args.append(json.dumps(options, separators=(",", ":")))
        for attempt in range(self.retries + 1):
            try:
                with self._lock:
                    message_id = self._publish_script(keys=keys, args=args)
                break
            except redis.exceptions.ResponseError as error:
                text_of = str(error)
                refusal = _OFFSET_REFUSAL.search(text_of)
                if refusal is not None:
                    raise TokenOffsetError(refusal.group(2), int(refusal.group(3)), int(refusal.group(1))) from None
                if _CANCELLED_REFUSAL.search(text_of):
                    self._ended = "cancelled"
                    raise StageCancelled(self.stage_name) from None
                if _LOST_REFUSAL.search(text_of):
                    self._ended = "lost"
                    raise LeaseLost(self.stage_name) from None
                raise
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                # Safe with a sequence number: a retry of a publish that did land returns its id and writes nothing.
                if attempt >= self.retries or not self.idempotent:
                    raise
                time.sleep(0.1 * (attempt + 1))
        message_id = message_id.decode() if isinstance(message_id, bytes) else str(message_id)
        if leased:
            self._after_publish(message_type)
        return message_id

    def _after_publish(self, message_type: str) -> None:
        member = f"{self.project_id}|{self.stage_name}"
        if message_type in ("done", "error"):
            self._stop.set()
            try:
                self._redis.zrem(lease_index_key(self.prefix), member)
            except redis.exceptions.RedisError:
                pass
            return
        if self._leased:
            return
        self._leased = True
        # "Look now": the reaper reads the true deadline from Redis and files the lease under it.
        self._redis.zadd(lease_index_key(self.prefix), {member: int(time.time() * 1000)})
        if self._use_heartbeat_thread:
            self._thread = threading.Thread(target=self._watch, name=f"lease:{self.project_id}:{self.stage_name}", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stops the heartbeat and closes the Redis connection if the publisher opened it. Idempotent. The lease is
        left to expire unless the stage ended (a worker that stops mid-stage is lost)."""
        if self._closed:
            return
        failure: Optional[BaseException] = None
        if self._batch is not None:
            with self._batch_lock:
                # The last chance for what is unsent: a batch that failed without a caller waiting is sent again, and
                # its failure raised only if it is still unsent (or was refused for good).
                failure = self._failure
                self._failure = None
                try:
                    self._prepare_batch()
                    self._drain(background=False)
                    if isinstance(failure, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
                        failure = None
                except Exception as error:  # noqa: BLE001 - raised below, once everything is closed
                    failure = error
                self._closed = True
                self._batch_wake.notify_all()
            if self._flusher is not None and self._flusher is not threading.current_thread():
                self._flusher.join(timeout=2)
        self._closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        if self._owns_client:
            self._redis.close()
        if failure is not None:
            raise failure

    def __enter__(self) -> "RedisStreamPublisher":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self.close()


def _cluster_class():
    try:
        from redis.cluster import RedisCluster
    except ImportError as error:  # redis-py before 4.1
        raise RuntimeError("cluster=True needs redis-py >= 4.1 (redis.cluster.RedisCluster)") from error
    return RedisCluster


def _batching(option: Union[bool, Mapping[str, Any], None]) -> Optional[dict]:
    if option is None or option is False:
        return None
    if option is True:
        option = {}
    if not isinstance(option, Mapping):
        raise ValueError("batch: must be True, False, None or a mapping of max_tokens, max_delay_ms, thread")
    unknown = set(option) - {"max_tokens", "max_delay_ms", "thread"}
    if unknown:
        raise ValueError(f"batch: unknown option(s) {', '.join(sorted(unknown))}")
    max_tokens = option.get("max_tokens", 10)
    max_delay_ms = option.get("max_delay_ms", 50)
    _check_count("batch max_tokens", max_tokens)
    if isinstance(max_delay_ms, bool) or not isinstance(max_delay_ms, int) or max_delay_ms < 0:
        raise ValueError(f"batch max_delay_ms: {max_delay_ms!r} must be an integer >= 0")
    return {"max_tokens": max_tokens, "max_delay_ms": max_delay_ms, "thread": bool(option.get("thread", True))}


def _check_id(name: str, value: Any) -> None:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value) or value in RESERVED_IDS:
        raise ValueError(
            f"{name}: {value!r} must be 1-64 characters of A-Z, a-z, 0-9, \"_\" or \"-\", and not "
            '"__proto__", "constructor", "prototype" (they name an object\'s internals)'
        )


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: {value!r} must be a positive integer")


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: {value!r} must be a finite number >= 0")


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be a str, got {type(value).__name__}")
    return value
