"""A local HTTP server that speaks the OpenAI chat completions API (POST /v1/chat/completions),
for the judge's tests and benchmark. It runs in its own thread and event loop, so the
judge under test (in-process or a subprocess) talks to it over real sockets.

What it answers is scripted: per marker (a string in the request's messages) or globally,
a queue of behaviours; when the queue is empty it answers `default`.
- valid: a JSON verdict {"score": score, "explanation": ...} with usage tokens; the score is
  `scores[marker]` for the first marker of `scores` in the request, else `score`
- invalid: 200 with content that is not JSON; out_of_scale: {"score": 99, ...}
- 429: Too Many Requests with Retry-After; 500 / 503: server errors
- drop: a 200 whose body is cut off mid-stream (the connection closes)
- 400: a request error
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class FakeOpenAI:
    latency_s: float = 0.0
    score: int = 4
    scores: dict[str, int] = field(default_factory=dict)  # marker -> the verdict's score
    default: str = "valid"
    retry_after: str = "0"
    port: int = field(default_factory=_free_port)
    requests: list[dict] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _scripts: dict[str | None, deque[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *behaviours: str, marker: str | None = None) -> None:
        with self._lock:
            self._scripts.setdefault(marker, deque()).extend(behaviours)

    def count(self, marker: str | None = None) -> int:
        with self._lock:
            reqs = list(self.requests)
        if marker is None:
            return len(reqs)
        return sum(marker in json.dumps(r["messages"]) for r in reqs)

    def _next(self, body: dict) -> str:
        text = json.dumps(body.get("messages", []))
        with self._lock:
            for marker, queue in self._scripts.items():
                if marker is not None and marker in text and queue:
                    return queue.popleft()
            queue = self._scripts.get(None)
            return queue.popleft() if queue else self.default

    # -- server ----------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._connection, "127.0.0.1", self.port)
            )
            ready.set()
            self._loop.run_forever()
            # Open keep-alive connections end with the server, inside its loop.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def close(self) -> None:
        def shutdown() -> None:
            self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shutdown)
        self._thread.join(10)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._answer(method, path, headers, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _answer(self, method: str, path: str, headers: dict, raw: bytes, writer: asyncio.StreamWriter) -> bool:
        if method != "POST" or path != "/v1/chat/completions":
            self._write(writer, 404, {"error": {"message": f"no route {method} {path}"}})
            return True
        body = json.loads(raw)
        with self._lock:
            self.requests.append({**body, "authorization": headers.get("authorization")})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            behaviour = self._next(body)
        finally:
            with self._lock:
                self.in_flight -= 1
        prompt_chars = sum(len(m.get("content") or "") for m in body.get("messages", []))
        if behaviour in ("valid", "invalid", "out_of_scale"):
            text = json.dumps(body.get("messages", []))
            score = next((v for marker, v in self.scores.items() if marker in text), self.score)
            content = {
                "valid": json.dumps({"score": score, "explanation": "stub verdict: the response is adequate."}),
                "invalid": "Sure! I would rate this a 4 out of 5.",
                "out_of_scale": json.dumps({"score": 99, "explanation": "off the scale"}),
            }[behaviour]
            reply = {
                "id": f"chatcmpl-{time.monotonic_ns()}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(content) // 4 + 1,
                          "total_tokens": prompt_chars // 4 + len(content) // 4 + 2},
            }
            self._write(writer, 200, reply)
            return True
        if behaviour == "429":
            self._write(writer, 429, {"error": {"message": "Rate limit reached", "type": "requests"}},
                        {"Retry-After": self.retry_after})
            return True
        if behaviour in ("500", "503", "400"):
            self._write(writer, int(behaviour), {"error": {"message": f"stub {behaviour}"}})
            return True
        if behaviour == "drop":
            # Promise a body, send half of it, hang up: a reply broken off mid-stream.
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n")
            writer.write(b'{"id": "chatcmpl-cut", "choices": [{"index": 0, "mess')
            await writer.drain()
            return False
        raise AssertionError(f"unknown behaviour {behaviour}")

    @staticmethod
    def _write(writer: asyncio.StreamWriter, status: int, payload: dict, extra: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
                  500: "Internal Server Error", 503: "Service Unavailable"}[status]
        head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json",
                f"Content-Length: {len(data)}", "Connection: keep-alive"]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
