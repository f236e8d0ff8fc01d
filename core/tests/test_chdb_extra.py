"""chdb is an extra of lookout-core (server images leave its 550 MB out): a chdb:// DSN
without it is a clear configuration error that names the extra."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from lookout.core import clickhouse
from lookout.core.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]


def test_a_chdb_dsn_without_chdb_installed_names_the_extra_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "chdb", None)  # as where chdb is not installed
    with pytest.raises(clickhouse.ClickHouseConfigError, match=r"needs chdb: pip install 'lookout-core\[chdb\]'"):
        clickhouse.connect(CommonSettings(clickhouse_dsn=f"chdb://{tmp_path}"))


def _deps(path: str) -> list[str]:
    return tomllib.loads((ROOT / path / "pyproject.toml").read_text())["project"]["dependencies"]


def test_core_leaves_chdb_out_and_the_embedded_stack_and_the_fixtures_ask_for_it():
    assert not [d for d in _deps("core") if d.startswith("chdb")]
    extras = tomllib.loads((ROOT / "core/pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert [d for d in extras["chdb"] if d.startswith("chdb")]
    assert "lookout-core[chdb]" in _deps("stack") and "lookout-core[chdb]" in _deps("testing")
