"""A broker child dies with its parent, and a pidfile ends the process it names, only that
process: a recycled pid (same number, another start time) is never signalled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from lookout.broker.child import Pidfile, alive, dies_with_parent, proc_info, spawn


def wait_gone(pid: int, start: str, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid, start):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def sleeper(*extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", *extra], start_new_session=True)


def test_a_child_dies_with_its_parent_when_the_parent_is_killed(tmp_path):
    assert dies_with_parent()  # Linux: the kernel sends the child SIGTERM
    parent = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from lookout.broker.child import spawn\n"
        "child = spawn([sys.executable, '-c', 'import time; time.sleep(600)'], None)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    start = proc_info(pid).start
    assert alive(pid, start)
    parent.kill()
    parent.wait()
    assert wait_gone(pid, start), "the child outlived its parent"


def test_a_child_spawned_without_the_death_signal_outlives_its_parent(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from lookout.broker.child import spawn\n"
        "child = spawn([sys.executable, '-c', 'import time; time.sleep(600)'], None, die_with_parent=False)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    start = proc_info(pid).start
    parent.kill()
    parent.wait()
    try:
        time.sleep(1)
        assert alive(pid, start)  # the orphan a pidfile is there to find
    finally:
        os.kill(pid, signal.SIGKILL)


def test_the_pidfile_ends_the_stale_process_it_names(tmp_path):
    proc = sleeper()
    pidfile = Pidfile(tmp_path / "broker.pid")
    pidfile.write(proc.pid, "kafka")
    found = pidfile.end_stale(grace_s=10)
    assert found is not None and found.pid == proc.pid and found.kind == "kafka"
    assert proc.wait(10) == -signal.SIGTERM
    assert not pidfile.path.exists()


def test_a_stopped_stale_process_is_ended_too(tmp_path):
    proc = sleeper()
    os.kill(proc.pid, signal.SIGSTOP)  # a hung broker: a SIGTERM alone stays pending
    pidfile = Pidfile(tmp_path / "broker.pid")
    pidfile.write(proc.pid, "kafka")
    assert pidfile.end_stale(grace_s=10) is not None
    assert proc.wait(10) == -signal.SIGTERM


def test_a_stale_process_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                             "signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    pidfile = Pidfile(tmp_path / "broker.pid")
    pidfile.write(proc.pid, "tansu")
    assert pidfile.end_stale(grace_s=0.5) is not None
    assert proc.wait(10) == -signal.SIGKILL


def test_a_recycled_pid_is_never_signalled(tmp_path):
    other = sleeper()  # holds the pid the file names, but started at another time
    try:
        path = tmp_path / "broker.pid"
        path.write_text(json.dumps({"pid": other.pid, "start": "1", "kind": "kafka", "owner": 1}))
        assert Pidfile(path).end_stale(grace_s=1) is None
        assert other.poll() is None
        assert not path.exists()  # what it named is gone: the file goes too
    finally:
        other.kill()
        other.wait()


def test_an_unreadable_pidfile_is_ignored(tmp_path):
    path = tmp_path / "broker.pid"
    path.write_text("not json")
    assert Pidfile(path).end_stale() is None and not path.exists()
    assert Pidfile(tmp_path / "missing.pid").end_stale() is None


def test_remove_leaves_a_file_that_names_another_process(tmp_path):
    pidfile = Pidfile(tmp_path / "broker.pid")
    pidfile.write(os.getpid(), "kafka")
    pidfile.remove(os.getpid() + 1)
    assert pidfile.read().pid == os.getpid()
    pidfile.remove(os.getpid())
    assert pidfile.read() is None


def test_spawn_appends_the_child_output_to_its_log(tmp_path):
    log = tmp_path / "broker.log"
    log.write_text("earlier\n")
    proc = spawn([sys.executable, "-c", "print('hello')"], log)
    assert proc.wait(30) == 0
    assert log.read_text() == "earlier\nhello\n"
