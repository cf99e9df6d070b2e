"""A seeded embedded ClickHouse per test module, and a session that records access statements.

chDB holds one database path per process while a client is open, so tests open a client, use it,
and close it; the seeded directory itself is shared by the module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from runstream_core.clickhouse import connect
from runstream_worker.migrate import migrate
from tests.fixtures.seed import SeedFacts, seed
from tests.fixtures.settings import StackSettings as Settings

# Midnight UTC: hardware samples fill whole minutes, so per-minute rollups have exact counts.
SEED_NOW_MS = 1_767_225_600_000


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, SeedFacts]:
    path = tmp_path_factory.mktemp("teams") / "clickhouse"
    settings = Settings(clickhouse_url=f"chdb://{path}", _env_file=None)  # type: ignore[call-arg]
    return settings, seed(settings, now_ms=SEED_NOW_MS)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """An empty runstream schema: enough for discovering the tables with a team column."""
    path = tmp_path_factory.mktemp("teams-schema") / "clickhouse"
    settings = Settings(clickhouse_url=f"chdb://{path}", _env_file=None)  # type: ignore[call-arg]
    migrate(settings)
    return settings


@pytest.fixture
def client(seeded: tuple[Settings, SeedFacts]) -> Iterator[Client]:
    ch = connect(seeded[0])
    try:
        yield ch
    finally:
        ch.close()


class RecordingSession:
    """Reads go to the real engine; statements are recorded, since chDB refuses access management.

    chDB cannot list users either (its user lacks SHOW USERS): ``users`` stands for the server's
    ``system.users``.
    """

    def __init__(self, client: Client, users: Sequence[str] = ("default",)) -> None:
        self.client = client
        self.users = list(users)
        self.executed: list[str] = []

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Sequence[Sequence[Any]]:
        if "system.users" in sql:
            return [(user,) for user in sorted(self.users)]
        return self.client.query(sql, parameters=dict(parameters or {})).result_rows

    def execute(self, sql: str) -> None:
        self.executed.append(sql)


def write_dashboards(root: Path) -> Path:
    """Two team dashboards and one admin dashboard as generated JSON would look."""
    for folder, uid, title in (
        ("team", "runstream-runs", "Runs"),
        ("team", "runstream-hardware", "Hardware"),
        ("admin", "runstream-pipeline", "Pipeline health"),
    ):
        (root / folder).mkdir(parents=True, exist_ok=True)
        model = {
            "uid": uid,
            "title": title,
            "id": None,
            "version": 3,
            "schemaVersion": 41,
            "panels": [{"type": "table", "datasource": {"uid": "runstream-clickhouse"}}],
        }
        (root / folder / f"{uid}.json").write_text(json.dumps(model))
    return root
