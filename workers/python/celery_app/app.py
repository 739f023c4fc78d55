"""The Celery app: a Redis broker (``CELERY_BROKER_URL``, default ``REDIS_URL``), the original queues ``llm``,
``image`` and ``video``, one task per stage of the story pipeline (tasks.py)."""
import os

from celery import Celery
from kombu import Queue

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")

app = Celery("ai_story", broker=os.environ.get("CELERY_BROKER_URL", REDIS_URL), include=["celery_app.tasks"])
app.conf.update(
    task_queues=[Queue("llm"), Queue("image"), Queue("video")],
    task_default_queue="llm",
    task_routes={
        "ai_story.rewrite": {"queue": "llm"},
        "ai_story.storyboard": {"queue": "llm"},
        "ai_story.image_generation": {"queue": "image"},
        "ai_story.video_generation": {"queue": "video"},
    },
    task_ignore_result=True,
    # One task at a time per worker slot: a long generation is not prefetched behind another.
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
