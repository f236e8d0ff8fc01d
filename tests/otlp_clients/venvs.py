"""One virtual environment per instrumentation library, built from PyPI under
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
        subprocess.run([_python(), "-m", "venv", str(target)], check=True, capture_output=True)
        log = target / "pip.log"
        with open(log, "w") as out:
            result = subprocess.run(
                [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                 "-r", str(REQUIREMENTS / f"{library}.txt")],
                stdout=out, stderr=subprocess.STDOUT, timeout=1800,
            )
        if result.returncode != 0:
            raise RuntimeError(f"pip could not build the {library} environment; see {log}:\n"
                               + log.read_text()[-3000:])
        done.write_text("ok\n")
    return python


if __name__ == "__main__":  # build them all ahead: python tests/otlp_clients/venvs.py
    for name in sys.argv[1:] or LIBRARIES:
        print(name, ensure(name))
