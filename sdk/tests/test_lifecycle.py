"""Process lifecycle: interpreter exit, fork, and the disk spill across restarts."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from lookout_sdk._spill import SpillStore

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_events_still_queued_at_interpreter_exit_are_sent(ingest):
    result = run_python(
        f"""
        import lookout_sdk
        client = lookout_sdk.Lookout(
            endpoint={ingest.url!r}, api_key={ingest.api_key!r}, app_id="exit-app",
            flush_interval=60, batch_size=1000,  # nothing would go out before exit by itself
        )
        for i in range(300):
            client.log_call(model="m", metadata={{"i": str(i)}})
        """
    )
    assert result.returncode == 0, result.stderr
    assert sorted(int(e["metadata"]["i"]) for e in ingest.events) == list(range(300))


def test_exit_does_not_hang_when_ingest_is_down(ingest):
    ingest.stop()
    started = time.monotonic()
    result = run_python(
        f"""
        import lookout_sdk
        client = lookout_sdk.Lookout(endpoint={ingest.url!r}, api_key="k", app_id="a", shutdown_timeout=1)
        client.log_call(model="m")
        """
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    assert "giving up on 1 events" in result.stderr


@needs_fork
def test_a_forked_child_logs_and_flushes_on_its_own(ingest, make_client):
    client = make_client(flush_interval=60, batch_size=1000)
    client.log_call(model="m", metadata={"who": "parent-before"})
    assert client.flush(5)  # the parent's sender thread and a pooled connection exist now
    for _ in range(5):  # and these are queued in the parent when it forks
        client.log_call(model="m", metadata={"who": "parent-queued"})

    pid = os.fork()
    if pid == 0:  # the child: its own queue, sender thread and connection
        code = 1
        try:
            for _ in range(20):
                client.log_call(model="m", metadata={"who": "child"})
            stats = client.stats
            ok = stats.queued == 20 and client.flush(10) and client.stats.sent == 20
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    assert client.flush(5)
    who = [e["metadata"]["who"] for e in ingest.events]
    assert who.count("child") == 20
    assert who.count("parent-queued") == 5  # sent once, by the parent only
    assert who.count("parent-before") == 1
    ids = ingest.ids()
    assert len(set(ids)) == len(ids)  # the child does not repeat the parent's ids
    assert client.stats.sent == 6


def _log_from_child(client, n: int) -> None:
    for _ in range(n):
        client.log_call(model="m", metadata={"who": "mp-child"})
    # No flush: a multiprocessing child leaves through os._exit, past atexit.


@needs_fork
def test_a_multiprocessing_worker_delivers_without_an_explicit_flush(ingest, make_client):
    client = make_client(flush_interval=60, batch_size=1000)
    client.log_call(model="m", metadata={"who": "parent"})
    process = multiprocessing.get_context("fork").Process(target=_log_from_child, args=(client, 15))
    process.start()
    process.join(30)
    assert process.exitcode == 0
    assert client.flush(5)
    who = [e["metadata"]["who"] for e in ingest.events]
    assert who.count("mp-child") == 15
    assert who.count("parent") == 1


def test_events_spilled_while_ingest_is_down_survive_a_restart_of_the_app(ingest, make_client, tmp_path):
    spill = tmp_path / "spill"
    ingest.stop()
    result = run_python(
        f"""
        import lookout_sdk
        client = lookout_sdk.Lookout(
            endpoint={ingest.url!r}, api_key={ingest.api_key!r}, app_id="spill-app",
            spill_dir={str(spill)!r}, batch_size=100, max_retry_time=0.3, backoff_base=0.05,
        )
        for i in range(250):
            client.log_call(model="m", metadata={{"i": str(i)}})
        client.flush(10)
        print(client.stats.spilled, client.stats.failed)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["250", "0"]
    segments = sorted(p.name for p in spill.iterdir())
    assert len(segments) == 3 and all(n.startswith("events-") and n.endswith(".jsonl") for n in segments)
    lines = (spill / segments[0]).read_bytes().splitlines()
    assert json.loads(lines[0])["metadata"] == {"i": "0"}  # oldest first

    ingest.start()
    client = make_client(spill_dir=spill)  # the app restarts; it logs nothing new
    assert ingest.wait_for(lambda: len(ingest.events) == 250, timeout=10)
    assert sorted(int(e["metadata"]["i"]) for e in ingest.events) == list(range(250))
    assert ingest.wait_for(lambda: not list(spill.iterdir()), timeout=5)
    assert client.stats.sent == 250


