"""Running ``runstream import`` as a user does, and reading back what it stored."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from typing import Any

from clickhouse_connect.driver.client import Client

from tests.fixtures.settings import StackSettings as Settings


def import_cli(settings: Settings, *args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    """``runstream import ARGS`` in a process of its own, on ``settings``; asserts its exit status."""
    out = subprocess.run(
        [sys.executable, "-m", "runstream_cli.main", "import", *args],
        env={**os.environ, **settings.as_env(), "WANDB_SILENT": "true"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == status, f"{out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _plain(value: Any) -> Any:
    """NaN as text, so that rows compare equal (NaN != NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def rows(client: Client, sql: str, **parameters: Any) -> list[tuple[Any, ...]]:
    return [_plain(tuple(row)) for row in client.query(sql, parameters=parameters).result_rows]


def points(client: Client, team: str) -> list[tuple[Any, ...]]:
    """Every metric row of ``team``: run id, key, step, time (epoch ms), value; repeats would show."""
    return rows(
        client,
        "SELECT run_id, key, step, toUnixTimestamp64Milli(ts), value FROM metrics WHERE team = {t:String} "
        "ORDER BY run_id, key, step, ts",
        t=team,
    )


def runs(client: Client, team: str) -> list[tuple[Any, ...]]:
    """Each run of ``team``: project, run id, name, group, user, git commit, tags, status, start, end (epoch ms)."""
    return rows(
        client,
        "SELECT project, run_id, name, run_group, user, git_commit, tags, status, "
        "toUnixTimestamp64Milli(started_at), toUnixTimestamp64Milli(ended_at) "
        "FROM runs FINAL WHERE team = {t:String} ORDER BY project, run_id",
        t=team,
    )


def params(client: Client, team: str) -> list[tuple[Any, ...]]:
    return rows(
        client, "SELECT run_id, key, value FROM params FINAL WHERE team = {t:String} ORDER BY run_id, key", t=team
    )


def summary(client: Client, team: str) -> list[tuple[Any, ...]]:
    return rows(
        client,
        "SELECT run_id, key, value, text FROM summary FINAL WHERE team = {t:String} ORDER BY run_id, key",
        t=team,
    )


def run_table(client: Client, team: str) -> list[tuple[Any, ...]]:
    """What dashboards and ``runstream.query.runs`` read: one row per run, with its last values."""
    return rows(
        client,
        "SELECT run_id, status, params, last_values, last_steps FROM run_table WHERE team = {t:String} ORDER BY run_id",
        t=team,
    )
