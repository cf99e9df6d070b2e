"""Wire format v1 (list batches) against v2 (binary columns): bytes per point on Kafka and the cost of
making and reading the records.

The same rows go through the SDK's own packing (``runstream._buffer``: ``ColumnPacker`` and the
``MetricBatch`` records the transport builds for v1, ``BinaryPacker`` for v2) and MessagePack encoding,
then through the worker's reading (``decode_event``, then the points as lists for v1, as numpy arrays
for v2). Workloads: a training loop logging 10 metrics per step (floats and ints), and a wide log of
5,000 keys per step. Sizes are given raw and lz4-compressed (the SDK's Kafka compression). Figures are
the best of a few repeats, in nanoseconds per point. No broker needed; ``--quick`` for a smoke run.
Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import lz4.frame
from rich.console import Console
from rich.table import Table

from runstream._buffer import BinaryPacker, ColumnPacker, Row
from runstream_core.events import MetricBatch, MetricColumns, decode_event, encode_event

RECORD_POINTS = 4096  # the SDK's max_points_per_record default
ENVELOPE: dict[str, Any] = {"producer_id": "bench", "rank": 0, "run_id": "bench-run", "team": "bench", "project": "w"}
T0 = 1_700_000_000.0


def _ignore(*_: object, **__: object) -> None:
    return None


def loop_rows(steps: int) -> list[Row]:
    """A training loop: 10 metrics per step, 8 floats and 2 ints, 50 ms apart."""
    keys = (*(f"train/m{k}" for k in range(8)), "epoch", "tokens")
    return [
        (step, T0 + step * 0.05, keys, (*(1.0 / (step + k + 1) for k in range(8)), step // 100, step * 4096))
        for step in range(steps)
    ]


def wide_rows(steps: int) -> list[Row]:
    """A wide log: 5,000 per-layer figures per step."""
    keys = tuple(f"layer_{k:05d}/grad_norm" for k in range(5_000))
    return [(step, T0 + step, keys, tuple(k * 0.001 + step for k in range(5_000))) for step in range(steps)]


def pack_v1(rows: list[Row]) -> list[bytes]:
    packer = ColumnPacker(_ignore)
    for row in rows:
        packer.add(row)
    cols = packer.take()
    return [
        encode_event(
            MetricBatch(
                **ENVELOPE,
                seq=seq,
                keys=cols.keys[start : start + RECORD_POINTS],
                steps=cols.steps[start : start + RECORD_POINTS],
                ts_ms=cols.ts_ms[start : start + RECORD_POINTS],
                values=cols.values[start : start + RECORD_POINTS],
            )
        )
        for seq, start in enumerate(range(0, len(cols), RECORD_POINTS))
    ]


def pack_v2(rows: list[Row]) -> list[bytes]:
    packer = BinaryPacker(_ignore, RECORD_POINTS)
    for row in rows:
        packer.add(row)
    return [encode_event(writer.build(**ENVELOPE, seq=seq)) for seq, writer in enumerate(packer.take())]


def read_v1(records: list[bytes]) -> int:
    points = 0
    for value in records:
        event = decode_event(value)
        assert isinstance(event, MetricBatch)
        points += len(event.values)
    return points


def read_v2(records: list[bytes]) -> int:
    from runstream_worker.columns import metric_arrays  # the worker's reader (numpy)

    points = 0
    for value in records:
        event = decode_event(value)
        assert isinstance(event, MetricColumns)
        points += len(metric_arrays(event))
    return points


def best_ns(call: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter_ns()
        call()
        best = min(best, time.perf_counter_ns() - started)
    return best


def measure(rows: list[Row], repeats: int) -> dict[str, dict[str, float]]:
    points = sum(len(keys) for _, _, keys, _ in rows)
    out: dict[str, dict[str, float]] = {}
    for version, pack, read in (("v1", pack_v1, read_v1), ("v2", pack_v2, read_v2)):
        records = pack(rows)
        assert read(records) == points
        raw = sum(map(len, records))
        compressed = sum(len(lz4.frame.compress(r)) for r in records)
        out[version] = {
            "records": len(records),
            "bytes_per_point": raw / points,
            "lz4_bytes_per_point": compressed / points,
            "encode_ns_per_point": best_ns(lambda pack=pack: pack(rows), repeats) / points,
            "decode_ns_per_point": best_ns(lambda read=read, r=records: read(r), repeats) / points,
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer steps and repeats")
    args = parser.parse_args()
    steps, repeats = (2_000, 2) if args.quick else (50_000, 5)
    workloads = {"loop_10_keys": loop_rows(steps), "wide_5000_keys": wide_rows(max(2, steps // 500))}
    figures: dict[str, Any] = {"quick": args.quick, "python": sys.version.split()[0], "machine": platform.machine()}
    table = Table(title="wire format v1 vs v2, per point")
    for column in ("workload", "version", "records", "bytes", "lz4 bytes", "encode ns", "decode ns"):
        table.add_column(column, justify="right")
    for name, rows in workloads.items():
        result = measure(rows, repeats)
        figures[name] = result
        for version, f in result.items():
            table.add_row(
                name,
                version,
                str(int(f["records"])),
                f"{f['bytes_per_point']:.2f}",
                f"{f['lz4_bytes_per_point']:.2f}",
                f"{f['encode_ns_per_point']:.0f}",
                f"{f['decode_ns_per_point']:.0f}",
            )
    Console(stderr=True).print(table)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
