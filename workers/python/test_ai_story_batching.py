"""Batched publishing (issue 17, item 4) of ai_story_stream.RedisStreamPublisher against a real Redis.

Run by server/test/python-batching.test.ts, which starts a private redis-server and sets
AI_STORY_TEST_REDIS_URL; never point it at a Redis whose data matters.
"""

import itertools
import json
import os
import time
import unittest

import redis

from ai_story_stream import RedisStreamPublisher, TokenOffsetError, control_key, log_key, text_key, utf16_length
from ai_story_subscriber import RedisStreamSubscriber

URL = os.environ.get("AI_STORY_TEST_REDIS_URL")
_projects = itertools.count()
NEVER = 60_000


@unittest.skipUnless(URL, "set AI_STORY_TEST_REDIS_URL to a throwaway Redis")
class BatchingTest(unittest.TestCase):
    def setUp(self):
        self.redis = redis.Redis.from_url(URL)
        self.project = f"pyb{os.getpid()}-{next(_projects)}"
        self.pubsub = self.redis.pubsub()
        self.pubsub.psubscribe(f"ai_story:project:{self.project}:stage:*")
        confirmation = self.pubsub.get_message(timeout=5)
        self.assertEqual(confirmation and confirmation["type"], "psubscribe")

    def tearDown(self):
        self.pubsub.close()
        self.redis.close()

    def received(self, count, timeout=5.0):
        messages = []
        deadline = time.monotonic() + timeout
        while len(messages) < count:
            if time.monotonic() > deadline:
                self.fail(f"received {len(messages)} of {count} messages: {messages}")
            message = self.pubsub.get_message(timeout=0.2)
            if message is not None and message["type"] == "pmessage":
                messages.append(json.loads(message["data"].decode("utf-8")))
        return messages

    def nothing_more(self, wait=0.15):
        message = self.pubsub.get_message(timeout=wait)
        while message is not None and message["type"] != "pmessage":
            message = self.pubsub.get_message(timeout=wait)
        self.assertIsNone(message)

    def publisher(self, **options):
        return RedisStreamPublisher(self.project, "rewrite", redis_url=URL, **options)

    def stage_text(self):
        return (self.redis.get(text_key("ai_story", self.project, "rewrite")) or b"").decode("utf-8")

    def test_is_off_by_default_and_refuses_bad_options(self):
        with self.publisher() as publisher:
            self.assertTrue(publisher.publish_token("a", "a"))
            self.assertIsNone(publisher.flush())
        self.assertEqual([m["content"] for m in self.received(1)], ["a"])
        for batch in ({"max_tokens": 0}, {"max_tokens": 1.5}, {"max_delay_ms": -1}, {"max_delay_ms": True}, {"every": 3}, 10, "yes"):
            with self.assertRaises(ValueError, msg=repr(batch)):
                self.publisher(batch=batch)

    def test_coalesces_by_count_with_the_joined_content_and_the_first_offset(self):
        pieces = ["从前", "😀", " upon", " a", " time", ",", " the", " end"]
        with self.publisher(batch={"max_tokens": 3, "max_delay_ms": NEVER}) as publisher:
            text = ""
            ids = []
            for piece in pieces:
                text += piece
                ids.append(publisher.publish_token(piece, text))
            self.assertEqual(["id" if i else "" for i in ids], ["", "", "id", "", "", "id", "", ""])
            self.assertEqual(len(self.received(2)), 2)
            self.nothing_more()
            last = publisher.flush()
            self.assertIsNone(publisher.flush())
        messages = self.received(1)
        self.assertEqual(messages[0]["id"], last)
        # Re-read everything from the log: the three batches, in order.
        entries = self.redis.xrange(log_key("ai_story", self.project))
        data = [json.loads(fields[b"data"]) for _, fields in entries]
        self.assertEqual(
            [(m["content"], m["offset"]) for m in data],
            [("从前😀 upon", 0), (" a time,", utf16_length("从前😀 upon")), (" the end", utf16_length("从前😀 upon a time,"))],
        )
        self.assertEqual([e[0].decode() for e in entries], [ids[2], ids[5], last])
        self.assertEqual(self.stage_text(), text)

    def test_coalesces_by_time_from_a_background_thread(self):
        with self.publisher(batch={"max_tokens": 1000, "max_delay_ms": 40}) as publisher:
            started = time.monotonic()
            self.assertEqual(publisher.publish_token("Once", "Once"), "")
            time.sleep(0.01)
            self.assertEqual(publisher.publish_token(" upon", "Once upon"), "")
            [message] = self.received(1, timeout=2)
            waited = time.monotonic() - started
            self.assertGreaterEqual(waited, 0.035)
            self.assertEqual((message["content"], message["offset"]), ("Once upon", 0))
            publisher.publish_token(" a time", "Once upon a time")
            [message] = self.received(1, timeout=2)
            self.assertEqual((message["content"], message["offset"]), (" a time", 9))

    def test_without_the_thread_the_next_publish_after_the_deadline_sends_the_buffer(self):
        with self.publisher(batch={"max_tokens": 1000, "max_delay_ms": 30, "thread": False}) as publisher:
            publisher.publish_token("a", "a")
            time.sleep(0.1)
            self.nothing_more(0.05)  # no thread: nothing went out by itself
            self.assertTrue(publisher.publish_token("b", "ab"))  # past the deadline: sent, with this token
            self.assertEqual([m["content"] for m in self.received(1)], ["ab"])
            publisher.publish_token("c", "abc")
            self.nothing_more(0.05)
            self.assertTrue(publisher.flush())
            self.assertEqual([m["content"] for m in self.received(1)], ["c"])

    def test_keeps_the_order_across_types(self):
        with self.publisher(batch={"max_tokens": 100, "max_delay_ms": NEVER}) as publisher:
            publisher.publish_stage_update("processing", 0, "rewriting")
            publisher.publish_token("a")
            publisher.publish_token("b")
            publisher.publish_progress(1, 3, "one")
            publisher.publish_token("c")
            publisher.publish("checkpoint", {"step": 1})
            publisher.publish_token("d")
            publisher.publish_token("e")
            publisher.publish_stage_update("completed", 100, "rewritten")
            publisher.publish_token("f")
            publisher.publish_error("late", 0)
        messages = self.received(9)
        self.assertEqual(
            [f"token:{m['content']}" if m["type"] == "token" else m["type"] for m in messages],
            ["stage_update", "token:ab", "progress", "token:c", "checkpoint", "token:de", "stage_update", "token:f", "error"],
        )
        ids = [tuple(map(int, m["id"].split("-"))) for m in messages]
        self.assertEqual(ids, sorted(ids))

    def test_flushes_on_close_and_at_the_end_of_the_with_block(self):
        publisher = self.publisher(batch={"max_tokens": 100, "max_delay_ms": NEVER})
        publisher.publish_token("left")
        publisher.publish_token(" behind")
        publisher.close()
        publisher.close()
        self.assertEqual([m["content"] for m in self.received(1)], ["left behind"])
        with self.assertRaises(RuntimeError):
            publisher.publish_token(" more")
        with self.publisher(batch=True) as scoped:
            scoped.publish_token(" again", "left behind again")
        self.assertEqual([(m["content"], m["offset"]) for m in self.received(1)], [(" again", 11)])
        self.assertEqual(self.stage_text(), "left behind again")

    def test_original_format_batches_carry_the_last_full_text(self):
        with self.publisher(linear_tokens=False, batch={"max_tokens": 2, "max_delay_ms": NEVER}) as publisher:
            text = ""
            for piece in ["Once", " upon", " a"]:
                text += piece
                publisher.publish_token(piece, text)
        messages = self.received(2)
        self.assertEqual([(m["content"], m["full_text"]) for m in messages], [("Once upon", "Once upon"), (" a", "Once upon a")])
        self.assertTrue(all("offset" not in m for m in messages))

    def test_a_subscriber_sees_the_exact_text(self):
        with RedisStreamSubscriber(self.project, "rewrite", redis_url=URL) as subscriber:
            subscriber.subscribe()
            pieces = [["词", " 🇫🇷", ' "q"\n', " é"][i % 4] + str(i) for i in range(37)]
            with self.publisher(batch={"max_tokens": 4, "max_delay_ms": 20}) as publisher:
                text = ""
                for i, piece in enumerate(pieces):
                    text += piece
                    publisher.publish_token(piece, text)
                    if i % 9 == 8:
                        time.sleep(0.04)
                publisher.publish_done(text)
            tokens = []
            for message in subscriber.listen(timeout=5):
                if message["type"] == "done":
                    break
                tokens.append(message)
        self.assertLess(len(tokens), len(pieces))
        shown = ""
        for token in tokens:
            shown += token["content"]
            self.assertEqual(token["full_text"], shown)
        self.assertEqual(shown, text)

    def test_one_sequence_number_per_batch_and_a_retried_batch_is_logged_once(self):
        publisher = self.publisher(batch={"max_tokens": 3, "max_delay_ms": NEVER})
        real = publisher._publish_script
        seqs = []
        lose = [1]

        def script(keys, args):
            options = json.loads(args[-1])
            seqs.append(options.get("seq"))
            reply = real(keys=keys, args=args)
            if args[2] == "token" and lose[0] > 0:
                lose[0] -= 1
                raise redis.exceptions.ConnectionError("reply lost")
            return reply

        publisher._publish_script = script
        with publisher:
            publisher.publish_stage_update("processing", 0)
            text = ""
            for piece in "abcdefg":
                text += piece
                publisher.publish_token(piece, text)
            publisher.publish_done(text)
        self.assertEqual([m.get("content", m["type"]) for m in self.received(5)], ["stage_update", "abc", "def", "g", "done"])
        self.assertEqual(seqs, [1, 2, 2, 3, 4, 5])
        self.assertEqual(self.redis.xlen(log_key("ai_story", self.project)), 5)
        self.assertEqual(self.stage_text(), text)
        self.assertEqual(self.redis.hget(control_key("ai_story", self.project), f"seq|{publisher.producer_id}"), b"5")

    def test_a_background_failure_raises_at_the_next_call_and_the_batch_is_sent_again(self):
        publisher = self.publisher(retries=0, batch={"max_tokens": 100, "max_delay_ms": 10})
        real = publisher._publish_script
        down = [True]

        def script(keys, args):
            if down[0]:
                raise redis.exceptions.ConnectionError("Redis is down")
            return real(keys=keys, args=args)

        publisher._publish_script = script
        with publisher:
            publisher.publish_token("Once", "Once")
            time.sleep(0.1)  # the thread's flush fails
            with self.assertRaises(redis.exceptions.ConnectionError):
                publisher.publish_token(" upon", "Once upon")  # reported; this token was not taken
            down[0] = False
            publisher.publish_token(" upon", "Once upon")
            publisher.publish_done("Once upon")
        self.assertEqual([(m["type"], m.get("content")) for m in self.received(3)], [("token", "Once"), ("token", " upon"), ("done", None)])
        self.assertEqual(self.stage_text(), "Once upon")

    def test_a_message_whose_flush_failed_raises_and_is_not_sent(self):
        publisher = self.publisher(retries=0, batch={"max_tokens": 100, "max_delay_ms": NEVER})
        real = publisher._publish_script
        down = [True]

        def script(keys, args):
            if down[0]:
                raise redis.exceptions.ConnectionError("Redis is down")
            return real(keys=keys, args=args)

        publisher._publish_script = script
        with publisher:
            publisher.publish_token("a", "a")
            with self.assertRaises(redis.exceptions.ConnectionError):
                publisher.publish_done("a")
            with self.assertRaises(redis.exceptions.ConnectionError):
                publisher.flush()
            down[0] = False
            publisher.publish_done("a")
        self.assertEqual([m["type"] for m in self.received(2)], ["token", "done"])

    def test_close_and_the_with_block_raise_when_the_buffer_cannot_be_sent(self):
        publisher = self.publisher(retries=0, batch=True)

        def script(keys, args):
            raise redis.exceptions.ConnectionError("Redis is down")

        publisher._publish_script = script
        publisher.publish_token("lost?")
        with self.assertRaises(redis.exceptions.ConnectionError):
            publisher.close()
        publisher.close()  # closed all the same
        with self.assertRaises(RuntimeError):
            publisher.publish_token("x")
        with self.assertRaises(redis.exceptions.ConnectionError):
            with self.publisher(retries=0, batch=True) as scoped:
                scoped._publish_script = script
                scoped.publish_token("lost too?")

    def test_a_refused_batch_raises_token_offset_error_and_is_dropped(self):
        with self.publisher() as other, self.publisher(batch={"max_tokens": 100, "max_delay_ms": NEVER}) as publisher:
            other.publish_token("abc", "abc")
            publisher.publish_token("d", "abcd")
            publisher.flush()
            other.publish_token("!", "abcd!")
            publisher.publish_token("e", "abcde")
            with self.assertRaises(TokenOffsetError):
                publisher.flush()
            self.assertIsNone(publisher.flush())
        self.assertEqual(self.stage_text(), "abcd!")


if __name__ == "__main__":
    unittest.main()