def test_while_ingest_is_down_batches_go_to_disk_and_come_back_when_it_returns(ingest, make_client, tmp_path):
    client = make_client(spill_dir=tmp_path, batch_size=50, max_retry_time=0.2, backoff_max=0.3)
    client.log_call(model="m")
    assert client.flush(5)
    ingest.stop()

    ids = []
    for _ in range(10):
        ids += [client.log_call(model="m") for _ in range(50)]
        time.sleep(0.05)
    assert client.flush(10)  # handled: on disk
    assert client.stats.spilled == 500
    assert client.stats.queued == 0

    ingest.start()
    assert ingest.wait_for(lambda: set(ids) <= set(ingest.ids()), timeout=15)
    assert ingest.wait_for(lambda: not list(tmp_path.iterdir()), timeout=5)
    stats = client.stats
    assert (stats.sent, stats.failed, stats.dropped) == (501, 0, 0)


def test_the_spill_directory_never_grows_past_its_cap(ingest, make_client, tmp_path):
    ingest.stop()
    client = make_client(spill_dir=tmp_path, spill_max_bytes=20_000, batch_size=20, max_retry_time=0.1)
    for _ in range(400):
        client.log_call(model="m", output="x" * 100)
    assert client.flush(10)
    usage = sum(p.stat().st_size for p in tmp_path.iterdir())
    stats = client.stats
    assert usage <= 20_000
    assert stats.spilled > 0 and stats.failed > 0
    assert stats.spilled + stats.failed == 400


def test_a_segment_claimed_by_a_process_that_died_is_given_back(tmp_path):
    store = SpillStore(tmp_path, 1_000_000)
    assert store.write("events", [b'{"a":1}'])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (name,) = os.listdir(tmp_path)
    os.rename(tmp_path / name, tmp_path / f"{name}.{dead_pid}.claimed")

    reopened = SpillStore(tmp_path, 1_000_000)
    segment = reopened.claim()
    assert segment is not None and segment.lines == [b'{"a":1}'] and segment.kind == "events"


def test_two_processes_never_claim_the_same_segment(tmp_path):
    store = SpillStore(tmp_path, 10_000_000)
    for i in range(200):
        store.write("events", [json.dumps({"i": i}).encode()])
    claimed: list[list[bytes]] = []

    def worker() -> None:
        own = SpillStore(tmp_path, 10_000_000)
        while (segment := own.claim()) is not None:
            claimed.append(segment.lines)
            own.remove(segment)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(json.loads(lines[0])["i"] for lines in claimed) == list(range(200))


def test_with_a_spill_directory_an_outage_does_not_fill_the_queue(ingest, make_client, tmp_path):
    # A long retry budget, but the queue fills faster: the sender must go to disk early.
    client = make_client(spill_dir=tmp_path, max_queue_size=100, batch_size=20, max_retry_time=30)
    ingest.stop()
    ids = []
    for _ in range(20):
        ids += [client.log_call(model="m") for _ in range(20)]
        time.sleep(0.05)
    assert client.flush(10)
    assert client.stats.dropped == 0
    assert client.stats.spilled == 400
    ingest.start()
    assert ingest.wait_for(lambda: set(ids) <= set(ingest.ids()), timeout=15)


def test_spilled_data_is_kept_when_the_server_refuses_the_key(ingest, make_client, tmp_path):
    ingest.stop()
    first = make_client(spill_dir=tmp_path, max_retry_time=0.1)
    first.log_call(model="m")
    assert first.flush(5)
    first.close()
    assert len(list(tmp_path.iterdir())) == 1
    ingest.start()

    wrong_key = make_client(spill_dir=tmp_path, api_key="revoked")
    assert ingest.wait_for(lambda: len(ingest.requests) >= 1, timeout=5)
    assert ingest.requests[0].status == 401
    assert ingest.events == []

    def unclaimed() -> int:
        return len([p for p in tmp_path.iterdir() if p.name.endswith(".jsonl")])

    # Claimed (renamed) while it was sent; put back under its own name once refused, which
    # on a loaded machine can come a moment after the server answered.
    assert ingest.wait_for(lambda: unclaimed() == 1, timeout=10)  # still on disk
    wrong_key.close()
    assert unclaimed() == 1

    make_client(spill_dir=tmp_path)  # redeployed with the right key
    assert ingest.wait_for(lambda: len(ingest.events) == 1, timeout=5)
