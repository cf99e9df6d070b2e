"""Wire format v2 on the real broker and engine: runs writing v1 and v2 onto the same topics are stored
exactly, and a consumer written in Go from docs/wire-format.md alone reads from the very Kafka records
the values the worker stored, bit for bit."""

from __future__ import annotations

import base64
import math
import struct
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from clickhouse_connect.driver.client import Client
from kafka import KafkaConsumer

from runstream.run import Run
from runstream_cli.worker_process import WorkerProcess
from runstream_core.columns import to_columns
from runstream_core.events import Event, HardwareBatch, MetricBatch, decode_event
from runstream_core.topics import Topics
from runstream_worker.lag import wait_caught_up
from tests.faults.worker_support import Feed, Workload, assert_stored_exactly
from tests.fixtures.clients import Client as Decoder
from tests.fixtures.settings import StackSettings as Settings

STEPS = 120
NAN_WITH_PAYLOAD = struct.unpack("<d", struct.pack("<Q", 0x7FF0_0000_0000_0BAD))[0]


def bits(value: float) -> str:
    """A float64's IEEE-754 pattern as 16 hex digits (as the Go decoder prints it)."""
    return f"{struct.unpack('<Q', struct.pack('<d', value))[0]:016x}"


def logged(step: int) -> dict[str, Any]:
    """What both runs log at ``step``: ints (beyond 2**53 too), bools, floats, NaNs, infinities, -0.0,
    and a key that only some steps log."""
    values: dict[str, Any] = {
        "int": step,
        "big_int": 2**53 + 1 + step,
        "bool": step % 2 == 0,
        "loss": 1 / (step + 1),
        "nan": math.nan,
        "nan_payload": NAN_WITH_PAYLOAD,
        "inf": -math.inf,
        "neg_zero": -0.0,
    }
    if step % 7 == 0:
        values["sometimes"] = step * 3
    return values


def mixed(work: Workload) -> list[Event]:
    """The workload's events, every other metric batch and hardware sample as v2 columns."""
    out: list[Event] = []
    for event in work.events():
        if isinstance(event, MetricBatch | HardwareBatch) and event.seq % 2:
            out.extend(to_columns(event))
        else:
            out.append(event)
    return out


def read_topic(settings: Settings, topic: str) -> list[bytes]:
    """Every record value on ``topic``, from its start."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3_000
    )
    try:
        return [record.value for record in consumer]
    finally:
        consumer.close()


def test_v1_and_v2_on_one_topic_are_stored_exactly_and_go_reads_the_stored_bits(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    go_wire_decoder: Decoder,
) -> None:
    worker = worker_factory(pipeline_settings)
    expected: dict[str, set[tuple[str, int, str]]] = {}
    for run_id, version in (("v2-run", 2), ("v1-run", 1)):
        settings = pipeline_settings.model_copy(update={"wire_version": version})
        with Run(project="wire", team="vision", run_id=run_id, settings=settings) as run:
            for step in range(STEPS):
                run.log(logged(step), step=step)
        assert run.delivery is not None and run.delivery.complete
        expected[run_id] = {(k, s, bits(float(v))) for s in range(STEPS) for k, v in logged(s).items()}
    work = Workload(run_id="fed-mixed", batches=12)
    feed = Feed(pipeline_settings)
    feed.events(mixed(work))
    feed.close()
    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.stop() == 0

    client = clickhouse_factory(pipeline_settings)
    for run_id, points in expected.items():
        rows = client.query(
            "SELECT key, step, reinterpretAsUInt64(value) FROM metrics WHERE run_id = {r:String}",
            parameters={"r": run_id},
        ).result_rows
        assert len(rows) == len(points)
        assert {(key, step, f"{raw:016x}") for key, step, raw in rows} == points, run_id
    assert_stored_exactly(client, [work])

    # The very records on the topics, decoded in Go, against the rows stored from them.
    topics = Topics(pipeline_settings.topic_prefix)
    values = read_topic(pipeline_settings, topics.metrics) + read_topic(pipeline_settings, topics.hardware)
    kinds = {(e.run_id, type(e).__name__) for e in map(decode_event, values)}  # type: ignore[union-attr]
    assert kinds == {
        ("v2-run", "MetricColumns"),
        ("v1-run", "MetricBatch"),
        ("fed-mixed", "MetricColumns"),
        ("fed-mixed", "MetricBatch"),
        ("fed-mixed", "HardwareColumns"),
        ("fed-mixed", "HardwareBatch"),
    }
    decoded = go_wire_decoder({"records": [base64.b64encode(v).decode() for v in values]})["records"]
    from_go: dict[tuple[str, int], list[tuple[Any, ...]]] = defaultdict(list)
    v2_records = 0
    v2_run_points = 0
    for record, value in zip(decoded, values, strict=True):
        if isinstance(decode_event(value), MetricBatch | HardwareBatch):
            assert record["error"].startswith("not a wire format v2 batch"), record
            continue
        assert "error" not in record, record
        v2_records += 1
        hardware = record["type"] == "hardware_columns"
        v2_run_points += len(record["points"]) if record["run_id"] == "v2-run" else 0
        for p in record["points"]:
            point = (
                (p["key"], p.get("device", ""), p["ts_ms"], p["bits"])
                if hardware
                else (p["key"], p["step"], p["ts_ms"], p["bits"])
            )
            from_go[(record["producer_id"], record["seq"])].append(point)
    stored: dict[tuple[str, int], list[tuple[Any, ...]]] = defaultdict(list)
    for producer_id, seq, *point, raw in client.query(
        "SELECT producer_id, seq, key, step, toUnixTimestamp64Milli(ts), reinterpretAsUInt64(value) FROM metrics"
    ).result_rows:
        stored[(producer_id, seq)].append((*point, f"{raw:016x}"))
    for producer_id, seq, *point, raw in client.query(
        "SELECT producer_id, seq, key, device, toUnixTimestamp64Milli(ts), reinterpretAsUInt64(value) FROM hardware"
    ).result_rows:
        stored[(producer_id, seq)].append((*point, f"{raw:016x}"))
    assert v2_records >= 3 and len(from_go) == v2_records  # each v2 record is one (producer id, seq)
    for record_id, points in from_go.items():
        assert sorted(points) == sorted(stored[record_id]), record_id
    assert v2_run_points == len(expected["v2-run"])  # every point the v2 run logged went through Go
