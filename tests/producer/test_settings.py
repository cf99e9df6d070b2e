"""Settings per component: env vars, .env files, masking of secrets, each component's own fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from runstream.settings import Settings
from runstream_core import kafka
from runstream_core.settings import ClickHouseSettings, KafkaSettings, LoggingSettings
from runstream_grafana.settings import GrafanaSettings
from runstream_worker.settings import WorkerSettings

COMPONENTS = (Settings, WorkerSettings, GrafanaSettings)


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
    settings = WorkerSettings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.topic_prefix == "lab."
    assert settings.worker_group == "from-env"


def test_secrets_are_masked_but_passed_to_children(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSTREAM_CLICKHOUSE_PASSWORD", "hunter2")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.as_dict()["clickhouse_password"] == "**********"
    assert "hunter2" not in repr(settings)
    assert settings.as_env()["RUNSTREAM_CLICKHOUSE_PASSWORD"] == "hunter2"


def test_as_env_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    original = WorkerSettings(_env_file=None, topic_prefix="x.", worker_batch_records=7, log_format="json")  # type: ignore[call-arg]
    for name, value in original.as_env().items():
        monkeypatch.setenv(name, value)
    assert WorkerSettings(_env_file=None) == original  # type: ignore[call-arg]


def test_invalid_values_are_refused_with_the_field_name() -> None:
    with pytest.raises(ValidationError, match="flush_interval_s"):
        Settings(_env_file=None, flush_interval_s=0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="clickhouse_database"):
        Settings(_env_file=None, clickhouse_database="drop table;")  # type: ignore[call-arg]

    with pytest.raises(ValidationError, match="clickhouse_url"):
        WorkerSettings(_env_file=None, clickhouse_url="chdb://relative/path")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="clickhouse_url"):
        Settings(_env_file=None, clickhouse_url="ftp://ch")  # type: ignore[call-arg]


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    names = {name for component in COMPONENTS for name in component.model_fields}
    undocumented = sorted(name for name in names if f"`RUNSTREAM_{name.upper()}`" not in readme)
    assert undocumented == []


def test_each_component_reads_the_shared_groups_and_its_own_fields_only() -> None:
    shared = set(KafkaSettings.model_fields) | set(ClickHouseSettings.model_fields) | set(LoggingSettings.model_fields)
    sdk, worker, grafana = (set(c.model_fields) - shared for c in COMPONENTS)
    assert sdk and worker and grafana
    assert not (sdk & worker) and not (sdk & grafana) and not (worker & grafana)
    assert all(name.startswith(("worker_", "http_", "topic_", "clickhouse_raw")) for name in worker), worker
    assert all(name.startswith(("grafana_", "teams_")) for name in grafana), grafana
    assert "kafka_bootstrap" not in GrafanaSettings.model_fields  # Grafana tooling never talks to Kafka


def test_the_clickhouse_target_is_parsed_once() -> None:
    embedded = ClickHouseSettings(_env_file=None, clickhouse_url="chdb:///data/store")  # type: ignore[call-arg]
    assert (embedded.target.embedded, embedded.target.path) == (True, "/data/store")
    server = ClickHouseSettings(_env_file=None, clickhouse_url="https://ch.example:8443")  # type: ignore[call-arg]
    assert (server.target.embedded, server.target.path, server.target.url) == (False, None, "https://ch.example:8443")


def test_every_kafka_client_gets_the_clusters_tls_and_sasl_settings(tmp_path: Path) -> None:
    plain = KafkaSettings(_env_file=None, kafka_bootstrap="k1:9092, k2:9092")  # type: ignore[call-arg]
    assert kafka.client_options(plain) == {
        "bootstrap_servers": ["k1:9092", "k2:9092"],
        "security_protocol": "PLAINTEXT",
    }
    secured = KafkaSettings(  # type: ignore[call-arg]
        _env_file=None,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="runstream",
        kafka_sasl_password="s3cret",
        kafka_ssl_cafile=tmp_path / "ca.pem",
    )
    assert kafka.client_options(secured) == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "runstream",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": str(tmp_path / "ca.pem"),
        "ssl_certfile": None,
        "ssl_keyfile": None,
    }
    assert "s3cret" not in repr(secured) and secured.as_dict()["kafka_sasl_password"] == "**********"
    # The worker's Faust app gets the same cluster and security.
    faust_options = kafka.faust_broker(secured.model_copy(update={"kafka_ssl_cafile": None}))
    assert faust_options["broker"] == ["kafka://127.0.0.1:9092"]
    credentials = faust_options["broker_credentials"]
    assert (credentials.username, credentials.password, str(credentials.mechanism.value)) == (
        "runstream",
        "s3cret",
        "SCRAM-SHA-512",
    )
    assert credentials.ssl_context is not None  # SASL over TLS
    assert kafka.faust_broker(plain)["broker_credentials"] is None
