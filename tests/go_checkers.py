"""The Go checkers under scripts/ (compose-go, helm + kubeconform), built once into
.cache/go/ (`make test` builds them before pytest, beside the package installs) and again
here when a source is newer than the binary."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def built(name: str, timeout_s: float = 900) -> Path:
    """scripts/<name> built (if stale) and its binary's path."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    binary = ROOT / ".cache" / "go" / name
    source = ROOT / "scripts" / name
    newest = max(p.stat().st_mtime for p in source.iterdir())
    if not binary.exists() or binary.stat().st_mtime < newest:
        binary.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([go, "build", "-o", str(binary), "."], cwd=source, check=True, timeout=timeout_s)
    return binary
