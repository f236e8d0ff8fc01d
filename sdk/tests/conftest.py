"""Real HTTP servers for the SDK's tests, on 127.0.0.1, in threads of the test process.

- `ingest`: speaks ingest's wire format (POST /v1/events, /v1/feedback, bearer key, gzip),
  validates every event with the real schema (lookout.core.events.LlmCall) and answers
  per-item rejections like ingest; can be told to answer anything (503 + Retry-After,
  429, 4xx), to hold requests, or to go down and come back on the same port.
- `openai_server`: speaks the OpenAI chat completions API, streaming (SSE, with
  stream_options.include_usage) and not, with configurable delays.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

from lookout.core.events import LlmCall
from lookout_sdk import Lookout

API_KEY = "test-key-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server(ThreadingHTTPServer):
    """Tracks its connections, so that going down also cuts the keep-alive ones (like a
    real process dying), not only the listening socket."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, addr: tuple[str, int], handler: type, owner: Any) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        super().__init__(addr, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        self.connections.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)


class _Base:
    handler: type

    def __init__(self) -> None:
        self.port = free_port()
        self._server: _Server | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = _Server(("127.0.0.1", self.port), self.handler, self)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        for conn in list(server.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any
    at: float
    status: int = 0


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


class _IngestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        owner: IngestServer = self.server.owner  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        owner.gate.wait(30)
        status, headers, payload = owner.handle(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
        data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class IngestServer(_Base):
    """A stand-in for ingest's HTTP intake that records everything it is sent."""

    handler = _IngestHandler

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Received] = []
        self.events: list[dict] = []  # accepted events, in arrival order (duplicates kept)
        self.feedback: list[dict] = []
        self.replies: deque[Reply] = deque()
        self.gate = threading.Event()  # cleared: requests wait (a slow or stuck server)
        self.gate.set()
        super().__init__()

    def stop(self) -> None:
        self.gate.set()
        super().stop()

    api_key = API_KEY

    def reply(self, status: int, headers: dict[str, str] | None = None, body: Any = None, times: int = 1) -> None:
        """Answer the next `times` requests with this, instead of the normal answer."""
        with self.lock:
            self.replies.extend(Reply(status, headers or {}, body) for _ in range(times))

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict, Any]:
        data = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
        body = json.loads(data)
        received = Received(path, headers, raw, body, time.monotonic())
        with self.lock:
            self.requests.append(received)
            scripted = self.replies.popleft() if self.replies else None
        if scripted is not None:
            received.status = scripted.status
            return scripted.status, scripted.headers, scripted.body if scripted.body is not None else {}
        if headers.get("authorization") != f"Bearer {API_KEY}":
            received.status = 401
            return 401, {}, {"detail": "bad key"}
        received.status = 200
        if path == "/v1/feedback":
            with self.lock:
                self.feedback.append(body)
            return 200, {}, {"accepted": 1, "rejected": []}
        accepted, rejected = [], []
        for i, event in enumerate(body["events"]):
            try:
                LlmCall.model_validate(event)
                accepted.append(event)
            except ValidationError as exc:
                err = exc.errors()[0]
                rejected.append({"index": i, "field": ".".join(map(str, err["loc"])), "message": err["msg"]})
        with self.lock:
            self.events.extend(accepted)
        return 200, {}, {"accepted": len(accepted), "rejected": rejected}

    # -- views for assertions

    def event_requests(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == "/v1/events"]

    def ids(self) -> list[str]:
        with self.lock:
            return [e["event_id"] for e in self.events]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()


# ---------------------------------------------------------------------- OpenAI


class _OpenAIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, payload: Any) -> None:
        data = b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_POST(self) -> None:
        owner: OpenAIServer = self.server.owner  # type: ignore[attr-defined]
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        owner.requests.append(req)
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": "not found"}})
        if req["model"] == "missing-model":
            return self._json(
                404, {"error": {"message": "The model does not exist", "type": "invalid_request_error", "code": None}}
            )
        words = owner.words
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in req["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }
        base = {"id": "chatcmpl-test", "created": 1_700_000_000, "model": owner.served_model}
        logprobs = None
        if req.get("logprobs"):
            logprobs = {"content": [{"token": w, "logprob": -0.5 * i, "bytes": None, "top_logprobs": []}
                                    for i, w in enumerate(words)]}
        if not req.get("stream"):
            time.sleep(owner.first_delay)
            message = {"role": "assistant", "content": "".join(words)}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": logprobs}
            return self._json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})

        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(delta: dict, finish: str | None = None, lp: Any = None) -> dict:
            c = {**base, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": lp}]}
            if include_usage:
                c["usage"] = None
            return c

        self._chunk(chunk({"role": "assistant", "content": ""}))
        time.sleep(owner.first_delay)
        for i, word in enumerate(words):
            if i:
                time.sleep(owner.chunk_delay)
            lp = {"content": [logprobs["content"][i]]} if logprobs else None
            self._chunk(chunk({"content": word}, lp=lp))
        self._chunk(chunk({}, "stop"))
        if include_usage:
            self._chunk({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        self._chunk(b"[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class OpenAIServer(_Base):
    handler = _OpenAIHandler

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.words = ["Hello", " from", " the", " test", " model", "."]
        self.served_model = "gpt-test-2024-01-01"
        self.first_delay = 0.0
        self.chunk_delay = 0.0
        super().__init__()


# ---------------------------------------------------------------------- fixtures


@pytest.fixture
def ingest() -> Iterator[IngestServer]:
    server = IngestServer()
    yield server
    server.stop()


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer()
    yield server
    server.stop()


@pytest.fixture
def client_options(ingest: IngestServer) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """The arguments of a client against `ingest` with test-sized timings; the test's own win."""

    def options(app_id: str, given: dict[str, Any]) -> dict[str, Any]:
        return {
            "endpoint": ingest.url,
            "api_key": API_KEY,
            "app_id": app_id,
            "flush_interval": 0.05,
            "backoff_base": 0.05,
            "backoff_max": 0.4,
            **given,
        }

    return options


@pytest.fixture
def make_client(client_options: Callable[[str, dict[str, Any]], dict[str, Any]]) -> Iterator[Callable[..., Lookout]]:
    """Lookout clients against `ingest`, with test-sized timings; closed after the test."""
    clients: list[Lookout] = []

    def make(**kwargs: Any) -> Lookout:
        client = Lookout(**client_options("test-app", kwargs))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=2)
