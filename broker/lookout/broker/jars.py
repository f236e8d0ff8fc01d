"""Apache Kafka's jars: where they are cached, and resolving them from Maven Central once.

Lookup order: an explicit directory (LOOKOUT_KAFKA_LIBS), then the cache. In a checkout of
the repository the cache is its `.cache/kafka/<version>/` (where `make kafka` and
scripts/fetch-kafka.sh put them); for an installed `lookout`, `$XDG_CACHE_HOME/lookout/kafka/
<version>/` (~/.cache by default). A cache counts only once its `.resolved` marker exists, so
a download cut short is never used; resolving writes into a temporary folder and renames it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

KAFKA_VERSION = "4.1.1"
MARKER = ".resolved"


class ResolveError(RuntimeError):
    """The jars are not cached and could not be resolved (the message says why)."""


def repo_root() -> Path | None:
    """The repository checkout this package runs from, if it does (an editable install)."""
    root = Path(__file__).resolve().parents[3]
    if (root / "Makefile").is_file() and (root / "broker" / "pyproject.toml").is_file():
        return root
    return None


def cache_root() -> Path:
    root = repo_root()
    if root is not None:
        return root / ".cache" / "kafka"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lookout" / "kafka"


def cached_libs(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / version / "libs"


def _has_jars(path: Path) -> bool:
    return path.is_dir() and any(path.glob("kafka_2.13-*.jar"))


def find_libs(explicit: str | Path | None = None, version: str = KAFKA_VERSION) -> Path | None:
    """The folder of Kafka's jars, or None when they are not there yet. An explicit folder
    (argument, else LOOKOUT_KAFKA_LIBS) that holds no Kafka jar is an error, not a miss."""
    chosen = explicit or os.environ.get("LOOKOUT_KAFKA_LIBS")
    if chosen:
        path = Path(chosen).expanduser()
        if not _has_jars(path):
            raise ResolveError(f"no Apache Kafka jars (kafka_2.13-*.jar) in {path} (LOOKOUT_KAFKA_LIBS)")
        return path
    libs = cached_libs(version)
    if (libs.parent / MARKER).exists() and _has_jars(libs):
        return libs
    return None


_DOWNLOADED = re.compile(r"Downloaded from \S+: \S+/([^/\s]+\.jar) \(([^)]*?)(?: at [^)]*)?\)")


def resolve(version: str = KAFKA_VERSION, progress: Callable[[str], None] = print) -> Path:
    """Fetch Kafka `version` and its runtime jars with Maven into the cache; returns the
    folder. `progress` gets a line per jar Maven downloads."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ResolveError("Apache Kafka's jars are not cached and Maven (mvn) is not installed to fetch them")
    dest = cached_libs(version)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=dest.parent))
    pom = resources.files("lookout.broker").joinpath("kafka-pom.xml")
    try:
        with resources.as_file(pom) as pom_path:
            proc = subprocess.Popen(
                [mvn, "-B", "-f", str(pom_path), f"-Dkafka.version={version}", "dependency:copy-dependencies",
                 f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
            )
            lines: list[str] = []
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                found = _DOWNLOADED.search(line)
                if found:
                    progress(f"  {found.group(1)} ({found.group(2)})")
            code = proc.wait()
        if code != 0 or not _has_jars(staging):
            errors = [ln.rstrip() for ln in lines if "[ERROR]" in ln][:8] or [ln.rstrip() for ln in lines[-8:]]
            raise ResolveError(f"mvn could not resolve Apache Kafka {version} (exit {code}):\n" + "\n".join(errors))
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(staging, dest)
        (dest.parent / MARKER).touch()
        return dest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_libs(explicit: str | Path | None = None, version: str = KAFKA_VERSION,
                progress: Callable[[str], None] = print) -> Path:
    """find_libs, resolving into the cache on a miss."""
    found = find_libs(explicit, version)
    if found is not None:
        return found
    progress(f"resolving Apache Kafka {version} from Maven Central into {cached_libs(version)} "
             "(once; about 45 MB)...")
    libs = resolve(version, progress)
    progress(f"Apache Kafka {version}: {sum(1 for _ in libs.glob('*.jar'))} jars in {libs}")
    return libs
