"""Every widely used instrumentation of the official openai client, unchanged, exporting
OTLP/HTTP to a real ingest + sink (Apache Kafka, chdb): each library runs in its own
virtual environment (built from PyPI under .cache/otlp-venvs/, kept between runs), calls a
local OpenAI-compatible server (tests/otlp_clients/fake_openai.py), and its calls must be
stored complete: model, provider, input and output text, tokens (and cache and reasoning
tokens where the library reports them), cost from the price table with cached tokens
priced apart. Agents with a tool and a retriever (OpenInference's tracer, OpenTelemetry's
GenAI util) are stored as one trace with their steps.

The apps run at once, in a module fixture; each test then reads what its run stored.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import time
import uuid
from datetime import timedelta

import pytest

from lookout.core.pricing import PriceTable
from lookout.core.settings import CommonSettings
from tests.otlp_clients import venvs
from tests.otlp_clients.fake_openai import CACHED_TOKENS, REASONING_TOKENS, FakeOpenAI

# The first test builds the environments when they are not cached (minutes), then runs the apps.
pytestmark = pytest.mark.timeout(1800)

CLIENT_APP = venvs.HERE / "client_app.py"
QUESTION = "What is the weather in Paris?"
SYSTEM = "You answer briefly."
ANSWER = f"Answer: {QUESTION}"
PROMPT_TOKENS, ANSWER_TOKENS = 14, 9  # what the fake server counts for the chat call

# What each library reports beyond model, provider, messages and token counts.
CACHE_READ = {"openinference", "openllmetry", "openllmetry_latest", "openlit"}
# OpenLLMetry reports reasoning tokens for plain calls only.
REASONING = {("openinference", "chat"), ("openinference", "stream"), ("openllmetry", "chat"),
             ("openllmetry_latest", "chat")}
SESSIONS = {"openinference"}  # sets session.id / user.id on the call spans itself
AGENTS = ("otel_genai", "openinference")  # libraries with agent, tool and retriever spans
EMBEDDINGS = ("otel_genai", "openinference")
RUNS = ([(lib, scenario) for lib in venvs.LIBRARIES for scenario in ("chat", "stream")]
        + [(lib, "agent") for lib in AGENTS] + [(lib, "embed") for lib in EMBEDDINGS])


def app_of(library: str, scenario: str) -> str:
    return f"{library.replace('_', '-')}-{scenario}"


@pytest.fixture(scope="module")
def pythons() -> dict[str, str]:
    """The python of each library's environment, built in parallel where not cached."""
    try:
        with concurrent.futures.ThreadPoolExecutor(len(venvs.LIBRARIES)) as pool:
            built = dict(zip(venvs.LIBRARIES, pool.map(venvs.ensure, venvs.LIBRARIES), strict=True))
    except venvs.Unreachable as exc:
        pytest.skip(str(exc))
    return {name: str(path) for name, path in built.items()}


@pytest.fixture(scope="module")
def stack(kafka_broker, chdb_path):
    from lookout.testing.stack import IngestStack, ingest_settings_for

    tag = uuid.uuid4().hex[:10]
    common = CommonSettings(kafka_bootstrap=kafka_broker.bootstrap, kafka_idempotence="on",
                            topic_prefix=f"t{tag}.", kafka_topic_partitions=3, kafka_session_timeout_ms=10_000,
                            clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database=f"t_{tag}")
    stack = IngestStack(ingest_settings_for(common)).start()
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def fake_openai():
    server = FakeOpenAI().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def runs(pythons, stack, fake_openai) -> dict[tuple[str, str], dict]:
    """Every (library, scenario) run once, a few at a time; each prints its trace id."""

    def run(item: tuple[str, str]) -> dict:
        library, scenario = item
        config = {"library": library, "scenario": scenario, "openai_url": fake_openai.base_url,
                  "ingest_url": stack.url, "api_key": stack.api_key, "app": app_of(library, scenario),
                  "question": QUESTION, "conversation": f"conv-{library}-{scenario}", "user": "user-7"}
        done = subprocess.run([pythons[library], str(CLIENT_APP), json.dumps(config)], capture_output=True,
                              text=True, timeout=240)
        assert done.returncode == 0, f"{library} {scenario} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
        return json.loads(done.stdout.strip().splitlines()[-1])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return dict(zip(RUNS, pool.map(run, RUNS), strict=True))


