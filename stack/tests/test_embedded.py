"""`lookout up` as a user runs it: one process, Tansu child, chdb under the data dir,
every API on one port, a dev key written once, Ctrl-C shuts everything down."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time

import httpx

from lookout.testing.brokers import free_port
from lookout.testing.embedded import start_lookout_up as start
from lookout.testing.embedded import wait_ready
from tests.events import llm_call


def tansu_children(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,ppid,comm"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()[1:] if line.split()[1] == str(pid) and "tansu" in line]


def test_lookout_up_serves_ingest_and_reads_then_stops_cleanly_on_ctrl_c(tmp_path):
    port = free_port()
    proc = start(tmp_path, port, "--demo", "--speed", "10")
    try:
        wait_ready(proc, port)
        key_file = tmp_path / "dev-api-key"
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        key = key_file.read_text().strip()
        assert tansu_children(proc.pid)
        headers = {"Authorization": f"Bearer {key}"}
        event = llm_call("quickstart")
        r = httpx.post(f"http://127.0.0.1:{port}/v1/events", json={"events": [event]}, headers=headers)
        assert r.status_code == 200 and r.json()["accepted"] == 1
        deadline = time.monotonic() + 30
        while (r := httpx.get(f"http://127.0.0.1:{port}/v1/calls/{event['event_id']}", headers=headers)).status_code \
                != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.3)
        assert r.json()["app_id"] == "quickstart"
        # The demo traffic is flowing too.
        deadline = time.monotonic() + 30
        while not httpx.get(f"http://127.0.0.1:{port}/v1/calls", params={"app_id": "support-bot"},
                            headers=headers).json()["calls"]:
            assert time.monotonic() < deadline, "no demo traffic stored"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert not tansu_children(proc.pid)


def test_the_dev_key_is_created_once_and_only_its_hash_is_stored(tmp_path):
    port = free_port()
    proc = start(tmp_path, port)
    try:
        wait_ready(proc, port)
    finally:
        proc.send_signal(signal.SIGINT)
        first_out, _ = proc.communicate(timeout=60)
    key = (tmp_path / "dev-api-key").read_text().strip()
    assert key in first_out  # printed for the user
    proc = start(tmp_path, port)
    try:
        wait_ready(proc, port)
        r = httpx.get(f"http://127.0.0.1:{port}/v1/calls", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200  # the same key still works after a restart
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert (tmp_path / "dev-api-key").read_text().strip() == key
    # Nothing under the data dir holds the secret part of the key in clear.
    secret = key.rsplit("_", 1)[1].encode()
    for path in (tmp_path / "chdb").rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
