"""Each service image gets only what it needs: every services/*/Dockerfile's `pip wheel`
line (the local distributions it builds, and the PyTorch index it takes torch from) is
resolved for real against the package index, for the image's platform (`uv pip compile`,
which reads the index's metadata and downloads nothing large), and the resolved list is
checked: no server image carries chdb (a 550 MB engine only the embedded store uses), and
only drift and judge carry torch (and CUDA's nvidia-*, cuda-* and triton wheels nowhere but
there). All seven images resolve in parallel in seconds (pip's dry run took 4 min 15 s for
drift's and judge's trees alone, so those two used to be left out by default). The test
skips with the reason when the index is unreachable, and is marked `slow`:
`pytest -m "not slow"` leaves it out.

Where the PyTorch CPU index a Dockerfile names cannot be reached either, drift and judge
resolve torch from PyPI, whose Linux wheel is the CUDA build: nvidia-* is then expected
there, and only the other services' absence of it is checked.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted(ROOT.glob("services/*/Dockerfile"))
TORCH_SERVICES = {"drift", "judge"}
INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")

# uv comes with requirements-dev.txt, next to the tests' python.
UV = str(Path(sys.executable).with_name("uv"))

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


def _distribution(path: str) -> str:
    return tomllib.loads((ROOT / path / "pyproject.toml").read_text())["project"]["name"].lower()


def resolve(dockerfile: Path, torch_index: str | None) -> dict[str, str]:
    """name -> version of everything the image would install, resolved for the image's platform
    (CPython 3.11 on x86-64 Linux) whatever this machine is."""
    paths, _ = build_args(dockerfile)
    assert paths, f"{dockerfile}: no `pip wheel ./...` line found"
    # pip's rule for an extra index: the best version from either, as `pip wheel` picks in the build.
    extra = ["--extra-index-url", torch_index, "--index-strategy", "unsafe-best-match"] if torch_index else []
    cmd = [UV, "pip", "compile", "-q", "--no-header", "--no-annotate", "--no-cache", "--python-version", "3.11",
           "--python-platform", "x86_64-manylinux_2_28", *extra, "-"]
    done = subprocess.run(cmd, input="\n".join(paths), capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "UV_NATIVE_TLS": "1"})
    assert done.returncode == 0, f"{dockerfile}: uv could not resolve:\n{done.stderr[-3000:]}"
    installed: dict[str, str] = {}
    for line in done.stdout.splitlines():
        if line.startswith("./"):
            installed[_distribution(line)] = "local"
        elif "==" in line:
            name, version = line.split("==", 1)
            installed[name.strip().lower()] = version.strip()
    return installed


@cache
def _torch_index_reachable(url: str) -> bool:
    return _reachable(url)


@pytest.fixture(scope="module")
def resolved() -> dict[str, tuple[dict[str, str], bool]]:
    """service -> (its resolved install list, whether torch came from its CPU index)."""
    if not _reachable(INDEX):
        pytest.skip(f"package index {INDEX} unreachable: the image dependency resolution needs its metadata")
    if not Path(UV).exists():
        pytest.skip(f"no uv at {UV} (requirements-dev.txt): it resolves the images")

    def one(dockerfile: Path):
        service = dockerfile.parent.name
        _, torch_index = build_args(dockerfile)
        cpu = bool(torch_index) and _torch_index_reachable(torch_index)
        return service, (resolve(dockerfile, torch_index if cpu else None), cpu)

    chosen = DOCKERFILES
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
