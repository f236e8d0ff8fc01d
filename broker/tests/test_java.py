"""Finding a Java runtime for Apache Kafka: 17 or newer, from JAVA_HOME or PATH."""

from __future__ import annotations

import stat

from lookout.broker.java import find_java, major_of


def fake_jdk(root, version: str):
    (root / "bin").mkdir(parents=True)
    java = root / "bin" / "java"
    java.write_text("#!/bin/sh\nexit 1\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    (root / "release").write_text(f'IMPLEMENTOR="Test"\nJAVA_VERSION="{version}"\n')
    return java


def test_major_versions_read_as_java_names_them():
    assert major_of("17.0.15") == 17
    assert major_of("21") == 21
    assert major_of("1.8.0_392") == 8
    assert major_of("11.0.2+9") == 11


def test_a_jdk_17_on_java_home_is_found_from_its_release_file(tmp_path, monkeypatch):
    java = fake_jdk(tmp_path / "jdk", "17.0.15")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    found, why = find_java()
    assert why == "" and found is not None and found.path == java.resolve() and found.major == 17


def test_a_too_old_java_is_named_with_what_kafka_needs(tmp_path, monkeypatch):
    fake_jdk(tmp_path / "jdk", "11.0.2")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    found, why = find_java()
    assert found is not None and found.major == 11
    assert "Java 11.0.2 found" in why and "Apache Kafka needs Java 17+" in why


def test_no_java_at_all_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_java() == (None, "no Java runtime found (java is not on PATH and JAVA_HOME is not set)")
