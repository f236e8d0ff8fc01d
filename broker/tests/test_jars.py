"""Where Apache Kafka's jars are found, and what happens when they are not there yet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lookout.broker import jars

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def user_cache(tmp_path, monkeypatch):
    """An installed `lookout` (no checkout around it) with its cache under tmp_path."""
    monkeypatch.setattr(jars, "repo_root", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("LOOKOUT_KAFKA_LIBS", raising=False)
    return tmp_path / "lookout" / "kafka"


def test_an_installed_lookout_caches_kafka_under_the_users_cache(user_cache):
    assert jars.cached_libs("4.1.1") == user_cache / "4.1.1" / "libs"


def test_a_checkout_caches_kafka_where_make_kafka_puts_it():
    assert jars.repo_root() == ROOT
    assert jars.cached_libs("4.1.1") == ROOT / ".cache" / "kafka" / "4.1.1" / "libs"


def test_a_download_cut_short_is_not_used(user_cache):
    libs = user_cache / jars.KAFKA_VERSION / "libs"
    libs.mkdir(parents=True)
    (libs / f"kafka_2.13-{jars.KAFKA_VERSION}.jar").write_bytes(b"")
    assert jars.find_libs() is None  # no .resolved marker: the copy may be partial
    (libs.parent / jars.MARKER).touch()
    assert jars.find_libs() == libs


def test_an_explicit_folder_without_kafka_is_an_error_not_a_miss(tmp_path):
    with pytest.raises(jars.ResolveError, match="no Apache Kafka jars"):
        jars.find_libs(tmp_path)


def test_without_maven_resolving_says_what_is_missing(user_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(jars.ResolveError, match=r"Maven \(mvn\) is not installed"):
        jars.ensure_libs(progress=lambda _: None)


def test_mavens_download_lines_become_progress_lines():
    line = ("[INFO] Downloaded from central: https://repo.maven.apache.org/maven2/org/apache/kafka/kafka-clients/"
            "4.1.1/kafka-clients-4.1.1.jar (17 MB at 5.2 MB/s)")
    found = jars._DOWNLOADED.search(line)
    assert found is not None and found.groups() == ("kafka-clients-4.1.1.jar", "17 MB")
    assert jars._DOWNLOADED.search("[INFO] Downloaded from central: https://x/y/kafka-4.1.1.pom (2 kB)") is None


def test_the_makefile_the_fetch_script_and_the_package_name_one_kafka():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^KAFKA_VERSION \?= (\S+)$", makefile, re.M).group(1) == jars.KAFKA_VERSION
    script = (ROOT / "scripts" / "fetch-kafka.sh").read_text()
    assert "broker/lookout/broker/kafka-pom.xml" in script
    pom = (ROOT / "broker" / "lookout" / "broker" / "kafka-pom.xml").read_text()
    assert f"<kafka.version>{jars.KAFKA_VERSION}</kafka.version>" in pom
