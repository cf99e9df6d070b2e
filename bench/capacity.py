"""Capacity arithmetic for a workload: Kafka partitions, workers and ClickHouse shards (docs/scaling.md).

Nothing is measured here: the figures come from the benchmarks (their last JSON lines) and the
plan's assumptions are flags, so the sizing is redone whenever a figure is measured again:

    python bench/storage.py > storage.out && python bench/capacity.py --storage "$(tail -1 storage.out)"

Defaults: the figures docs/scaling.md quotes, for 1,000 GPUs each logging 50 metrics at 10 steps/s.
Last line: one JSON object with the inputs and the sizing.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from rich.console import Console
from rich.table import Table

DAY_S = 86_400


@dataclass(frozen=True)
class Figures:
    """Measured figures (each with the benchmark that measures it)."""

    worker_points_per_core_s: float = 361_000
    """Points/s one worker process (one core) carries end to end: bench/ingest.py."""
    disk_bytes_per_point: float = 5.75
    """metrics table, merged parts, per point: bench/storage.py ``disk_bytes_per_point_merged``."""
    rollup_bytes_per_point: float = 1.81
    """Every rollup of a point (summary, buckets, run_latest, ingested_records): ``rollups_disk_bytes_per_point``."""
    wire_bytes_per_point: float = 8.58
    """Kafka record bytes per point, lz4 as the producer sends it: ``wire_lz4_bytes_per_point``."""
    clickhouse_insert_points_per_core_s: float = 248_000
    """Points/s one insert thread stores, views included: ``insert_points_per_s``."""

    @classmethod
    def from_storage(cls, line: str, base: Figures | None = None) -> Figures:
        """``base`` with the figures of bench/storage.py's JSON line."""
        figures = json.loads(line)
        return replace(
            base or cls(),
            disk_bytes_per_point=figures["disk_bytes_per_point_merged"],
            rollup_bytes_per_point=figures["rollups_disk_bytes_per_point"],
            wire_bytes_per_point=figures["wire_lz4_bytes_per_point"],
            clickhouse_insert_points_per_core_s=figures["insert_points_per_s"],
        )


@dataclass(frozen=True)
class Workload:
    gpus: int = 1_000
    metrics_per_gpu: int = 50
    steps_per_s: float = 10

    @property
    def points_per_s(self) -> float:
        return self.gpus * self.metrics_per_gpu * self.steps_per_s


@dataclass(frozen=True)
class Assumptions:
    """Planning choices, not measurements: change them to match the hardware and the policy."""

    utilization: float = 0.5
    """Share of capacity used at the steady rate: the rest drains a backlog as fast as it built up."""
    partition_bytes_s: float = 5e6
    """Bytes/s planned per Kafka partition (well under what one partition carries)."""
    partitions_per_worker: int = 4
    """Room to add workers later without repartitioning (a run's records stay in one partition)."""
    kafka_retention_h: float = 24
    """Hours of records Kafka keeps: how long ClickHouse may be away without losing anything."""
    kafka_replication: int = 3
    raw_days: int = 30
    """RUNSTREAM_CLICKHOUSE_RAW_TTL_DAYS."""
    rollup_days: int = 365
    """Horizon planned for the rollups, which no TTL drops."""
    clickhouse_replicas: int = 2
    disk_bytes_per_shard: float = 8e12
    """Usable disk per server, leaving room for merges (which rewrite parts)."""
    insert_cores_per_shard: int = 8
    """Cores per server given to inserts and their views; the rest serve queries and merges."""


