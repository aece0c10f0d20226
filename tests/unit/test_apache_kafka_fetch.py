"""Fetching Apache Kafka (punte.apache_kafka.fetch): the pinned version from the repo's pom,
Maven run once, and an interrupted fetch never taken for a complete one."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from punte import apache_kafka


def test_the_version_is_the_poms_pin():
    text = apache_kafka.POM.read_text()
    version = apache_kafka.kafka_version()
    assert f"<kafka.version>{version}</kafka.version>" in text and version.startswith("4.")
    assert apache_kafka.libs_dir().name == f"kafka-{version}"


def test_fetch_runs_maven_once_then_finds_the_jars(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(apache_kafka, "CACHE", tmp_path)
    monkeypatch.setattr(apache_kafka.shutil, "which", lambda name: f"/usr/bin/{name}")
    runs: list[list[str]] = []

    def maven(command: list[str], check: bool) -> None:
        runs.append(command)
        out = next(a for a in command if a.startswith("-DoutputDirectory=")).split("=", 1)[1]
        (Path(out) / "kafka_2.13.jar").write_text("jar")

    monkeypatch.setattr(apache_kafka.subprocess, "run", maven)
    first = apache_kafka.fetch()
    second = apache_kafka.fetch()
    assert first == second == tmp_path / f"kafka-{apache_kafka.kafka_version()}"
    assert (first / "kafka_2.13.jar").exists() and (first / apache_kafka.COMPLETE).exists()
    assert len(runs) == 1 and "dependency:copy-dependencies" in runs[0]
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no staging folder left


def test_an_interrupted_fetch_leaves_nothing_that_looks_fetched(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path):
    monkeypatch.setattr(apache_kafka, "CACHE", tmp_path)
    monkeypatch.setattr(apache_kafka.shutil, "which", lambda name: f"/usr/bin/{name}")

    def failing(command: list[str], check: bool) -> None:
        raise subprocess.CalledProcessError(1, command)

    monkeypatch.setattr(apache_kafka.subprocess, "run", failing)
    with pytest.raises(subprocess.CalledProcessError):
        apache_kafka.fetch()
    assert list(tmp_path.iterdir()) == []
    assert apache_kafka.available() is not None


def test_cluster_ids_never_look_like_an_option_to_the_storage_tool():
    # One in 64 URL-safe base64 ids starts with "-": the storage tool then read it as an
    # option and refused to format (seen once in the Kafka tests).
    ids = {apache_kafka._cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
