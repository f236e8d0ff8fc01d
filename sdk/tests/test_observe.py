"""@observe and `with observe(...)`: any function or block recorded as one LLM call."""

from __future__ import annotations

import asyncio
import time

import pytest

import lookout_sdk
from lookout_sdk import current_call, last_event_id, observe


def test_a_decorated_function_is_recorded_with_its_input_output_and_latency(ingest, make_client):
    client = make_client()

    @client.observe(model="llama-3-8b", provider="vllm", prompt_version="v2", tags=["rag"])
    def answer(question: str) -> str:
        time.sleep(0.05)
        return f"answer to {question}"

    assert answer("why?") == "answer to why?"
    assert client.flush(5)
    (event,) = ingest.events
    assert event["event_id"] == last_event_id()
    assert (event["model"], event["provider"], event["prompt_version"]) == ("llama-3-8b", "vllm", "v2")
    assert event["prompt"] == "why?"
    assert event["output"] == "answer to why?"
    assert event["tags"] == ["rag"]
    assert event["status"] == "ok"
    assert 50 <= event["latency_ms"] < 1000


def test_messages_arguments_become_the_input_and_the_body_can_fill_in_the_rest(ingest, make_client):
    client = make_client()

    @client.observe(model="m")
    def chat(messages: list[dict], temperature: float = 0.0) -> str:
        call = current_call()
        assert call is not None
        call.tokens_in, call.tokens_out, call.cost_usd = 10, 2, 0.5
        return "ok"

    chat([{"role": "user", "content": "hello"}], temperature=0.3)
    assert client.flush(5)
    (event,) = ingest.events
    assert event["input"] == [{"role": "user", "content": "hello"}]
    assert (event["tokens_in"], event["tokens_out"], event["cost_usd"]) == (10, 2, 0.5)


def test_an_exception_is_recorded_as_an_error_and_re_raised(ingest, make_client):
    client = make_client()

    @client.observe(model="m")
    def broken(prompt: str) -> str:
        raise ConnectionError("model server down")

    with pytest.raises(ConnectionError):
        broken("hi")
    assert client.flush(5)
    (event,) = ingest.events
    assert event["status"] == "error"
    assert event["error"] == "ConnectionError: model server down"
    assert event["prompt"] == "hi"


async def test_async_functions_and_async_generators_are_observed(ingest, make_client):
    client = make_client()

    @client.observe(model="m")
    async def complete(prompt: str) -> str:
        await asyncio.sleep(0.02)
        return "done"

    @client.observe(model="m")
    async def stream(prompt: str):
        await asyncio.sleep(0.05)
        for word in ["a", "b", "c"]:
            yield word
            await asyncio.sleep(0.02)

    assert await complete("x") == "done"
    assert [w async for w in stream("y")] == ["a", "b", "c"]
    assert client.flush(5)
    plain, streamed = ingest.events
    assert plain["output"] == "done" and plain["latency_ms"] >= 20
    assert streamed["output"] == "abc"
    assert 50 <= streamed["ttft_ms"] < streamed["latency_ms"]
    assert streamed["latency_ms"] >= 90


def test_a_generator_gets_time_to_first_token(ingest, make_client):
    client = make_client()

    @client.observe(model="m")
    def stream(prompt: str):
        time.sleep(0.05)
        yield "Hel"
        time.sleep(0.05)
        yield "lo"

    assert "".join(stream("hi")) == "Hello"
    assert client.flush(5)
    (event,) = ingest.events
    assert event["output"] == "Hello"
    assert 50 <= event["ttft_ms"] < 100 <= event["latency_ms"]


def test_the_context_manager_records_what_the_block_sets(ingest, make_client):
    client = make_client()
    with client.observe(model="m", provider="local") as call:
        call.input = [{"role": "user", "content": "hi"}]
        time.sleep(0.02)
        call.first_token()
        time.sleep(0.02)
        call.output = "hello"
        call.tokens_out = 1
        event_id = call.event_id
    with pytest.raises(ValueError), client.observe(model="m"):
        raise ValueError("bad")
    assert client.flush(5)
    ok, failed = ingest.events
    assert ok["event_id"] == event_id
    assert ok["output"] == "hello" and ok["tokens_out"] == 1
    assert 20 <= ok["ttft_ms"] < ok["latency_ms"]
    assert failed["status"] == "error" and failed["error"] == "ValueError: bad"


def test_module_level_observe_uses_the_default_client_when_the_call_happens(ingest, make_client):
    @observe(model="m")  # decorated before any client exists, as at import time
    def answer(prompt: str) -> str:
        return "x"

    client = make_client()
    lookout_sdk.set_client(client)
    try:
        answer("q")
        assert client.flush(5)
    finally:
        lookout_sdk._default._client = None
    assert ingest.events[0]["prompt"] == "q"


def test_observe_refuses_unknown_fields():
    with pytest.raises(TypeError):
        observe(model="m", colour="blue")


def test_without_a_model_the_function_name_stands_in_within_the_identifier_characters(ingest, make_client):
    client = make_client()

    @client.observe()
    def answer(question: str) -> str:  # a nested function: its qualname holds "<locals>"
        return "42"

    with client.observe(name="lookup step (cached)"):
        pass
    answer("why?")
    assert client.flush(5)
    # The test server validates with the real schema: both were accepted, none rejected.
    assert sorted(e["model"] for e in ingest.events) == [
        "lookup_step_cached_",
        "test_without_a_model_the_function_name_stands_in_within_the_identifier_characters.answer",
    ]
    assert client.stats.failed == 0
