"""wrap_openai with the official `openai` package, against a local chat completions server."""

from __future__ import annotations

import pytest

openai = pytest.importorskip("openai")

from lookout_sdk import context, last_event_id, wrap_openai  # noqa: E402

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello please"}]
TEXT = "Hello from the test model."
PROMPT_TOKENS = 5  # words in MESSAGES, as the test server counts them
COMPLETION_TOKENS = 6


@pytest.fixture
def sync_clients(openai_server):
    def make():
        return openai.OpenAI(api_key="sk-test", base_url=f"{openai_server.url}/v1", max_retries=0)

    return make


@pytest.fixture
def async_clients(openai_server):
    def make():
        return openai.AsyncOpenAI(api_key="sk-test", base_url=f"{openai_server.url}/v1", max_retries=0)

    return make


def dump(obj) -> dict:
    return obj.model_dump(exclude_unset=False)


def test_a_completion_is_returned_unchanged_and_recorded(ingest, make_client, openai_server, sync_clients):
    openai_server.first_delay = 0.1
    lookout = make_client()
    client = wrap_openai(sync_clients(), lookout)

    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    plain = sync_clients().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert dump(reply) == dump(plain)
    assert lookout.flush(5)
    (event,) = ingest.events
    assert event["event_id"] == last_event_id()
    assert event["provider"] == "openai"
    assert event["model"] == "gpt-4o-mini"
    assert event["model_version"] == "gpt-test-2024-01-01"
    assert event["input"] == MESSAGES
    assert event["output"] == TEXT
    assert (event["tokens_in"], event["tokens_out"]) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert 100 <= event["latency_ms"] < 2000
    assert "ttft_ms" not in event  # not observable without streaming
    assert event["status"] == "ok"


def test_a_stream_passes_every_chunk_through_and_measures_ttft_and_tokens(
    ingest, make_client, openai_server, sync_clients
):
    openai_server.first_delay = 0.15
    openai_server.chunk_delay = 0.03
    lookout = make_client()
    client = wrap_openai(sync_clients(), lookout)
    kwargs = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}

    chunks = list(client.chat.completions.create(**kwargs))
    plain = list(sync_clients().chat.completions.create(**kwargs))

    assert [dump(c) for c in chunks] == [dump(c) for c in plain]
    assert chunks[-1].usage is not None  # the caller asked for usage, the caller gets it
    assert lookout.flush(5)
    (event,) = ingest.events
    assert event["output"] == TEXT
    assert (event["tokens_in"], event["tokens_out"]) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert 150 <= event["ttft_ms"] < 400
    assert event["latency_ms"] >= 150 + 5 * 30
    assert event["ttft_ms"] < event["latency_ms"]
    assert event["model_version"] == "gpt-test-2024-01-01"


def test_without_usage_in_the_stream_tokens_are_left_out(ingest, make_client, sync_clients):
    lookout = make_client()
    client = wrap_openai(sync_clients(), lookout)
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    )
    assert text == TEXT
    assert lookout.flush(5)
    (event,) = ingest.events
    assert event["output"] == TEXT
    assert "tokens_in" not in event and "tokens_out" not in event


def test_stream_usage_asks_for_usage_and_hides_the_extra_chunk(ingest, make_client, openai_server, sync_clients):
    lookout = make_client()
    client = wrap_openai(sync_clients(), lookout, stream_usage=True)
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    plain = list(sync_clients().chat.completions.create(model="m", messages=MESSAGES, stream=True))

    assert openai_server.requests[0]["stream_options"] == {"include_usage": True}
    assert len(chunks) == len(plain)
    assert all(c.choices for c in chunks)  # the usage-only chunk was ours, not the caller's
    assert lookout.flush(5)
    (event,) = ingest.events
    assert (event["tokens_in"], event["tokens_out"]) == (PROMPT_TOKENS, COMPLETION_TOKENS)


def test_an_api_error_is_recorded_and_re_raised(ingest, make_client, sync_clients):
    lookout = make_client()
    client = wrap_openai(sync_clients(), lookout)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing-model", messages=MESSAGES)
    assert lookout.flush(5)
    (event,) = ingest.events
    assert event["status"] == "error"
    assert event["error"].startswith("NotFoundError")
    assert event["model"] == "missing-model"
    assert event["input"] == MESSAGES


def test_a_stream_left_early_records_what_was_streamed(ingest, make_client, sync_clients):
    lookout = make_client()
    client = wrap_openai(sync_clients(), lookout)
    with client.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content == " from":
                break
    assert lookout.flush(5)
    (event,) = ingest.events
    assert event["output"] == "Hello from"
    assert event["status"] == "ok"


def test_logprobs_and_context_fields_are_recorded(ingest, make_client, sync_clients):
    lookout = make_client()
    client = wrap_openai(sync_clients(), lookout, tags=["wrapped"])
    with context(user_id="u-7", session_id="s-7"):
        client.chat.completions.create(model="m", messages=MESSAGES, logprobs=True)
    assert lookout.flush(5)
    (event,) = ingest.events
    assert event["logprobs"] == [-0.5 * i for i in range(COMPLETION_TOKENS)]
    assert (event["user_id"], event["session_id"], event["tags"]) == ("u-7", "s-7", ["wrapped"])


def test_wrapping_twice_records_each_call_once(ingest, make_client, sync_clients):
    lookout = make_client()
    client = wrap_openai(wrap_openai(sync_clients(), lookout), lookout)
    client.chat.completions.create(model="m", messages=MESSAGES)
    assert lookout.flush(5)
    assert len(ingest.events) == 1


async def test_async_completion_and_stream(ingest, make_client, openai_server, async_clients):
    openai_server.first_delay = 0.1
    openai_server.chunk_delay = 0.02
    lookout = make_client()
    client = wrap_openai(async_clients(), lookout)

    reply = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    plain_stream = await async_clients().chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    plain = [chunk async for chunk in plain_stream]

    assert reply.choices[0].message.content == TEXT
    assert [dump(c) for c in chunks] == [dump(c) for c in plain]
    assert lookout.flush(5)
    completion, streamed = ingest.events
    assert completion["output"] == TEXT and streamed["output"] == TEXT
    for event in (completion, streamed):
        assert (event["tokens_in"], event["tokens_out"]) == (PROMPT_TOKENS, COMPLETION_TOKENS)
        assert event["latency_ms"] >= 100
    assert "ttft_ms" not in completion
    assert 100 <= streamed["ttft_ms"] < streamed["latency_ms"]
    assert streamed["latency_ms"] >= 100 + 5 * 20


async def test_async_errors_are_recorded_and_re_raised(ingest, make_client, async_clients):
    lookout = make_client()
    client = wrap_openai(async_clients(), lookout)
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="missing-model", messages=MESSAGES)
    assert lookout.flush(5)
    assert ingest.events[0]["status"] == "error"


async def test_async_stream_as_a_context_manager(ingest, make_client, async_clients):
    lookout = make_client()
    client = wrap_openai(async_clients(), lookout, stream_usage=True)
    async with await client.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == TEXT
    assert lookout.flush(5)
    (event,) = ingest.events
    assert event["output"] == TEXT and event["tokens_out"] == COMPLETION_TOKENS
