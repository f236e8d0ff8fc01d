"""Restarts neither lose nor double-count evidence; a job that crashes or hangs is failed."""

from __future__ import annotations

import json
import os
import stat
import time

JUDGE = """
    version: 1
    policies:
      - name: quality
        match: {{app: shop}}
        require_approval: {approval}
        rules:
          - {{name: thumbs, kind: thumbs_down_rate, window: 1h, min_samples: 10, fire_above: 0.3}}
          - {{name: rel, kind: judge, score: judge.relevance, window: 1h, min_samples: 5, fire_below: 0.5}}
"""


def _wait(cond, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def _samples(service) -> int:
    w = service.engine.windows.get(("shop", "m1"))
    return sum(1 for o in w.items if o.kind == "thumbs") if w else 0


def test_restart_mid_window_neither_loses_nor_double_counts(harness):
    h = harness
    settings = h.settings(JUDGE.format(approval="true"))
    first = h.start(settings)
    calls = h.calls(10)
    h.reviews(calls[:2])
    h.thumbs(calls[:9], [True] * 5 + [False] * 4)  # 9 votes: one short of min_samples
    _wait(lambda: _samples(first) == 9)
    h.stop(first)

    # Same group: offsets are committed, nothing replays; the window comes back from the store.
    second = h.start(settings)
    assert _samples(second) == 9
    h.stop(second)

    # A new group replays every record from the start on top of the restored window: still 9
    # (counted twice it would be 18 votes, 10 down, and would fire).
    third = h.start(settings.model_copy(update={"retrain_group": "lookout-retrain-replay"}))
    _wait(lambda: third.worker.stats.consumed >= 9)
    assert _samples(third) == 9 and h.statuses() == {}

    h.thumbs(calls[9:], [False], at=200)  # the tenth vote: 5 of 10 down
    runs = h.wait_status("requested")
    (run_id,) = runs
    evidence = json.loads(h.stack.client.query(
        "SELECT evidence FROM retrain_runs FINAL WHERE run_id = {r:UUID} AND status = 'requested'",
        parameters={"r": run_id}).result_rows[0][0])
    assert evidence["rules"][0]["samples"] == 10 and evidence["rules"][0]["statistic"] == 0.5

    # Restarted again after the firing: the cooldown and latch come back, no second run.
    h.stop(third)
    fourth = h.start(settings)
    h.thumbs(h.calls(5), [True] * 5, at=300)
    _wait(lambda: _samples(fourth) == 15)
    time.sleep(1)
    assert len(h.statuses()) == 1
    assert run_id in fourth.runs  # still waiting for approval after the restart


def _script(path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_a_job_that_crashes_is_marked_failed(harness):
    h = harness
    crash = _script(h.tmp / "crash.sh", "echo 'CUDA error: out of memory' >&2\nexit 3")
    h.start(h.settings(JUDGE.format(approval="false"), retrain_job_python=crash))
    calls = h.calls(5)
    h.reviews(calls)
    h.judge(calls, 0.1)
    runs = h.wait_status("failed")
    (seen,) = runs.values()
    assert seen == ["requested", "launched", "failed"]
    msg = h.stack.client.query("SELECT message FROM retrain_runs FINAL WHERE status = 'failed'").result_rows[0][0]
    assert "exited with status 3" in msg and "out of memory" in msg


def test_a_job_that_hangs_is_timed_out_and_killed(harness):
    h = harness
    pidfile = h.tmp / "pid"
    hang = _script(h.tmp / "hang.sh", f"echo $$ > {pidfile}\nexec sleep 600")
    service = h.start(h.settings(JUDGE.format(approval="false"), retrain_job_python=hang,
                                 retrain_run_timeout_s=2))
    calls = h.calls(5)
    h.reviews(calls)
    h.judge(calls, 0.1)
    runs = h.wait_status("timed_out", timeout=60)
    (seen,) = runs.values()
    assert seen == ["requested", "launched", "timed_out"]
    _wait(lambda: not service.launcher.procs)
    pid = int(pidfile.read_text())
    _wait(lambda: not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower())


def test_dry_run_records_the_firing_and_launches_nothing(harness):
    h = harness
    h.start(h.settings(JUDGE.format(approval="false").replace("require_approval: false",
                                                             "require_approval: false\n        dry_run: true")))
    calls = h.calls(5)
    h.judge(calls, 0.1)
    runs = h.wait_status("rejected")
    assert list(runs.values()) == [["requested", "rejected"]]
    assert not (h.tmp / "datasets").exists()