def plan(workload: Workload, figures: Figures, assumptions: Assumptions) -> dict[str, Any]:
    """The sizing, with every intermediate figure, so the arithmetic can be followed."""
    a = assumptions
    points = workload.points_per_s
    workers = math.ceil(points / (figures.worker_points_per_core_s * a.utilization))
    kafka_bytes_s = points * figures.wire_bytes_per_point
    partitions = max(workers * a.partitions_per_worker, math.ceil(kafka_bytes_s / a.partition_bytes_s))
    kafka_disk = kafka_bytes_s * a.kafka_retention_h * 3600 * a.kafka_replication
    raw_disk = points * DAY_S * a.raw_days * figures.disk_bytes_per_point
    rollup_disk = points * DAY_S * a.rollup_days * figures.rollup_bytes_per_point
    insert_cores = math.ceil(points / (figures.clickhouse_insert_points_per_core_s * a.utilization))
    shards_for_disk = math.ceil((raw_disk + rollup_disk) / a.disk_bytes_per_shard)
    shards_for_inserts = math.ceil(insert_cores / a.insert_cores_per_shard)
    shards = max(shards_for_disk, shards_for_inserts)
    return {
        "points_per_s": points,
        "worker_processes": workers,
        "kafka_bytes_per_s": kafka_bytes_s,
        "kafka_partitions": partitions,
        "kafka_disk_bytes": kafka_disk,
        "raw_disk_bytes_per_day": points * DAY_S * figures.disk_bytes_per_point,
        "raw_disk_bytes": raw_disk,
        "rollup_disk_bytes_per_day": points * DAY_S * figures.rollup_bytes_per_point,
        "rollup_disk_bytes": rollup_disk,
        "clickhouse_insert_cores": insert_cores,
        "shards_for_disk": shards_for_disk,
        "shards_for_inserts": shards_for_inserts,
        "clickhouse_shards": shards,
        "clickhouse_servers": shards * a.clickhouse_replicas,
    }


def _size(value: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if value >= scale:
            return f"{value / scale:,.1f} {unit}"
    return f"{value:,.0f} B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=Workload.gpus)
    parser.add_argument("--metrics", type=int, default=Workload.metrics_per_gpu)
    parser.add_argument("--steps-per-s", type=float, default=Workload.steps_per_s)
    parser.add_argument("--worker-points-per-core", type=float, default=Figures.worker_points_per_core_s)
    parser.add_argument("--storage", metavar="JSON", help="bench/storage.py's last line: its figures replace these")
    parser.add_argument("--raw-days", type=int, default=Assumptions.raw_days)
    parser.add_argument("--rollup-days", type=int, default=Assumptions.rollup_days)
    parser.add_argument("--replicas", type=int, default=Assumptions.clickhouse_replicas)
    args = parser.parse_args()
    figures = Figures(worker_points_per_core_s=args.worker_points_per_core)
    if args.storage:
        figures = Figures.from_storage(args.storage, figures)
    workload = Workload(args.gpus, args.metrics, args.steps_per_s)
    assumptions = Assumptions(raw_days=args.raw_days, rollup_days=args.rollup_days, clickhouse_replicas=args.replicas)
    sizing = plan(workload, figures, assumptions)

    table = Table(title=f"{workload.gpus:,} GPUs x {workload.metrics_per_gpu} metrics x {workload.steps_per_s} steps/s")
    table.add_column("what")
    table.add_column("needs", justify="right")
    a = assumptions
    rows = [
        ("points/s", f"{sizing['points_per_s']:,.0f}"),
        ("worker processes (one core each)", str(sizing["worker_processes"])),
        ("Kafka ingress", f"{_size(sizing['kafka_bytes_per_s'])}/s"),
        ("Kafka partitions (metrics topic)", str(sizing["kafka_partitions"])),
        (f"Kafka disk ({a.kafka_retention_h:g} h, x{a.kafka_replication})", _size(sizing["kafka_disk_bytes"])),
        (f"raw points ({a.raw_days} days)", _size(sizing["raw_disk_bytes"])),
        (f"rollups ({a.rollup_days} days)", _size(sizing["rollup_disk_bytes"])),
        ("ClickHouse insert cores", str(sizing["clickhouse_insert_cores"])),
        ("ClickHouse shards (disk / inserts)", f"{sizing['shards_for_disk']} / {sizing['shards_for_inserts']}"),
        (f"ClickHouse servers (x{a.clickhouse_replicas} replicas)", str(sizing["clickhouse_servers"])),
    ]
    for what, needs in rows:
        table.add_row(what, needs)
    Console(stderr=True).print(table)
    inputs = {"workload": asdict(workload), "figures": asdict(figures), "assumptions": asdict(assumptions)}
    print(json.dumps({**inputs, **sizing}))


if __name__ == "__main__":
    main()
