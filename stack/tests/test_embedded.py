"""`lookout up` as a user runs it: one process, a broker child (Apache Kafka where Java is
installed, else Tansu, and it says so), chdb under the data dir, every API on one port, a
dev key written once, Ctrl-C shuts everything down."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import httpx

from lookout.core.auth import parse_key
from lookout.testing.brokers import free_port
from lookout.testing.embedded import broker_of, wait_ready
from lookout.testing.embedded import start_lookout_up as start
from tests.events import llm_call


def parent_of(pid: int) -> int:
    return int(subprocess.run(["ps", "-o", "ppid=", "-p", str(pid)], capture_output=True, text=True).stdout)


def test_lookout_up_serves_ingest_and_reads_then_stops_cleanly_on_ctrl_c(tmp_path):
    port = free_port()
    proc = start(tmp_path, port, "--demo", "--speed", "10")
    try:
        wait_ready(proc, port)
        key_file = tmp_path / "dev-api-key"
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        key = key_file.read_text().strip()
        broker = broker_of(tmp_path)
        assert broker is not None and broker.alive() and parent_of(broker.pid) == proc.pid
        assert broker.kind == "kafka"  # Java is installed here
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
    assert not broker.alive() and broker_of(tmp_path) is None  # stopped with the stack, pidfile gone
    assert "broker: Apache Kafka" in out and "(durable" in out


def lookout(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lookout.cli", *argv], capture_output=True, text=True, timeout=120)


def test_the_dev_key_is_made_once_stored_as_a_hash_and_once_revoked_stays_revoked(tmp_path):
    """Three starts on one data dir: the first writes the key, the second uses the same one,
    the third (after `lookout keys revoke`) mints no new one and says how to get one. On Tansu:
    the key lives in chdb whatever the broker, and three JVM starts cost a minute of CPU."""
    port = free_port()
    tansu = {"LOOKOUT_EMBEDDED_BROKER": "tansu"}
    proc = start(tmp_path, port, env=tansu)
    try:
        wait_ready(proc, port, timeout=240)
        base = f"http://127.0.0.1:{port}"
        # The one body limit holds on the embedded app too, before auth: ingest's own, 1 MiB elsewhere.
        assert httpx.post(f"{base}/v1/feedback", content=b"{" * ((1 << 20) + 1)).status_code == 413
        assert httpx.post(f"{base}/v1/events", content=b"{" * ((1 << 20) + 1)).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        first_out, _ = proc.communicate(timeout=60)
    key_file = tmp_path / "dev-api-key"
    key = key_file.read_text().strip()
    assert key in first_out  # printed for the user
    proc = start(tmp_path, port, env=tansu)
    try:
        wait_ready(proc, port, timeout=240)
        r = httpx.get(f"http://127.0.0.1:{port}/v1/calls", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200  # the same key still works after a restart
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert key_file.read_text().strip() == key
    # Nothing under the data dir holds the secret part of the key in clear.
    parsed = parse_key(key)  # the id and the secret may themselves hold "_": never split the key on it
    assert parsed is not None, key
    key_id, secret = parsed
    for path in (tmp_path / "chdb").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path

    assert lookout("keys", "--data-dir", str(tmp_path), "revoke", key_id).returncode == 0
    proc = start(tmp_path, port, env=tansu)
    try:
        wait_ready(proc, port, timeout=240)
        r = httpx.get(f"http://127.0.0.1:{port}/v1/calls", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 401  # still revoked after the restart
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert f"development key {key_id}" in out and "was revoked" in out
    assert f"delete {key_file}" in out and "lookout keys create" in out
    assert key_file.read_text().strip() == key  # no new key written...
    listed = lookout("keys", "--data-dir", str(tmp_path), "list").stdout.strip().splitlines()
    assert len(listed) == 1 and "revoked" in listed[0]  # ...nor stored


def without_java(tmp_path) -> dict[str, str | None]:
    """The environment of a machine with no Java: an empty PATH (the stack needs no program
    from it: Python runs by its full path, Tansu from its wheel) and no JAVA_HOME."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    return {"PATH": str(empty), "JAVA_HOME": None, "LOOKOUT_EMBEDDED_BROKER": None}


def test_without_java_the_stack_runs_tansu_and_says_plainly_that_events_live_in_memory(tmp_path):
    port = free_port()
    proc = start(tmp_path / "data", port, env=without_java(tmp_path))
    try:
        wait_ready(proc, port)
        body = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        broker = body["details"]["broker"]
        assert broker["kind"] == "tansu" and broker["durable"] is False
        assert "in memory" in broker["warning"] and "lost when Lookout stops or crashes" in broker["warning"]
        assert "no Java runtime found" in broker["warning"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    banner = out[out.index("Lookout (embedded)"):]
    assert "broker: Tansu" in banner and "WARNING: Tansu keeps topics in memory" in banner
    assert "Apache Kafka not used: no Java runtime found" in banner


def test_asking_for_kafka_where_there_is_no_java_fails_at_start_and_says_why(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env.update(PATH=str(tmp_path), LOOKOUT_EMBEDDED_BROKER="kafka")
    out = subprocess.run([sys.executable, "-m", "lookout.stack.cli", "up", "--data-dir", str(tmp_path / "data"),
                          "--port", str(free_port())], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1
    assert "LOOKOUT_EMBEDDED_BROKER=kafka, but no Java runtime found" in out.stderr
    assert "Traceback" not in out.stderr
    assert broker_of(tmp_path / "data") is None  # nothing left running


def test_a_second_lookout_up_on_a_data_dir_in_use_is_refused_and_touches_nothing(tmp_path):
    # The first holder: a process holding the data dir's lock as a running `lookout up` does.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from lookout.stack.lock import lock_data_dir; lock_data_dir(Path(sys.argv[1])); "
                               "print('locked', flush=True); time.sleep(600)", str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        out = subprocess.run([sys.executable, "-m", "lookout.stack.cli", "up", "--data-dir", str(tmp_path),
                              "--port", str(free_port()), "--broker", "tansu"], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 1
        assert f"another `lookout up` (pid {holder.pid}) runs on {tmp_path}" in out.stderr
        assert holder.poll() is None and broker_of(tmp_path) is None and not (tmp_path / "chdb").exists()
    finally:
        holder.kill()
        holder.wait()
