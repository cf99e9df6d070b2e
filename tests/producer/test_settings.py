"""The one settings object: env vars, .env files, masking of secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from runstream.settings import Settings


def test_env_vars_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSTREAM_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("RUNSTREAM_CLICKHOUSE_URL", "http://ch:8123")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.kafka_bootstrap == "k1:9092,k2:9092"
    assert settings.clickhouse_url == "http://ch:8123"


def test_env_file_is_read_and_env_vars_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RUNSTREAM_TOPIC_PREFIX=lab.\nRUNSTREAM_WORKER_GROUP=from-file\n")
    monkeypatch.setenv("RUNSTREAM_WORKER_GROUP", "from-env")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.topic_prefix == "lab."
    assert settings.worker_group == "from-env"


def test_secrets_are_masked_but_passed_to_children(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSTREAM_CLICKHOUSE_PASSWORD", "hunter2")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.as_dict()["clickhouse_password"] == "**********"
    assert "hunter2" not in repr(settings)
    assert settings.as_env()["RUNSTREAM_CLICKHOUSE_PASSWORD"] == "hunter2"


def test_as_env_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings(_env_file=None, topic_prefix="x.", worker_batch_records=7, log_format="json")  # type: ignore[call-arg]
    for name, value in original.as_env().items():
        monkeypatch.setenv(name, value)
    assert Settings(_env_file=None) == original  # type: ignore[call-arg]


def test_invalid_values_are_refused_with_the_field_name() -> None:
    with pytest.raises(ValidationError, match="flush_interval_s"):
        Settings(_env_file=None, flush_interval_s=0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="clickhouse_database"):
        Settings(_env_file=None, clickhouse_database="drop table;")  # type: ignore[call-arg]


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    undocumented = [name for name in Settings.model_fields if f"`RUNSTREAM_{name.upper()}`" not in readme]
    assert undocumented == []
