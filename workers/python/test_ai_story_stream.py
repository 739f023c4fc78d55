"""Unit tests of ai_story_stream against a real Redis.

Run by server/src/python-worker.test.ts, which starts a private redis-server and sets
AI_STORY_TEST_REDIS_URL; never point it at a Redis whose data matters.
"""

import itertools
import json
import os
import socket
import time
import unittest

import redis

from ai_story_stream import (
    DEFAULT_LUA_PATH,
    RESERVED_IDS,
    RedisStreamPublisher,
    TokenOffsetError,
    log_key,
    stage_channel,
    state_key,
    text_key,
    texts_key,
    utf16_length,
)

URL = os.environ.get("AI_STORY_TEST_REDIS_URL")
_projects = itertools.count()


@unittest.skipUnless(URL, "set AI_STORY_TEST_REDIS_URL to a throwaway Redis")
class RedisStreamPublisherTest(unittest.TestCase):
    def setUp(self):
        self.redis = redis.Redis.from_url(URL)
        self.project = f"py{os.getpid()}-{next(_projects)}"
        self.pubsub = self.redis.pubsub()
        self.pubsub.psubscribe(f"ai_story:project:{self.project}:stage:*")
        # Publish only once Redis has confirmed the subscription.
        confirmation = self.pubsub.get_message(timeout=5)
        self.assertEqual(confirmation and confirmation["type"], "psubscribe")

    def tearDown(self):
        self.pubsub.close()
        self.redis.close()

    def received(self, count):
        payloads = []
        deadline = time.monotonic() + 5
        while len(payloads) < count:
            if time.monotonic() > deadline:
                self.fail(f"received {len(payloads)} of {count} messages")
            message = self.pubsub.get_message(timeout=1)
            if message is not None and message["type"] == "pmessage":
                payloads.append(message["data"].decode("utf-8"))
        return payloads

    def test_publishes_compact_json_with_the_id_first_and_non_ascii_unescaped(self):
        with RedisStreamPublisher(self.project, "rewrite", redis_url=URL) as publisher:
            message_id = publisher.publish_token("ünï, côdé: ok", "ünï, côdé: ok")
        [payload] = self.received(1)
        self.assertTrue(payload.startswith(f'{{"id":"{message_id}","type":"token","stage":"rewrite","project_id":"{self.project}","timestamp":'))
        self.assertIn('"content":"ünï, côdé: ok"', payload)
        self.assertIsInstance(json.loads(payload)["timestamp"], float)

    def test_each_method_publishes_its_fields(self):
        with RedisStreamPublisher(self.project, "image_generation", redis_url=URL) as publisher:
            publisher.publish_stage_update("processing", 10, "started")
            publisher.publish_progress(2, 3, "image 2")
            publisher.publish_progress(1, 0)
            publisher.publish_done("3 images", {"tokens_used": 0})
            publisher.publish_done()
            publisher.publish_error(RuntimeError("provider 503"), 3)
            publisher.publish("checkpoint", {"step": 7})
        fields = [
            {k: v for k, v in json.loads(p).items() if k not in ("id", "stage", "project_id", "timestamp")}
            for p in self.received(7)
        ]
        self.assertEqual(
            fields,
            [
                {"type": "stage_update", "status": "processing", "progress": 10, "message": "started"},
                {"type": "progress", "current": 2, "total": 3, "progress": 67, "item_name": "image 2"},
                {"type": "progress", "current": 1, "total": 0, "progress": 0, "item_name": ""},
                {"type": "done", "full_text": "3 images", "metadata": {"tokens_used": 0}},
                {"type": "done", "full_text": "", "metadata": {}},
                {"type": "error", "error": "provider 503", "retry_count": 3},
                {"type": "checkpoint", "step": 7},
            ],
        )

    def test_logs_each_message_and_keeps_the_latest_of_each_type_in_the_state(self):
        with RedisStreamPublisher(self.project, "rewrite", redis_url=URL, log_maxlen=2, log_ttl=60) as publisher:
            ids = [publisher.publish_token(t, t) for t in ("a", "b", "c")]
        live = self.received(3)
        entries = self.redis.xrange(publisher.log_key)
        self.assertEqual([entry_id.decode() for entry_id, _ in entries], ids[1:])
        self.assertEqual(self.redis.hget(publisher.state_key, "rewrite|token").decode("utf-8"), live[2])
        self.assertTrue(0 < self.redis.ttl(publisher.log_key) <= 60)

    def test_publishes_tokens_linearly_and_keeps_the_text_once_with_cjk_and_emoji(self):
        pieces = ["从前", "😀", " once", "有一座山😀😀", "", " é\u0301", "🇫🇷", '\n"quoted"']
        with RedisStreamPublisher(self.project, "rewrite", redis_url=URL) as publisher:
            full_text = ""
            ids = []
            for piece in pieces:
                full_text += piece
                ids.append(publisher.publish_token(piece, full_text))
        live = self.received(len(pieces))
        offset = 0
        for payload, piece, message_id in zip(live, pieces, ids):
            # The fields in the order of the original format, with offset (UTF-16 code units) last in place of full_text.
            self.assertTrue(payload.startswith(f'{{"id":"{message_id}","type":"token","stage":"rewrite",'), payload)
            self.assertTrue(payload.endswith(f',"content":{json.dumps(piece, ensure_ascii=False)},"offset":{offset}}}'), payload)
            offset += utf16_length(piece)
        stored = [fields[b"data"].decode("utf-8") for _, fields in self.redis.xrange(publisher.log_key)]
        self.assertEqual(len(stored), len(pieces))
        self.assertFalse(any('"full_text"' in data for data in stored))
        self.assertEqual(self.redis.get(text_key("ai_story", self.project, "rewrite")).decode("utf-8"), full_text)
        texts = self.redis.hgetall(texts_key("ai_story", self.project))
        self.assertEqual(texts, {b"rewrite": str(utf16_length(full_text)).encode(), b"rewrite|id": ids[-1].encode()})
        self.assertEqual(utf16_length(full_text), 2 + 2 + 5 + 8 + 0 + 3 + 4 + 9)
        self.assertTrue(0 < self.redis.ttl(publisher.text_key) <= 86400)

    def test_refuses_a_token_that_does_not_continue_the_text_with_token_offset_error(self):
        with RedisStreamPublisher(self.project, "rewrite", redis_url=URL) as mine, RedisStreamPublisher(
            self.project, "rewrite", redis_url=URL
        ) as other:
            mine.publish_token("a", "a")
            other.publish_token("xy", "xy")
            length = self.redis.xlen(mine.log_key)
            with self.assertRaises(TokenOffsetError) as refused:
                mine.publish_token("b", "ab")
            self.assertIsInstance(refused.exception, ValueError)
            self.assertEqual((refused.exception.stage, refused.exception.expected, refused.exception.got), ("rewrite", 2, 1))
            self.assertIn("does not continue the text", str(refused.exception))
            self.assertEqual(self.redis.xlen(mine.log_key), length)
            self.assertEqual(self.redis.get(mine.text_key), b"xy")
            # Starting over always works.
            mine.publish_token("again", "again")
        self.assertEqual(self.redis.get(mine.text_key), b"again")

    def test_sends_the_whole_text_with_its_first_token_when_it_joins_a_stage_mid_run(self):
        with RedisStreamPublisher(self.project, "rewrite", redis_url=URL, linear_tokens=False) as old:
            old.publish_token("Once", "Once")  # an old worker: no text kept
        with RedisStreamPublisher(self.project, "rewrite", redis_url=URL) as retried:
            retried.publish_token(" 😀", "Once 😀")
            retried.publish_token(" upon", "Once 😀 upon")
        *_, first, second = [json.loads(payload) for payload in self.received(3)]
        self.assertEqual((first["offset"], second["offset"]), (4, 7))
        self.assertEqual(self.redis.get(retried.text_key).decode("utf-8"), "Once 😀 upon")
        self.assertEqual(int(self.redis.hget(retried.texts_key, "rewrite")), utf16_length("Once 😀 upon"))

    def test_publishes_the_original_format_with_linear_tokens_false(self):
        with RedisStreamPublisher(self.project, "rewrite", redis_url=URL, linear_tokens=False) as publisher:
            publisher.publish_token("Once", "Once")
            publisher.publish_token(" upon", "Once upon")
        payloads = self.received(2)
        self.assertTrue(payloads[1].endswith(',"content":" upon","full_text":"Once upon"}'), payloads[1])
        self.assertEqual(self.redis.exists(publisher.texts_key, publisher.text_key), 0)

    def test_refuses_invalid_arguments_before_touching_redis(self):
        with self.assertRaises(ValueError):
            RedisStreamPublisher("bad id", "rewrite", redis_url=URL)
        with self.assertRaises(ValueError):
            RedisStreamPublisher(self.project, "a:*", redis_url=URL)
        with RedisStreamPublisher(self.project, "rewrite", redis_url=URL) as publisher:
            for attempt in (
                lambda: publisher.publish_stage_update("running", 10),
                lambda: publisher.publish_stage_update("processing", 101),
                lambda: publisher.publish_stage_update("processing", float("nan")),
                lambda: publisher.publish_progress(-1, 3),
                lambda: publisher.publish_token(42, ""),
                lambda: publisher.publish_token("b", "a"),
                lambda: publisher.publish_token("b", "a"),
                lambda: publisher.publish_error("x", -1),
                lambda: publisher.publish("bad type"),
                lambda: publisher.publish("note", {"id": "1-0"}),
                lambda: publisher.publish("note", {"value": float("inf")}),
            ):
                with self.assertRaises(ValueError):
                    attempt()
        self.assertEqual(self.redis.exists(publisher.log_key), 0)

    def test_a_token_without_full_text_continues_what_this_publisher_sent(self):
        with RedisStreamPublisher(self.project, "rewrite", redis_url=URL) as publisher:
            publisher.publish_token("从前")
            publisher.publish_token(" 😀")
            publisher.publish_token("!")
            self.assertEqual(self.redis.get(publisher.text_key).decode("utf-8"), "从前 😀!")
            self.assertEqual(int(self.redis.hget(publisher.texts_key, "rewrite")), len("从前 😀!".encode("utf-16-le")) // 2)

    def test_refuses_names_of_an_objects_internals_and_a_prefix_that_breaks_the_id_rule(self):
        for name in RESERVED_IDS:
            with self.assertRaises(ValueError):
                RedisStreamPublisher(name, "rewrite", redis_url=URL)
            with self.assertRaises(ValueError):
                RedisStreamPublisher(self.project, name, redis_url=URL)
        # A prefix with separators would land the messages in another project's channels and keys.
        for prefix in ("ai_story:project:victim:stage:x#", "a*", "", "__proto__", None):
            with self.assertRaises(ValueError):
                RedisStreamPublisher(self.project, "rewrite", redis_url=URL, prefix=prefix)
        with RedisStreamPublisher(self.project, "rewrite", redis_url=URL) as publisher:
            for name in RESERVED_IDS:
                with self.assertRaisesRegex(ValueError, "object's internals"):
                    publisher.publish(name)
        self.assertEqual(self.redis.exists(publisher.log_key, publisher.state_key), 0)

    def test_publish_lua_refuses_a_reserved_stage_or_type_from_a_publisher_that_skips_the_checks(self):
        script = self.redis.register_script(DEFAULT_LUA_PATH.read_text(encoding="utf-8"))
        keys = [log_key("ai_story", self.project), state_key("ai_story", self.project)]
        for stage, message_type in (("__proto__", "token"), ("prototype", "token"), ("rewrite", "constructor"), ("rewrite", "__proto__")):
            channel = stage_channel("ai_story", self.project, stage)
            with self.assertRaisesRegex(redis.exceptions.ResponseError, "publish.lua: .*object's internals"):
                script(keys=keys, args=[channel, stage, message_type, '{"type":"token"}', 10, 60])
        self.assertEqual(self.redis.exists(*keys), 0)

    def test_raises_instead_of_dropping_when_redis_is_unreachable(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with RedisStreamPublisher(self.project, "rewrite", redis_url=f"redis://127.0.0.1:{port}", socket_timeout=1) as publisher:
            with self.assertRaises(redis.exceptions.ConnectionError):
                publisher.publish_token("lost?", "lost?")

    def test_closes_its_own_connection_but_not_a_given_client(self):
        client = redis.Redis.from_url(URL)
        with RedisStreamPublisher(self.project, "rewrite", client=client) as publisher:
            publisher.publish_token("a", "a")
        self.assertTrue(client.ping())
        client.close()
        with self.assertRaises(RuntimeError):
            publisher.publish_token("b", "ab")

    def test_names_keys_by_the_rule_of_channels_ts_with_the_project_as_hash_tag(self):
        self.assertEqual(stage_channel("ai_story", "42", "rewrite"), "ai_story:project:42:stage:rewrite")
        self.assertEqual(log_key("ai_story", "42"), "ai_story:project:{42}:log")
        self.assertEqual(state_key("ai_story", "42"), "ai_story:project:{42}:state")
        self.assertEqual(texts_key("ai_story", "42"), "ai_story:project:{42}:texts")
        self.assertEqual(text_key("ai_story", "42", "rewrite"), "ai_story:project:{42}:text:rewrite")
        with RedisStreamPublisher(self.project, "rewrite", redis_url=URL, prefix="other") as publisher:
            self.assertEqual(publisher.channel, f"other:project:{self.project}:stage:rewrite")
            self.assertEqual(publisher.log_key, f"other:project:{{{self.project}}}:log")
            self.assertEqual(publisher.state_key, f"other:project:{{{self.project}}}:state")

    def test_loads_the_one_publish_lua_of_the_server(self):
        self.assertEqual(DEFAULT_LUA_PATH.parts[-4:], ("server", "src", "broker", "publish.lua"))
        self.assertTrue(DEFAULT_LUA_PATH.is_file())
        with self.assertRaises(FileNotFoundError):
            RedisStreamPublisher(self.project, "rewrite", redis_url=URL, lua_path="/nonexistent/publish.lua")


if __name__ == "__main__":
    unittest.main()
