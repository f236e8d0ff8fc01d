"""One virtual environment per instrumentation library, built from PyPI (by uv, else pip) under
.cache/otlp-venvs/ and kept between runs.

Each library pins OpenTelemetry its own way (OpenLIT's pins conflict with the others'), so
each gets an environment of its own with the official openai client, made from
requirements/<name>.txt. An environment is named by the hash of that file and of the
Python that made it, so changing a pin builds a new one; a finished build leaves a marker,
so a build cut short is made again. A file lock keeps two test processes from building the
same one at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements"
ROOT = HERE.parents[1]
CACHE = Path(os.environ.get("LOOKOUT_OTLP_VENVS") or ROOT / ".cache" / "otlp-venvs")
LIBRARIES = tuple(sorted(p.stem for p in REQUIREMENTS.glob("*.txt")))
_PYPI = "https://pypi.org/simple/openai/"


class Unreachable(RuntimeError):
    """PyPI cannot be reached, so an environment that is not cached cannot be built."""


def _python() -> str:
    # The interpreter that runs the tests, without its own virtual environment's packages.
    return getattr(sys, "_base_executable", None) or sys.executable


def path_for(library: str) -> Path:
    spec = (REQUIREMENTS / f"{library}.txt").read_bytes()
    digest = hashlib.sha256(spec + _python().encode() + sys.version.encode()).hexdigest()[:12]
    return CACHE / f"{library}-{digest}"


def _pypi_reachable() -> bool:
    index = os.environ.get("PIP_INDEX_URL") or os.environ.get("PIP_EXTRA_INDEX_URL")
    url = index.rstrip("/") + "/openai/" if index else _PYPI
    try:
        with urllib.request.urlopen(url, timeout=15) as reply:
            return reply.status < 500
    except (urllib.error.URLError, TimeoutError, OSError):
        return False


def _uv() -> str | None:
    """The uv next to the tests' python (requirements-dev.txt), else one on PATH."""
    beside = Path(sys.executable).with_name("uv")
    return str(beside) if beside.exists() else shutil.which("uv")


def _build_commands(target: Path, requirements: Path) -> list[list[str]]:
    # uv builds an environment in about a fifth of pip's time and a twentieth of its CPU (17 s
    # against 81 s for OpenLIT's, from an empty cache), CPU the suite's other workers need;
    # pip where uv is missing.
    python = str(target / "bin" / "python")
    uv = _uv()
    if uv:
        return [[uv, "venv", "-q", "--python", _python(), str(target)],
                [uv, "pip", "install", "-q", "--python", python, "-r", str(requirements)]]
    return [[_python(), "-m", "venv", str(target)],
            [python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(requirements)]]


def ensure(library: str) -> Path:
    """The python of `library`'s environment, built first if it is not cached."""
    target = path_for(library)
    python = target / "bin" / "python"
    done = target / ".complete"
    if done.exists():
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{library}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():  # another process built it while this one waited
            return python
        if not _pypi_reachable():
            raise Unreachable(f"PyPI is unreachable, and no cached environment for {library} under {CACHE}")
        shutil.rmtree(target, ignore_errors=True)
        log = target.parent / f"{target.name}.log"
        env = {**os.environ, "UV_NATIVE_TLS": "1"}  # the system's certificates, as pip uses
        with open(log, "w") as out:
            for command in _build_commands(target, REQUIREMENTS / f"{library}.txt"):
                result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=1800, env=env)
                if result.returncode != 0:
                    break
        if result.returncode != 0:
            raise RuntimeError(f"could not build the {library} environment; see {log}:\n"
                               + log.read_text()[-3000:])
        done.write_text("ok\n")
    return python


if __name__ == "__main__":  # build them all ahead: python tests/otlp_clients/venvs.py
    for name in sys.argv[1:] or LIBRARIES:
        print(name, ensure(name))
