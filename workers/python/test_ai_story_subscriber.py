"""Unit tests of ai_story_subscriber against a real Redis.

Run by server/test/python-subscriber.test.ts, which starts a private redis-server and sets
AI_STORY_TEST_REDIS_URL; never point it at a Redis whose data matters.
"""

import itertools
import os
import threading
import time
import unittest

import redis

from ai_story_stream import RedisStreamPublisher
from ai_story_subscriber import RedisStreamSubscriber, compare_log_ids

URL = os.environ.get("AI_STORY_TEST_REDIS_URL")
_projects = itertools.count()


@unittest.skipUnless(URL, "set AI_STORY_TEST_REDIS_URL to a throwaway Redis")
class RedisStreamSubscriberTest(unittest.TestCase):
    def setUp(self):
        self.project = f"pysub{os.getpid()}-{next(_projects)}"

    def publisher(self, stage="rewrite", **options):
        publisher = RedisStreamPublisher(self.project, stage, redis_url=URL, **options)
        self.addCleanup(publisher.close)
        return publisher

    def test_subscribe_listen_timeout_get_message_unsubscribe(self):
        with RedisStreamSubscriber(self.project, "rewrite", redis_url=URL) as subscriber:
            self.assertIsNone(subscriber.get_message())
            subscriber.subscribe()
            self.assertIsNone(subscriber.get_message())
            publisher = self.publisher()
            first = publisher.publish_stage_update("processing", 10, "rewriting")
            self.publisher("other").publish_stage_update("processing", 0)  # another stage: not heard
            deadline = time.monotonic() + 5
            message = None
            while message is None and time.monotonic() < deadline:
                message = subscriber.get_message()
            self.assertEqual(message["id"], first)
            self.assertEqual((message["type"], message["status"], message["progress"], message["message"]),
                             ("stage_update", "processing", 10, "rewriting"))
            self.assertEqual(message["project_id"], self.project)
            self.assertEqual(message["stage"], "rewrite")
            done = publisher.publish_done("all", {"tokens_used": 1})
            started = time.monotonic()
            received = list(subscriber.listen(timeout=0.5))
            self.assertGreaterEqual(time.monotonic() - started, 0.5)
            self.assertEqual([(m["type"], m["id"]) for m in received], [("done", done)])
            self.assertEqual(received[0]["metadata"], {"tokens_used": 1})
            subscriber.unsubscribe()
            publisher.publish_error("late", 1)
            self.assertEqual(list(subscriber.listen(timeout=0.2)), [])  # listen() subscribes again: only later ones
            self.assertIsNone(subscriber.get_message())
            subscriber.unsubscribe()
            publisher.publish_error("boom", 2)
            self.assertEqual([m["error"] for m in subscriber.listen(timeout=0.3)], [])
            publisher.publish_error("heard", 3)
            self.assertEqual([m["error"] for m in subscriber.listen(timeout=0.3)], ["heard"])

    def test_all_stages_and_foreign_payloads(self):
        with RedisStreamSubscriber(self.project, redis_url=URL) as subscriber:
            subscriber.subscribe()
            ids = [self.publisher("rewrite").publish_stage_update("processing", 0),
                   self.publisher("storyboard").publish_progress(1, 4, "frame 1")]
            redis.Redis.from_url(URL).publish(f"ai_story:project:{self.project}:stage:raw", "plain text")
            received = list(subscriber.listen(timeout=0.5))
        self.assertEqual([m.get("id") for m in received[:2]], ids)
        self.assertEqual([m.get("stage") for m in received[:2]], ["rewrite", "storyboard"])
        self.assertEqual(received[1]["progress"], 25)
        self.assertEqual(received[2], {"type": "message", "data": "plain text",
                                       "channel": f"ai_story:project:{self.project}:stage:raw"})

    def test_linear_tokens_get_their_full_text_back_also_when_joining_mid_stage(self):
        publisher = self.publisher()
        pieces = ["从前", "😀", " 有一座山", "🇫🇷é", " end"]
        text = ""
        for piece in pieces[:2]:
            text += piece
            publisher.publish_token(piece, text)
        with RedisStreamSubscriber(self.project, "rewrite", redis_url=URL) as late, \
                RedisStreamSubscriber(self.project, redis_url=URL) as every:
            late.subscribe()
            every.subscribe()
            expected = []
            for piece in pieces[2:]:
                text += piece
                expected.append((piece, text))
                publisher.publish_token(piece, text)
            for subscriber in (late, every):
                got = [(m["content"], m["full_text"], "offset" in m) for m in subscriber.listen(timeout=0.5)]
                self.assertEqual(got, [(c, t, False) for c, t in expected])

    def test_a_token_whose_text_cannot_be_known_comes_as_it_came(self):
        publisher = self.publisher()
        publisher.publish_token("a", "a")
        # The stage's kept text vanishes (say it expired) before the subscriber reads it: the next token cannot be
        # given a text.
        redis.Redis.from_url(URL).delete(f"ai_story:project:{{{self.project}}}:text:rewrite")
        with RedisStreamSubscriber(self.project, "rewrite", redis_url=URL) as subscriber:
            subscriber.subscribe()
            publisher.publish_token("b", "ab")
            (message,) = list(subscriber.listen(timeout=0.5))
        self.assertEqual((message["content"], message["offset"]), ("b", 1))
        self.assertNotIn("full_text", message)

    def test_listen_last_id_resumes_exactly_while_a_publisher_races(self):
        publisher = self.publisher()
        ids, texts = [], []
        text = ""
        for i in range(30):
            piece = f"{i}😀 "
            text += piece
            ids.append(publisher.publish_token(piece, text))
            texts.append(text)
        racer = self.publisher()
        racer._joined, racer._text = True, text  # continues the same text
        stop = threading.Event()

        def race():
            nonlocal text
            while not stop.is_set() and len(ids) < 400:
                piece = f"{len(ids)}从 "
                text += piece
                ids.append(racer.publish_token(piece, text))
                texts.append(text)

        thread = threading.Thread(target=race)
        thread.start()
        try:
            time.sleep(0.02)
            with RedisStreamSubscriber(self.project, "rewrite", redis_url=URL, page_size=7) as subscriber:
                received = []
                for message in subscriber.listen(timeout=1, last_id=ids[4]):
                    received.append(message)
                    if len(received) == 1:
                        time.sleep(0.05)
                    if not thread.is_alive() and len(received) == len(ids) - 5:
                        break
        finally:
            stop.set()
            thread.join()
        self.assertEqual([m["id"] for m in received], ids[5:])
        self.assertEqual([m["full_text"] for m in received], texts[5:])
        for a, b in zip(received, received[1:]):
            self.assertLess(compare_log_ids(a["id"], b["id"]), 0)

    def test_listen_last_id_not_in_the_log_starts_with_a_reset(self):
        publisher = self.publisher()
        publisher.publish_stage_update("processing", 50, "half")
        last = publisher.publish_token("Hi 😀", "Hi 😀")
        with RedisStreamSubscriber(self.project, "rewrite", redis_url=URL) as subscriber:
            stream = subscriber.listen(timeout=0.5, last_id="1-0")
            reset = next(stream)
            after = publisher.publish_token("!", "Hi 😀!")
            rest = list(stream)
        self.assertEqual((reset["type"], reset["reason"], reset["id"], reset["stage"]), ("reset", "expired", last, "rewrite"))
        self.assertEqual(reset["stages"]["rewrite"]["text"], "Hi 😀")
        self.assertEqual(reset["stages"]["rewrite"]["stage_update"]["progress"], 50)
        self.assertEqual([(m["id"], m["full_text"]) for m in rest], [(after, "Hi 😀!")])
        with RedisStreamSubscriber(f"{self.project}-empty", redis_url=URL) as empty:
            (reset,) = list(empty.listen(timeout=0.1, last_id="1-0"))
        self.assertEqual((reset["reason"], reset["id"], reset["stages"]), ("unknown_id", None, {}))

    def test_state(self):
        rewrite = self.publisher("rewrite")
        rewrite.publish_stage_update("processing", 20, "rewriting")
        rewrite.publish_token("从前", "从前")
        rewrite.publish_token("😀", "从前😀")
        story = self.publisher("storyboard")
        story.publish_progress(2, 4, "frame 2")
        story.publish_done("the end", {"frames": 4})
        last = story.publish_error("late failure", 1)
        with RedisStreamSubscriber(self.project, redis_url=URL) as subscriber:
            state = subscriber.state()
            self.assertEqual(subscriber.current_state()["stages"], state["stages"])
        self.assertEqual((state["type"], state["id"], state["project_id"], state["stage"]), ("snapshot", last, self.project, None))
        self.assertEqual(set(state["stages"]), {"rewrite", "storyboard"})
        self.assertEqual(state["stages"]["rewrite"]["text"], "从前😀")
        self.assertEqual(state["stages"]["rewrite"]["stage_update"]["message"], "rewriting")
        self.assertNotIn("token", state["stages"]["rewrite"])
        board = state["stages"]["storyboard"]
        self.assertEqual(set(board), {"progress", "done", "error"})  # no text once done is there
        self.assertEqual((board["progress"]["progress"], board["done"]["full_text"], board["error"]["id"]), (50, "the end", last))
        with RedisStreamSubscriber(self.project, "rewrite", redis_url=URL) as one:
            self.assertEqual(set(one.state()["stages"]), {"rewrite"})
        with RedisStreamSubscriber(f"{self.project}-none", redis_url=URL) as none:
            self.assertEqual((none.state()["id"], none.state()["stages"]), (None, {}))

    def test_original_format_tokens_pass_and_feed_the_text(self):
        old = self.publisher(linear_tokens=False)
        with RedisStreamSubscriber(self.project, "rewrite", redis_url=URL) as subscriber:
            subscriber.subscribe()
            old.publish_token("a", "a")
            self.publisher().publish_token("b", "ab")  # a linear publisher joins: sends the whole text
            got = [(m["content"], m["full_text"]) for m in subscriber.listen(timeout=0.5)]
        self.assertEqual(got, [("a", "a"), ("b", "ab")])

    def test_bad_input(self):
        for bad in ("", "a b", "x" * 65, "__proto__", None, "a*"):
            with self.assertRaises(ValueError):
                RedisStreamSubscriber(bad, redis_url=URL)
        with self.assertRaises(ValueError):
            RedisStreamSubscriber(self.project, "st*", redis_url=URL)
        with RedisStreamSubscriber(self.project, redis_url=URL) as subscriber:
            with self.assertRaises(ValueError):
                next(subscriber.listen(last_id="not-an-id"))
            with self.assertRaises(ValueError):
                next(subscriber.listen(timeout=-1))


if __name__ == "__main__":
    unittest.main()
