"""A Celery app for the story pipeline, publishing each stage to the SSE hub through ``RedisStreamPublisher``.

Run it beside the hub (README, "Real workers: Celery, Django, cancel and lost workers")::

    cd workers/python && REDIS_URL=redis://127.0.0.1:6379 python3 -m celery -A celery_app worker -Q llm,image,video -P threads

Start a stage from any Python process: ``celery_app.tasks.rewrite.delay("42", {"speed": 5})``, or the whole
pipeline with ``celery_app.tasks.pipeline("42").delay()``.
"""
from .app import app

__all__ = ["app"]
