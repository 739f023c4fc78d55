"""One Celery task per stage of the story pipeline, each publishing through ``RedisStreamPublisher``:

* **heartbeat**: the publisher holds a lease on the stage (``SSE_LEASE_MS``, 30 s) renewed by every publish and by
  its background thread; when the worker dies (SIGKILL, OOM, a lost node) the hub publishes a ``worker_lost`` error
  within the lease. On a pool without threads call ``publisher.heartbeat()`` in long steps instead (``heartbeat=False``).
* **cancel**: ``POST .../stages/{stage}/cancel/`` sets ``publisher.cancelled`` at once (the thread hears it) and the
  next publish raises ``StageCancelled``; the task says where it stopped (``publish_cancelled``) and lets it propagate
  (``throws``: logged as expected, not retried).
* **retries**: a task retried from the start (``autoretry_for``) is a new run of its stage (a new producer id,
  ``attempt`` = retries + 1): its first message says the stage restarted, its first token has offset 0 so viewers
  replace the text instead of doubling it, and a stage already done is not published again. A publish retried after a
  lost reply is never doubled either: each message carries the producer id and a sequence number.

The "models" are mock generators (the hub's demo texts), paced by ``input_data["speed"]``; ``input_data["fail_at"]``
makes the first ``input_data.get("fail_attempts", 1)`` attempts fail at that token with a retryable error.
"""
from __future__ import annotations

import os
import re
import time
from typing import Any, Dict, Optional

import redis

from ai_story_stream import LeaseLost, RedisStreamPublisher, StageCancelled, control_key

from .app import REDIS_URL, app

PREFIX = os.environ.get("CHANNEL_PREFIX", "ai_story")
LEASE_MS = int(os.environ.get("SSE_LEASE_MS", "30000"))

REWRITE_TEXT = (
    "从前，在一座被云雾环绕的山城里，住着一位名叫 Lin 的年轻画师。She painted lanterns for the night market, "
    "每一盏灯笼上都画着一个未完成的故事。One evening a stranger asked her to finish them all before the first snow."
)
STORYBOARD_TEXT = "Scene 1 — 山城夜市，远景。Lanterns sway in the wind. Scene 2 — 特写：陌生人的手递上一卷旧画纸。"
IMAGE_ITEMS = ["scene_1_night_market.png", "scene_2_stranger.png", "scene_3_montage.png", "cover.png"]
VIDEO_ITEMS = ["clip_scene_1.mp4", "clip_scene_2.mp4", "clip_scene_3.mp4"]


class ModelUnavailable(Exception):
    """A retryable failure of the model provider (a 503, a timeout)."""


def to_tokens(text: str):
    """Pieces as an LLM streams them: an English word with its space, one or two CJK characters, punctuation."""
    return re.findall(r"[A-Za-z0-9'’]+\s*|[\u3400-\u9fff]{1,2}|[^A-Za-z0-9'’\u3400-\u9fff]+?\s*", text)


def _stage_done(client: redis.Redis, project_id: str, stage: str) -> bool:
    """True when the stage already finished (a retried pipeline skips it instead of publishing it again)."""
    return client.hget(control_key(PREFIX, project_id), f"status|{stage}") in (b"done",)


def _publisher(task, project_id: str, stage: str) -> RedisStreamPublisher:
    return RedisStreamPublisher(project_id, stage, redis_url=REDIS_URL, prefix=PREFIX, lease_ms=LEASE_MS)


def _run_stage(task, project_id: str, stage: str, input_data: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    options = dict(input_data or {})
    speed = float(options.get("speed", 1))
    attempt = task.request.retries + 1
    with _publisher(task, project_id, stage) as publisher:
        if _stage_done(publisher._redis, project_id, stage):
            return {"stage": stage, "skipped": "already done"}
        started = time.time()
        note = f"{stage} started" if attempt == 1 else f"{stage} restarted (attempt {attempt})"
        publisher.publish_stage_update("processing", 0, note)
        done_items = 0
        try:
            if stage in ("rewrite", "storyboard"):
                tokens = to_tokens(REWRITE_TEXT if stage == "rewrite" else STORYBOARD_TEXT)
                text = ""
                for index, token in enumerate(tokens):
                    if options.get("fail_at") == index and attempt <= int(options.get("fail_attempts", 1)):
                        raise ModelUnavailable(f"the model provider answered 503 at token {index}")
                    text += token
                    # The first token of a run has offset 0: a restarted stage replaces its text.
                    publisher.publish_token(token, text)
                    done_items = index + 1
                    time.sleep(0.045 / speed)
                publisher.publish_stage_update("completed", 100, f"{stage} completed")
                publisher.publish_done(text, {"tokens_used": len(tokens), "latency_ms": int((time.time() - started) * 1000),
                                             "attempt": attempt, "model": "mock-llm"})
                return {"stage": stage, "tokens": len(tokens)}
            items = IMAGE_ITEMS if stage == "image_generation" else VIDEO_ITEMS
            for index, item in enumerate(items):
                # A long step without publishes: the heartbeat thread keeps the lease; cancel is seen at once.
                deadline = time.time() + 0.9 / speed
                while time.time() < deadline:
                    if publisher.cancelled:
                        raise StageCancelled(stage)
                    time.sleep(0.01)
                publisher.publish_progress(index + 1, len(items), item)
                done_items = index + 1
            publisher.publish_stage_update("completed", 100, f"{stage} completed")
            publisher.publish_done(f"{len(items)} items generated", {"items": items, "attempt": attempt})
            return {"stage": stage, "items": len(items)}
        except StageCancelled:
            publisher.publish_cancelled(f"{stage} cancelled after {done_items} steps")
            raise
        except ModelUnavailable as error:
            if task.request.retries >= task.max_retries:
                publisher.publish_stage_update("failed", 0, f"{stage} failed")
                publisher.publish_error(str(error), task.request.retries)
                raise
            publisher.publish_stage_update("processing", 0, f"{stage}: {error}; retrying")
            raise task.retry(exc=error, countdown=float(options.get("retry_delay", 0.2)))


def _stage_task(stage: str, queue: str):
    @app.task(name=f"ai_story.{stage}", bind=True, queue=queue, max_retries=3, throws=(StageCancelled, LeaseLost))
    def run(self, project_id: str, input_data: Optional[Dict[str, Any]] = None):
        return _run_stage(self, project_id, stage, input_data)

    return run


rewrite = _stage_task("rewrite", "llm")
storyboard = _stage_task("storyboard", "llm")
image_generation = _stage_task("image_generation", "image")
video_generation = _stage_task("video_generation", "video")


def pipeline(project_id: str, input_data: Optional[Dict[str, Any]] = None):
    """The whole story pipeline as a Celery chain: each stage starts when the one before is done."""
    from celery import chain

    return chain(*(task.si(project_id, input_data) for task in (rewrite, storyboard, image_generation, video_generation)))
