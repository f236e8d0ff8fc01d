"""run_service, end to end: a real service process (lookout.testing.example_service) on a
real broker, its own chdb path, HTTP on a free port, and real signals. The boot path is
the same on either broker, so these run on Apache Kafka only."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from lookout.core import kafka, topics
from lookout.core.events import LlmCall
from lookout.testing.brokers import free_port
from lookout.testing.kafka_io import committed

GROUP = "lookout-example"


@pytest.fixture
def example(kafka_broker, settings_for, tmp_path):
    """Starts `python -m lookout.testing.example_service` with extra settings; yields a launcher."""
    settings = settings_for(kafka_broker, kafka_topic_partitions=2)
    procs: list[subprocess.Popen] = []

    def launch(*args: str, **extra: str) -> tuple[subprocess.Popen, str, Path]:
        port, record = free_port(), tmp_path / f"record-{len(procs)}"
        env = {**os.environ, **{f"LOOKOUT_{k.upper()}": str(v) for k, v in settings.model_dump().items()
                                if v is not None}}
        env.update({"LOOKOUT_HTTP_HOST": "127.0.0.1", "LOOKOUT_HTTP_PORT": str(port),
                    "LOOKOUT_CLICKHOUSE_DSN": f"chdb://{tmp_path / f'chdb-{len(procs)}'}",
                    "LOOKOUT_EXAMPLE_RECORD": str(record), "LOOKOUT_LOG_LEVEL": "INFO"})
        env.update({f"LOOKOUT_{k.upper()}": v for k, v in extra.items()})
        proc = subprocess.Popen([sys.executable, "-m", "lookout.testing.example_service", *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        return proc, f"http://127.0.0.1:{port}", record

    launch.settings = settings  # type: ignore[attr-defined]
    yield launch
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _wait(condition, what: str, proc: subprocess.Popen, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = condition()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        if proc.poll() is not None:
            tail = proc.stdout.read()[-3000:] if proc.stdout else ""
            raise AssertionError(f"{what}: the service exited with {proc.returncode}:\n{tail}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {what}")


def _lines(record: Path, kind: str) -> list[str]:
    if not record.exists():
        return []
    return [line.split(" ", 2)[2] if line.count(" ") >= 2 else "" for line in record.read_text().splitlines()
            if line.split(" ")[1:2] == [kind]]


async def _produce(settings, count: int) -> list[uuid.UUID]:
    await kafka.ensure_topics(settings, [topics.EVENTS, topics.DLQ])
    producer = await kafka.start_producer(settings)
    ids = [uuid.uuid4() for _ in range(count)]
    try:
        name = topics.resolve(settings.topic_prefix, topics.EVENTS)
        for event_id in ids:
            call = LlmCall(event_id=event_id, ts=datetime.now(UTC), app_id="app", model="m", prompt="p",
                           schema="llm_call/1")
            await producer.send_and_wait(name, call.to_bytes(), key=b"app/m")
    finally:
        await producer.stop()
    return ids


def test_sigterm_mid_batch_finishes_the_batch_commits_it_and_exits_0(example):
    ids = asyncio.run(_produce(example.settings, 40))
    proc, url, record = example(EXAMPLE_START_DELAY_S="2", EXAMPLE_HANDLE_DELAY_S="3")

    # While start() runs: alive, not ready, and its routes say so in the envelope.
    _wait(lambda: httpx.get(f"{url}/healthz").status_code == 200, "healthz while starting", proc)
    early = httpx.get(f"{url}/readyz")
    assert early.status_code == 503 and early.json()["problems"]["service"] == "starting example"
    gated = httpx.get(f"{url}/v1/example/calls/{ids[0]}")
    assert gated.status_code == 503 and gated.json()["error"]["message"] == "not serving yet: starting example"

    _wait(lambda: _lines(record, "batch"), "a batch in hand", proc)
    assert httpx.get(f"{url}/readyz").json() == {"ready": True, "problems": {}}
    proc.send_signal(signal.SIGTERM)  # mid-batch: the handler sleeps 3 s
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    assert "SIGTERM: stopping" in out

    handled = _lines(record, "handled")
    assert handled and set(handled) <= {str(i) for i in ids}
    assert _lines(record, "stopped") == [""]
    # The batch in hand finished and was committed: what is committed is exactly what was handled.
    offsets = asyncio.run(committed(example.settings, GROUP, topics.EVENTS))
    assert sum(o or 0 for o in offsets.values()) == len(handled)


def test_a_service_that_fails_to_start_is_stopped_and_exits_1(example):
    proc, _, record = example(EXAMPLE_FAIL_START="true")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out[-3000:]
    assert "example failed to start: RuntimeError: configured to fail" in out
    assert _lines(record, "stopped") == [""]  # stop() ran on the partial start


def test_an_address_in_use_exits_1_without_starting_the_service(example):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc, _, record = example(HTTP_PORT=str(taken.getsockname()[1]))
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out[-3000:]
    assert not record.exists()


def test_several_worker_processes_need_a_clickhouse_server_not_chdb(example):
    proc, _, record = example("--workers", "2")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out[-3000:]
    assert "2 worker processes need a ClickHouse server" in out and not record.exists()


def test_several_worker_processes_serve_one_port_and_all_stop_on_sigterm(example):
    # chdb serves one process, and no ClickHouse server runs here: these workers use none.
    proc, url, record = example("--workers", "2", CLICKHOUSE_DSN="http://127.0.0.1:1", EXAMPLE_CLICKHOUSE="false")
    _wait(lambda: httpx.get(f"{url}/readyz").status_code == 200, "ready", proc, timeout_s=90)
    assert httpx.get(f"{url}/v1/nowhere").json() == {"error": {"status": 404, "message": "Not Found"}}
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out[-3000:]
    stopped = [line.split(" ")[0] for line in record.read_text().splitlines() if line.endswith(" stopped")]
    assert len(set(stopped)) == len(stopped) == 2, out[-3000:]


def test_log_format_json_makes_every_line_of_a_service_one_json_object(example):
    import json

    proc, _, _ = example(EXAMPLE_FAIL_START="true", LOG_FORMAT="json")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out[-3000:]
    docs = [json.loads(line) for line in out.splitlines() if line.strip()]  # raises on a text line
    failed = [d for d in docs if "example failed to start" in d["message"]]
    assert failed and failed[0]["level"] == "ERROR" and "RuntimeError: configured to fail" in failed[0]["message"]
    assert {"ts", "level", "logger", "message"} <= set(docs[0])
