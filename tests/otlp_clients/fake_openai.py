"""A local OpenAI-compatible server for the instrumentation tests: chat completions (plain
and streamed as server-sent events, with tool calls) and embeddings, answering
deterministically so a test knows what each stored call must hold.

What it answers:
- a chat whose request offers tools and whose last message is the user's: one tool call
  (the first tool, arguments {"city": <last word of the question>});
- otherwise: "Answer: <the last message's text>", and after a tool result
  "Answer: <the tool result>";
- usage on every reply (streams: in the final chunk when `stream_options.include_usage`),
  with cached prompt tokens and reasoning tokens, so cache and reasoning mapping is tested;
- `model` in the reply is the requested one, unless `swap` maps it to another (a provider
  that silently serves another model behind the name); `system_fingerprint` likewise.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CACHED_TOKENS = 3
REASONING_TOKENS = 2


def _words(text: str) -> int:
    return max(1, len(text.split()))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


@dataclass
class FakeOpenAI:
    host: str = "127.0.0.1"
    swap: dict[str, str] = field(default_factory=dict)  # requested model -> model answering
    fingerprints: dict[str, str] = field(default_factory=dict)  # answering model -> fingerprint
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append({"path": self.path, "body": body})
                if self.path.endswith("/chat/completions"):
                    fake._chat(self, body)
                elif self.path.endswith("/embeddings"):
                    fake._json(self, fake._embeddings(body))
                else:
                    fake._json(self, {"error": {"message": f"no route {self.path}"}}, status=404)

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- replies ------------------------------------------------------------------------

    def _json(self, handler: BaseHTTPRequestHandler, payload: dict, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, body: dict) -> tuple[str | None, list[dict] | None]:
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        tools = body.get("tools") or []
        if tools and last.get("role") == "user":
            words = _text(last.get("content")).rstrip("?.!").split()
            name = tools[0]["function"]["name"]
            arguments = json.dumps({"city": words[-1] if words else "nowhere"})
            return None, [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}]
        return f"Answer: {_text(last.get('content'))}", None

    def _usage(self, body: dict, answer: str | None, calls: list[dict] | None) -> dict:
        prompt = sum(_words(_text(m.get("content"))) for m in body.get("messages") or []) + 5
        completion = _words(answer or json.dumps(calls)) + REASONING_TOKENS
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": REASONING_TOKENS, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }

    def _identity(self, body: dict) -> tuple[str, str]:
        model = self.swap.get(body.get("model", ""), body.get("model", "unknown"))
        return model, self.fingerprints.get(model, "fp_" + model.replace("-", "")[:10])

    def _chat(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        answer, calls = self._answer(body)
        usage = self._usage(body, answer, calls)
        model, fingerprint = self._identity(body)
        reply_id = f"chatcmpl-{len(self.requests)}"
        created = int(time.time())
        finish = "tool_calls" if calls else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": answer}
            if calls:
                message["tool_calls"] = calls
            self._json(handler, {
                "id": reply_id, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": fingerprint,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": usage,
            })
            return
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("cache-control", "no-cache")
        handler.end_headers()

        def chunk(delta: dict, finish_reason: str | None = None, with_usage: dict | None = None) -> None:
            payload: dict[str, Any] = {
                "id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": fingerprint,
                "choices": [] if with_usage else [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            if with_usage:
                payload["usage"] = with_usage
            handler.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            handler.wfile.flush()

        chunk({"role": "assistant", "content": ""})
        if calls:
            chunk({"tool_calls": [{"index": 0, **calls[0]}]})
        else:
            words = (answer or "").split(" ")
            for n, word in enumerate(words):
                chunk({"content": word if n == 0 else " " + word})
        chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            chunk({}, with_usage=usage)
        handler.wfile.write(b"data: [DONE]\n\n")
        handler.wfile.flush()

    def _embeddings(self, body: dict) -> dict:
        inputs = body.get("input")
        texts = inputs if isinstance(inputs, list) else [inputs]
        model, _ = self._identity(body)
        tokens = sum(_words(str(t)) for t in texts)
        return {
            "object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i, _ in enumerate(texts)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
