"""Where runstream's tables live on a ClickHouse cluster: one rule for the migrations, the runner and teams.

On a cluster (``RUNSTREAM_CLICKHOUSE_CLUSTER``, or ``runstream migrate --cluster NAME``) every table
of the migrations becomes two: ``<name>_local``, a Replicated*MergeTree on each shard, and
``<name>``, a Distributed table over it. Readers and writers keep using ``<name>``, so the worker,
the dashboards, ``runstream.query`` and the team row policies work unchanged. Materialized views
read and write the local tables of their shard; plain views read the Distributed tables.

Rows are placed by run: every table with a run is sharded on a hash of (team, project, run_id), so a
run's rows, and the rollups its views derive, all live on one shard. Merges and FINAL work per
shard, which is then complete for every run it holds. Tables without a run name their key below.
"""

from __future__ import annotations

import re
from typing import Final

from runstream_core.errors import UsageError

# A cluster name is an element name in the servers' <remote_servers>: XML allows letters, digits,
# '_', '-' and '.', never a leading digit. Dots are left out: they read as database.table in SQL.
CLUSTER_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$"
_CLUSTER_NAME = re.compile(CLUSTER_NAME_PATTERN)

LOCAL_SUFFIX: Final = "_local"

# ZooKeeper/Keeper path and replica name of every replicated table, from each server's <macros>;
# {database} and {table} are filled in by the server when the table is created.
REPLICA_PATH: Final = "/clickhouse/tables/{shard}/{database}/{table}"
REPLICA_NAME: Final = "{replica}"

RUN_COLUMNS: Final = ("team", "project", "run_id")
RUN_SHARDING_KEY: Final = "cityHash64(team, project, run_id)"

# Tables without (team, project, run_id): their sharding key, and why. A table created by a later
# migration with no run and no entry here fails `runstream migrate --cluster` and its test, loudly.
RUNLESS_SHARDING_KEYS: Final = {
    # Filled only by the views on metrics and hardware, so its rows land on the shard of the run that
    # wrote them (a producer belongs to one run); the key matters only for a direct insert.
    "ingested_records": "cityHash64(producer_id)",
    # Filled only by its view on hardware, on the run's shard: one (team, project, user, hour) may
    # have rows on several shards, which readers add up with sum() as they must before merges anyway.
    "gpu_hours": "cityHash64(team, project, user)",
    # Each worker's rows together, so a worker's series is read from one shard.
    "pipeline_health": "cityHash64(worker)",
    # A handful of rows, written and read through the Distributed table: any spread will do.
    "schema_migrations": "version",
    # The worker's alert state per run: its team column is run_team (so that no team's row policy
    # grants it); sharded by run like the run's own rows.
    "alert_state": "cityHash64(run_team, project, run_id)",
}


def check_cluster_name(name: str) -> str:
    """``name`` if it can name a cluster of ``<remote_servers>``, else :class:`UsageError` saying what can."""
    if not isinstance(name, str) or not _CLUSTER_NAME.fullmatch(name):
        raise UsageError(
            f"unsafe cluster name {name!r}: use the name of a cluster in the servers' <remote_servers>, "
            "made of letters, digits, '_' and '-', starting with a letter or '_' (at most 64 characters)"
        )
    return name


def local_table(table: str) -> str:
    """The name of ``table``'s local table on each shard."""
    return f"{table}{LOCAL_SUFFIX}"


def sharding_key(table: str, columns: tuple[str, ...] | list[str]) -> str | None:
    """The Distributed sharding key of ``table`` with ``columns``; None when no rule names one."""
    if all(column in columns for column in RUN_COLUMNS):
        return RUN_SHARDING_KEY
    return RUNLESS_SHARDING_KEYS.get(table)