def stored_calls(stack, app: str, trace_id: str, n: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    with stack.http() as http:
        while True:
            calls = http.get("/v1/calls", params={"app_id": app, "trace_id": trace_id}).json()["calls"]
            if len(calls) >= n or time.monotonic() > deadline:
                return sorted(calls, key=lambda c: c["ts"])
            time.sleep(0.3)


def stored_trace(stack, trace_id: str, n: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    with stack.http() as http:
        while True:
            reply = http.get(f"/v1/traces/{trace_id}")
            if (reply.status_code == 200 and len(reply.json()["spans"]) >= n) or time.monotonic() > deadline:
                assert reply.status_code == 200, reply.text
                return reply.json()
            time.sleep(0.3)


@pytest.mark.parametrize("scenario", ["chat", "stream"])
@pytest.mark.parametrize("library", venvs.LIBRARIES)
def test_a_chat_call_from_the_real_instrumentation_is_stored_complete(library, scenario, runs, stack):
    trace_id = runs[(library, scenario)]["trace_id"]
    (call,) = stored_calls(stack, app_of(library, scenario), trace_id, 1)

    assert (call["model"], call["provider"], call["environment"]) == ("gpt-4o-mini", "openai", "staging")
    assert [(m["role"], m["content"]) for m in call["input"]] == [("system", SYSTEM), ("user", QUESTION)]
    assert call["output"] == ANSWER
    assert (call["tokens_in"], call["tokens_out"]) == (PROMPT_TOKENS, ANSWER_TOKENS)
    assert call["trace_id"] == trace_id and call["status"] == "ok"
    assert call["latency_ms"] > 0
    if library in CACHE_READ:
        assert call["tokens_cache_read"] == CACHED_TOKENS
    if (library, scenario) in REASONING:
        assert call["tokens_reasoning"] == REASONING_TOKENS
    if library in SESSIONS:
        assert call["session_id"].startswith("u_") and call["user_id"].startswith("u_")  # pseudonymised
    # Priced from the table, the cached prompt tokens at the cached-input price.
    cached = call["tokens_cache_read"] or 0
    expected = PriceTable.load().cost("openai", "gpt-4o-mini", PROMPT_TOKENS, ANSWER_TOKENS, cache_read=cached)
    assert call["cost_usd"] == pytest.approx(expected)
    assert call["cost_source"] == "price_table"
    assert call["metadata"]["otlp.scope"]  # which instrumentation sent it, for coverage


@pytest.mark.parametrize("library", AGENTS)
def test_an_agent_with_a_tool_call_and_a_retrieval_is_stored_as_one_trace_with_its_steps(library, runs, stack):
    trace_id = runs[(library, "agent")]["trace_id"]
    calls = stored_calls(stack, app_of(library, "agent"), trace_id, 2)
    assert len(calls) == 2  # the agent span is a step, not a third model call
    first, second = calls
    assert "get_weather" in first["output"] and "Paris" in first["output"]  # the tool call the model asked for
    assert second["output"] == "Answer: Sunny in Paris"

    tree = stored_trace(stack, trace_id, 5)
    kinds = sorted(s["kind"] for s in tree["spans"])
    assert kinds == ["agent", "llm", "llm", "retrieval", "tool"]
    agent = next(s for s in tree["spans"] if s["kind"] == "agent")
    tool = next(s for s in tree["spans"] if s["kind"] == "tool")
    retrieval = next(s for s in tree["spans"] if s["kind"] == "retrieval")
    llm_steps = [s for s in tree["spans"] if s["kind"] == "llm"]
    # One tree: the agent at the top (its parent, the app's own span, is not GenAI), the rest below it.
    assert agent["depth"] == 0 and agent["parent_span_id"]
    for step in [tool, retrieval, *llm_steps]:
        assert step["parent_span_id"] == agent["span_id"] and step["depth"] == 1
    assert sorted(agent["children"]) == sorted(s["span_id"] for s in [tool, retrieval, *llm_steps])
    assert {s["event_id"] for s in llm_steps} == {c["event_id"] for c in calls}
    assert tool["attributes"]["tool.name"] == "get_weather"
    assert "Paris" in tool["input"] and tool["output"] == "Sunny in Paris"
    assert retrieval["input"] == "Paris" and "mild springs" in retrieval["output"]
    assert all(s["duration_ms"] is not None and s["duration_ms"] >= 0 for s in tree["spans"])
    assert tree["spans"][0]["kind"] == "agent"  # depth-first: the agent first

    # The conversation id of the agent run names the session of the calls below it.
    session_ids = {c["session_id"] for c in calls}
    assert len(session_ids) == 1 and next(iter(session_ids)).startswith("u_")
    with stack.http() as http:
        session = http.get(f"/v1/sessions/conv-{library}-agent").json()
    assert [turn["event_id"] for turn in session["calls"]] == [c["event_id"] for c in calls]
    assert session["calls"][-1]["answer"] == "Answer: Sunny in Paris"


@pytest.mark.parametrize("library", EMBEDDINGS)
def test_an_embeddings_call_is_a_priced_trace_step_not_an_llm_call(library, runs, stack):
    trace_id = runs[(library, "embed")]["trace_id"]
    tree = stored_trace(stack, trace_id, 1)
    (step,) = tree["spans"]
    assert (step["kind"], step["model"]) == ("embedding", "text-embedding-3-small")
    assert step["tokens_in"] == 6
    assert step["cost_usd"] == pytest.approx(6 * 0.02 / 1e6)
    assert stored_calls(stack, app_of(library, "embed"), trace_id, 0, timeout=0) == []


def test_coverage_per_source_is_counted_on_metrics(runs, stack):
    with stack.http() as http:
        text = http.get("/metrics").text
    lines = [line for line in text.splitlines() if line.startswith("lookout_ingest_otlp_fields_total{")]
    # OpenInference filled the session of its calls; OpenLLMetry 0.52 left it empty.
    assert any('source="openinference.instrumentation.openai"' in line and 'field="session_id"' in line
               and 'outcome="mapped"' in line for line in lines)
    assert any('source="opentelemetry.instrumentation.openai.v1",version="0.52.6"' in line
               and 'field="session_id"' in line and 'outcome="empty"' in line for line in lines)
    dropped = [line for line in text.splitlines() if line.startswith("lookout_ingest_otlp_attributes_total{")
               and 'outcome="dropped"' in line]
    assert any('attribute="server.address"' in line for line in dropped)


def test_a_provider_swapping_the_model_behind_a_name_raises_a_model_identity_result(pythons, stack, fake_openai):
    """OpenInference-instrumented calls ask for gpt-4o; the provider answers with one model,
    then silently with another (another response model and fingerprint). The drift
    service's identity watch, reading what the sink stored, raises one result naming both."""
    import asyncio

    from lookout.core import kafka
    from lookout.drift.identity import IdentityWatch

    def call(conversation: str) -> None:
        config = {"library": "openinference", "scenario": "chat", "openai_url": fake_openai.base_url,
                  "ingest_url": stack.url, "api_key": stack.api_key, "app": "identity-app", "model": "gpt-4o",
                  "conversation": conversation}
        done = subprocess.run([pythons["openinference"], str(CLIENT_APP), json.dumps(config)], capture_output=True,
                              text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]

    fake_openai.swap["gpt-4o"] = "gpt-4o-2024-08-06"
    call("before")
    assert stack.wait_for_calls("identity-app", 1) == 1
    fake_openai.swap["gpt-4o"] = "gpt-4o-2024-11-20"
    fake_openai.fingerprints["gpt-4o-2024-11-20"] = "fp_new_weights"
    call("after")
    assert stack.wait_for_calls("identity-app", 2) == 2
    with stack.http() as http:
        calls = http.get("/v1/calls", params={"app_id": "identity-app"}).json()["calls"]
    assert {c["metadata"]["gen_ai.request.model"] for c in calls} == {"gpt-4o"}  # what was asked for, kept

    async def poll():
        producer = await kafka.start_producer(stack.settings)
        try:
            watch = IdentityWatch(stack.client, producer, stack.settings.topic_prefix, poll_s=60,
                                  lookback=timedelta(hours=1))
            first, again = await watch.poll(), await watch.poll()
            return first, again
        finally:
            await producer.stop()

    first, again = asyncio.run(poll())
    (result,) = first
    assert again == []  # produced once per change, not once per poll
    assert (result.app_id, result.model, result.signal) == ("identity-app", "gpt-4o", "model_identity")
    assert result.details["old"]["model"] == "gpt-4o-2024-08-06"
    assert (result.details["new"]["model"], result.details["new"]["fingerprint"]) == ("gpt-4o-2024-11-20",
                                                                                      "fp_new_weights")
    newest = max(calls, key=lambda c: c["ts"])
    assert [str(e) for e in result.examples] == [newest["event_id"]]
    assert stack.wait_for("SELECT count() FROM drift_results WHERE app_id = 'identity-app' "
                          "AND signal = 'model_identity' AND drifted", 1) == 1


def test_a_key_reads_only_its_own_apps_traces_and_sessions(runs, stack):
    mine, theirs = runs[("openinference", "agent")]["trace_id"], runs[("otel_genai", "agent")]["trace_id"]
    stored_trace(stack, mine, 5)
    stored_trace(stack, theirs, 5)
    _, read_key = stack.keys.create(app_of("openinference", "agent"), ["read"], name="one app")
    _, ingest_key = stack.keys.create("*", ["ingest"], name="no read")
    with stack.http(headers={"Authorization": f"Bearer {read_key}"}) as http:
        assert http.get(f"/v1/traces/{mine}").status_code == 200
        assert http.get(f"/v1/traces/{theirs}").status_code == 404  # another app's trace does not exist here
        assert http.get(f"/v1/traces/{theirs}", params={"app_id": "otel-genai-agent"}).status_code == 403
        assert http.get("/v1/sessions/conv-openinference-agent").status_code == 200
        assert http.get("/v1/sessions/conv-otel_genai-agent").status_code == 404
        bad = http.get("/v1/sessions/x", params={"cursor": "nope"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "cursor"
        assert http.get("/v1/traces/not-a-trace-id").status_code == 422
    with stack.http(headers={"Authorization": f"Bearer {ingest_key}"}) as http:
        assert http.get(f"/v1/traces/{mine}").status_code == 403
