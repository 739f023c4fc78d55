"""Streams a short fake "rewrite" stage, for trying the kit with a Python worker.

    /usr/bin/python3 workers/python/example.py --project demo --stage rewrite
    # then open http://127.0.0.1:8000/sse-demo, or: curl -N http://127.0.0.1:8000/api/v1/sse/projects/demo/

REDIS_URL and CHANNEL_PREFIX are read as the server reads them.
"""

import argparse
import os
import time

from ai_story_stream import RedisStreamPublisher

TEXT = "Once upon a time, a tireless worker streamed its story to the browser, one token at a time."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="demo")
    parser.add_argument("--stage", default="rewrite")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between tokens")
    options = parser.parse_args()

    started = time.monotonic()
    with RedisStreamPublisher(
        options.project,
        options.stage,
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"),
        prefix=os.environ.get("CHANNEL_PREFIX", "ai_story"),
    ) as publisher:
        publisher.publish_stage_update("processing", 0, f"{options.stage} started")
        full_text = ""
        words = TEXT.split(" ")
        for index, word in enumerate(words):
            token = word if index == 0 else " " + word
            full_text += token
            print(publisher.publish_token(token, full_text), token)
            time.sleep(options.delay)
        publisher.publish_stage_update("completed", 100, f"{options.stage} completed")
        publisher.publish_done(full_text, {"tokens_used": len(words), "latency_ms": round((time.monotonic() - started) * 1000)})


if __name__ == "__main__":
    main()
