"""Real receivers for the evaluator's notifications: local HTTP servers (one thread each)
that record what they are sent and answer as told (a number of failures first, a status,
a Retry-After)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WEBHOOK_SECRET = "webhook-secret-0123456789"
ROUTING_KEY = "R0UT1NGKEY0123456789ABCDEFGHIJKL"  # PagerDuty integration keys are 32 characters


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP endpoint: answers `fail_status` to the first `fail_times` requests, then `ok_status`."""

    name: str
    ok_status: int = 200
    ok_body: bytes = b"ok"
    fail_times: int = 0
    fail_status: int = 503
    retry_after: str | None = None
    requests: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/{self.name}"

    @property
    def delivered(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    failing = receiver.fail_times > 0
                    if failing:
                        receiver.fail_times -= 1
                    status = receiver.fail_status if failing else receiver.ok_status
                    receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                      body, status))
                self.send_response(status)
                if failing and receiver.retry_after is not None:
                    self.send_header("Retry-After", receiver.retry_after)
                reply = b"upstream unavailable" if failing else receiver.ok_body
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# A whole minute, like Grafana's evaluation ticks; an hour ago, so the minutes the tests
# evaluate are in the past and well inside the tables' TTL.
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
