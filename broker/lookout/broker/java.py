"""Finding a Java runtime that can run Apache Kafka 4 (17 or newer)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MIN_MAJOR = 17


@dataclass(frozen=True)
class Java:
    path: Path  # the java executable, symlinks resolved
    version: str  # e.g. 17.0.15

    @property
    def major(self) -> int:
        return major_of(self.version)


def major_of(version: str) -> int:
    """17 of 17.0.15; 8 of 1.8.0_392."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:2]] or [0]
    return parts[1] if parts[0] == 1 and len(parts) > 1 else parts[0]


def _version(java: Path) -> str | None:
    # The JDK's `release` file names the version without starting a JVM (a second or more
    # on a loaded laptop); `java -version` is the fallback.
    for home in (java.parent.parent, java.parent.parent.parent):
        release = home / "release"
        if release.is_file():
            found = re.search(r'^JAVA_VERSION="([^"]+)"', release.read_text(errors="replace"), re.M)
            if found:
                return found.group(1)
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    return found.group(1) if found else None


def find_java() -> tuple[Java | None, str]:
    """(the runtime, "") when one of MIN_MAJOR+ is found on $JAVA_HOME or $PATH, else
    (None or the too-old runtime, why it will not do) in words for the user."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(on_path))
    too_old: Java | None = None
    for candidate in candidates:
        if not candidate.is_file():
            continue
        path = candidate.resolve()
        version = _version(path)
        if version is None:
            continue
        java = Java(path, version)
        if java.major >= MIN_MAJOR:
            return java, ""
        too_old = too_old or java
    if too_old is not None:
        return too_old, f"Java {too_old.version} found at {too_old.path}; Apache Kafka needs Java {MIN_MAJOR}+"
    return None, "no Java runtime found (java is not on PATH and JAVA_HOME is not set)"
