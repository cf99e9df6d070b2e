"""deploy/kafka/kafka.sh: idempotent start, status, stop by PID (the session broker covers the rest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from tests.fixtures.kafka import Broker


def test_up_is_idempotent_status_reports_and_down_stops(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "kafka")
    broker.up()
    try:
        pid = (broker.dir / "kafka.pid").read_text().strip()
        broker.up()  # already running: same process, same address
        assert (broker.dir / "kafka.pid").read_text().strip() == pid
        assert broker._run("status") == broker.bootstrap
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            assert len(admin.describe_cluster()["brokers"]) == 1
        finally:
            admin.close()
    finally:
        broker.down()
    assert not (broker.dir / "kafka.pid").exists()
    with pytest.raises(RuntimeError, match="not running"):
        broker._run("status")


def test_a_taken_port_is_reported(tmp_path: Path, kafka_broker: Broker) -> None:
    other = Broker(tmp_path / "kafka")
    other.port = kafka_broker.port
    with pytest.raises(RuntimeError, match=f"port {kafka_broker.port} is taken"):
        other.up()
