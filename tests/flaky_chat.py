"""A loopback OpenAI-compatible chat server that misbehaves on cue (tests and the benchmark).

It is asyncio (``aiohttp.web`` on its own event loop in a thread), so slow answers cost a
timer each, not a thread: the server is never the bottleneck of a throughput measurement.
``reply(prompt, nth)`` decides each answer from the user message and how many times that
message was asked before (0 for the first request).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Reply:
    """One scripted answer: a status, extra headers, the assistant text (for 200) and a delay."""

    status: int = 200
    content: str = "{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def chat_body(content: str) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}).encode()


class FlakyChatServer:
    """``/v1/chat/completions`` on 127.0.0.1 answering with ``reply(prompt, nth)``; ``requests`` logs every call."""

    def __init__(self, reply: Callable[[str, int], Reply]):
        self.reply = reply
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = self.peak_in_flight = 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self.serve, args=(started,), daemon=True)
        self.thread.start()
        started.wait(timeout=30)
        self.url = f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def serve(self, started: threading.Event) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0, backlog=1024)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def handle(self, request):
        from aiohttp import web

        body = await request.json()
        prompt = body["messages"][-1]["content"]
        with self.lock:
            nth = sum(r["prompt"] == prompt for r in self.requests)
            self.requests.append({"prompt": prompt, "time": time.monotonic(), "body": body, "auth": request.headers.get("Authorization")})
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            answer = self.reply(prompt, nth)
            if answer.delay_s:
                await asyncio.sleep(answer.delay_s)
            data = chat_body(answer.content) if answer.status == 200 else json.dumps({"error": {"message": f"scripted {answer.status}"}}).encode()
            return web.Response(status=answer.status, body=data, headers=answer.headers, content_type="application/json")
        finally:
            with self.lock:
                self.in_flight -= 1

    def times_of(self, prompt: str) -> list[float]:
        return [r["time"] for r in self.requests if r["prompt"] == prompt]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
