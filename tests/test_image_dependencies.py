"""Each service image gets only what it needs: every services/*/Dockerfile's `pip wheel`
line (the local distributions it builds, and the PyTorch index it takes torch from) is
resolved for real, `pip install --dry-run --ignore-installed --report`, against the
package index as the image build does, and the report's install list is checked: no server
image carries chdb (a 550 MB engine only the embedded store uses), and only drift and judge
carry torch (and CUDA's nvidia-*, cuda-* and triton wheels nowhere but there).

It needs the package index (metadata only: PEP 658, nothing large is downloaded) and skips
with the reason when the index is unreachable. The services resolve in parallel; ingest
alone takes about 20 s, but drift's and judge's trees (torch, transformers, evidently) take
minutes through a slow index (4 min 15 s on the development machine, two loaded cores), so
by default only the images that must stay light resolve (LOOKOUT_TEST_RESOLVE_TORCH_IMAGES=1
adds drift and judge); the test is marked `slow`: `pytest -m "not slow"` leaves it out.

Where the PyTorch CPU index a Dockerfile names cannot be reached either, drift and judge
resolve torch from PyPI, whose Linux wheel is the CUDA build: nvidia-* is then expected
there, and only the other services' absence of it is checked.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted(ROOT.glob("services/*/Dockerfile"))
TORCH_SERVICES = {"drift", "judge"}
INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")

# drift's and judge's trees (torch, transformers, evidently) take minutes to resolve through a
# slow index, so by default only the images that must stay light are resolved; set
# LOOKOUT_TEST_RESOLVE_TORCH_IMAGES=1 to resolve those two as well.
RESOLVE_TORCH = os.environ.get("LOOKOUT_TEST_RESOLVE_TORCH_IMAGES") == "1"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url.rstrip("/") + "/pip/", timeout=5).close()
        return True
    except Exception:
        return False


def build_args(dockerfile: Path) -> tuple[list[str], str | None]:
    """The local paths the Dockerfile's final `pip wheel` builds (./core ./services/x), and
    the torch index its TORCH_INDEX argument names (None when it takes no torch)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    paths: list[str] = []
    for line in text.splitlines():
        if line.strip().startswith("RUN pip wheel"):
            paths = [t for t in shlex.split(line) if t.startswith("./")] or paths
    torch = re.search(r"^ARG TORCH_INDEX=(\S+)", text, re.M)
    return paths, torch.group(1) if torch else None


def resolve(dockerfile: Path, report: Path, torch_index: str | None) -> dict[str, str]:
    """name -> version of everything the image would install."""
    paths, _ = build_args(dockerfile)
    assert paths, f"{dockerfile}: no `pip wheel ./...` line found"
    extra = ["--extra-index-url", torch_index] if torch_index else []
    # --no-build-isolation: our pyproject files only need setuptools, which the venv has.
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
           "--no-build-isolation", "--report", str(report), *extra, *[str(ROOT / p) for p in paths]]
    # The image builds with no local wheelhouse: this machine's PIP_FIND_LINKS stays out.
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, f"{dockerfile}: pip could not resolve:\n{done.stderr[-3000:]}"
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}


@cache
def _torch_index_reachable(url: str) -> bool:
    return _reachable(url)


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict[str, tuple[dict[str, str], bool]]:
    """service -> (its resolved install list, whether torch came from its CPU index)."""
    if not _reachable(INDEX):
        pytest.skip(f"package index {INDEX} unreachable: the image dependency resolution needs its metadata")
    folder = tmp_path_factory.mktemp("pip-reports")

    def one(dockerfile: Path):
        service = dockerfile.parent.name
        _, torch_index = build_args(dockerfile)
        cpu = bool(torch_index) and _torch_index_reachable(torch_index)
        return service, (resolve(dockerfile, folder / f"{service}.json", torch_index if cpu else None), cpu)

    chosen = [d for d in DOCKERFILES if RESOLVE_TORCH or d.parent.name not in TORCH_SERVICES]
    with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
        return dict(pool.map(one, chosen))


def test_every_service_has_a_dockerfile_this_check_reads():
    assert {d.parent.name for d in DOCKERFILES} >= {
        "ingest", "sink", "drift", "judge", "feedback", "retrain-trigger", "alerts"}
    for dockerfile in DOCKERFILES:
        paths, _ = build_args(dockerfile)
        assert "./core" in paths and f"./services/{dockerfile.parent.name}" in paths, dockerfile


@pytest.mark.parametrize("service", [d.parent.name for d in DOCKERFILES])
def test_a_service_image_installs_no_heavy_package_it_does_not_use(resolved, service):
    if service not in resolved:
        pytest.skip(f"{service} needs torch: its tree resolves only with LOOKOUT_TEST_RESOLVE_TORCH_IMAGES=1")
    installed, torch_from_cpu_index = resolved[service]
    assert f"lookout-{service}" in installed and "lookout-core" in installed
    assert "pydantic" in installed  # the check reads the report right: what every service uses is there
    assert "chdb" not in installed, f"{service}: chdb in a server image"
    nvidia = sorted(n for n in installed if n.startswith(("nvidia-", "cuda-")) or n == "triton")
    if service in TORCH_SERVICES:
        assert "torch" in installed  # the check reads the report right: a service that uses torch has it
        if torch_from_cpu_index:
            assert not nvidia, f"{service}: CUDA wheels with the CPU torch index: {nvidia}"
    else:
        assert "torch" not in installed, f"{service}: torch in an image that never imports it"
        assert not nvidia, f"{service}: {nvidia}"
