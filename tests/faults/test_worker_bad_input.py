"""Bad records sent straight to the topics: each one a dead letter with its reason, everything else
stored exactly once, every rollup equal to its raw aggregate."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable

import msgspec
from clickhouse_connect.driver.client import Client
from kafka.consumer.fetcher import ConsumerRecord

from runstream_cli.worker_process import WorkerProcess
from runstream_core.clickhouse import connect
from runstream_core.columns import to_columns
from runstream_core.events import (
    MAX_EPOCH_MS,
    MAX_PARAMS,
    MAX_POINTS_PER_BATCH,
    Event,
    HardwareBatch,
    MetricBatch,
    encode_event,
)
from runstream_worker.lag import wait_caught_up
from runstream_worker.migrate import migrate
from tests.faults.worker_support import Feed, Workload, assert_stored_exactly, dead_letters, headers
from tests.fixtures.settings import StackSettings as Settings


def test_garbage_on_every_topic_is_dead_lettered_and_the_rest_flows(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    settings = pipeline_settings.model_copy(update={"worker_batch_records": 10})
    worker = worker_factory(settings)
    rng = random.Random(11)
    good = [Workload(run_id="good-a", batches=12), Workload(run_id="good-b", team="nlp", batches=12)]
    sample = good[0]
    points = msgspec.to_builtins(sample.metric_batch(0))
    readings = msgspec.to_builtins(sample.hardware_batch(0))
    start = msgspec.to_builtins(sample.start())
    feed = Feed(settings)
    t = feed.topics
    bad: dict[str, tuple[str, bytes]] = {
        "random bytes": (t.metrics, rng.randbytes(2_000)),
        "random bytes on runs": (t.runs, rng.randbytes(300)),
        "truncated msgpack": (t.metrics, encode_event(sample.metric_batch(1))[:-40]),
        "truncated lifecycle": (t.runs, encode_event(sample.start())[:25]),
        "a string for a list": (t.metrics, msgspec.msgpack.encode({**points, "steps": "0,1,2"})),
        "floats for steps": (t.metrics, msgspec.msgpack.encode({**points, "steps": [0.5] * len(points["keys"])})),
        "a number for a name": (t.hardware, msgspec.msgpack.encode({**readings, "keys": [1, 2, 3]})),
        "a list for an event": (t.runs, msgspec.msgpack.encode([1, 2, 3])),
        "a huge map": (
            t.runs,
            msgspec.msgpack.encode({**start, "params": {f"k{i}": "v" for i in range(MAX_PARAMS + 1)}}),
        ),
        "a map of junk": (t.hardware, msgspec.msgpack.encode({f"junk{i}": i for i in range(50_000)})),
        "a step past Int64": (t.metrics, msgspec.msgpack.encode({**points, "steps": [2**63] * len(points["keys"])})),
        "an interval past UInt32": (t.hardware, msgspec.msgpack.encode({**readings, "interval_ms": 2**32})),
        "a start past DateTime64": (
            t.runs,
            msgspec.msgpack.encode({**start, "run": {**start["run"], "started_at_ms": 2**53}}),
        ),
        "points on the runs topic": (t.runs, encode_event(sample.metric_batch(2))),
        "an empty value": (t.metrics, b""),
    }
    # Bad records between the good ones, on every topic.
    events = [work.events() for work in good]
    letters = send_between(feed, events, bad, settings)
    assert worker.stop() == 0
    sent = {value: name for name, (_, value) in bad.items()}
    seen = {sent[record.value]: headers(record) for record in letters}
    assert set(seen) == set(bad)
    for name, (topic, _) in bad.items():
        assert seen[name]["source_topic"] == topic
        assert seen[name]["reason"], name
    assert seen["random bytes"]["reason"].startswith("invalid event: ")
    assert seen["a huge map"]["reason"] == f"invalid event: Expected `object` of length <= {MAX_PARAMS} - at `$.params`"
    assert seen["a step past Int64"]["reason"].endswith("- at `$.steps[0]`")
    assert seen["an interval past UInt32"]["reason"] == "invalid event: Expected `int` <= 86400000 - at `$.interval_ms`"
    assert seen["a start past DateTime64"]["reason"].endswith("- at `$.run.started_at_ms`")
    assert seen["points on the runs topic"]["reason"] == f"event type MetricBatch does not belong on {t.runs}"
    assert seen["an empty value"]["reason"] == "empty record value"
    assert_stored_exactly(clickhouse_factory(settings), good)


def test_a_record_the_store_refuses_is_a_dead_letter_after_its_tries(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    # The store refuses what the schema lets through (as a server's constraint might).
    settings = pipeline_settings.model_copy(update={"worker_batch_records": 50})
    migrate(settings)
    client = connect(settings)
    client.command("ALTER TABLE metrics ADD CONSTRAINT no_negative_zero_step CHECK NOT (step = 0 AND value = -1)")
    client.close()
    worker = worker_factory(settings)
    work = Workload(run_id="refused", batches=20)
    refused = work.metric_batch(0)
    refused = msgspec.structs.replace(refused, seq=999, values=[-1.0] * len(refused.values))
    feed = Feed(settings)
    events = work.events()
    feed.events(events[:5])
    feed.send(feed.topics.metrics, encode_event(refused), key=work.run_id.encode())
    feed.events(events[5:])
    feed.close()

    (letter,) = dead_letters(settings, 1)
    wait_caught_up(settings, timeout_s=120)
    assert worker.stop() == 0
    assert letter.value == encode_event(refused)
    reason = headers(letter)["reason"]
    assert reason.startswith("clickhouse refused the record: Code: 469 (VIOLATED_CONSTRAINT): ")
    assert "no_negative_zero_step" in reason
    assert worker.log_text().count("clickhouse refused the batch; trying again") >= 4  # the take's, the record's
    assert_stored_exactly(clickhouse_factory(settings), [work])


def test_a_record_near_kafkas_limit_gets_its_dead_letter_cut_with_the_headers(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    worker = worker_factory(pipeline_settings)
    work = Workload(run_id="beside-a-big-one", batches=5)
    feed = Feed(pipeline_settings, max_request_size=2 * 1024 * 1024)
    huge = b"\xc1" + random.Random(3).randbytes(1_048_000 - 1)  # just under the broker's 1,048,588
    feed.events(work.events()[:3])
    partition, offset = feed.send(feed.topics.metrics, huge, key=b"beside-a-big-one")
    feed.events(work.events()[3:])
    feed.close()

    (letter,) = dead_letters(pipeline_settings, 1)
    wait_caught_up(pipeline_settings, timeout_s=120)
    assert worker.running()
    assert worker.stop() == 0
    found = headers(letter)
    assert found["original_size"] == str(len(huge))
    assert (found["source_topic"], found["source_partition"]) == (feed.topics.metrics, str(partition))
    assert found["source_offset"] == str(offset)
    reason = found["reason"]
    assert reason.startswith("invalid event: ")
    assert "(dead letter cut to its first " in reason and "of 1048000 bytes to fit Kafka's limit)" in reason
    assert 900_000 < len(letter.value) < 1_000_000 and huge.startswith(letter.value)
    assert_stored_exactly(clickhouse_factory(pipeline_settings), [work])


def test_hostile_v2_columns_are_dead_lettered_with_the_field_at_fault_and_the_rest_flows(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    settings = pipeline_settings.model_copy(update={"worker_batch_records": 10})
    worker = worker_factory(settings)
    good = [Workload(run_id="v2-good-a", batches=12), Workload(run_id="v2-good-b", team="nlp", batches=12)]
    sample = Workload(run_id="v2-bad", points=4)
    (points,) = to_columns(sample.metric_batch(0))
    (readings,) = to_columns(sample.hardware_batch(0))
    m = {"type": "metric_columns", **msgspec.structs.asdict(points)}
    h = {"type": "hardware_columns", **msgspec.structs.asdict(readings)}
    enc = msgspec.msgpack.encode
    feed = Feed(settings)
    t = feed.topics
    bad: dict[str, tuple[str, bytes]] = {
        "a column short of points": (t.metrics, enc({**m, "values": m["values"][:-8]})),
        "a column cut inside an item": (t.metrics, enc({**m, "steps": m["steps"][:-3]})),
        "a key id past the keys": (t.metrics, enc({**m, "key_ids": struct.pack("<4H", 0, 1, 0, 9)})),
        "a device id past the devices": (t.hardware, enc({**h, "device_ids": struct.pack("<3H", 0, 1, 3)})),
        "offsets past 2299": (
            t.metrics,
            enc({**m, "ts_base_ms": MAX_EPOCH_MS - 10, "ts_offsets_ms": struct.pack("<4I", 0, 0, 0, 2**32 - 1)}),
        ),
        "a negative base": (t.hardware, enc({**h, "ts_base_ms": -1})),
        "NaN steps as floats": (t.metrics, enc({**m, "steps": [math.nan] * 4})),
        "NaN steps as float64 bits": (t.metrics, enc({**m, "steps": struct.pack("<d", -math.nan) * 4})),
        "a truncated record": (t.metrics, encode_event(points)[:-20]),
        "a truncated column": (t.metrics, enc(m)[:-5]),
        "a key listed twice": (t.metrics, enc({**m, "keys": ["loss", "loss"]})),
        "version 1 columns": (t.metrics, enc({**m, "v": 1})),
        "more points than a batch holds": (t.metrics, enc({**m, "values": bytes(8 * (MAX_POINTS_PER_BATCH + 1))})),
        "columns on the runs topic": (t.runs, encode_event(points)),
    }
    events = [mixed_v2(work) for work in good]
    letters = send_between(feed, events, bad, settings)
    assert worker.stop() == 0
    sent = {value: name for name, (_, value) in bad.items()}
    reasons = {sent[record.value]: headers(record)["reason"] for record in letters}
    assert reasons == {
        "a column short of points": "invalid event: metric columns differ in length: key_ids 4, steps 4, "
        "ts_offsets_ms 4, values 3 points",
        "a column cut inside an item": "invalid event: steps holds 29 bytes, not a whole number of 8-byte items",
        "a key id past the keys": "invalid event: key id 9 is out of range: the record lists 2 keys - at `$.key_ids`",
        "a device id past the devices": "invalid event: device id 3 is out of range: the record lists 3 devices"
        " - at `$.device_ids`",
        "offsets past 2299": f"invalid event: ts_base_ms {MAX_EPOCH_MS - 10} + offset {2**32 - 1} is past "
        f"{MAX_EPOCH_MS} (the end of 2299) - at `$.ts_offsets_ms`",
        "a negative base": "invalid event: Expected `int` >= 0 - at `$.ts_base_ms`",
        "NaN steps as floats": "invalid event: Expected `bytes`, got `array` - at `$.steps`",
        "NaN steps as float64 bits": f"invalid event: step {struct.unpack('<q', struct.pack('<d', -math.nan))[0]} "
        "is negative - at `$.steps`",
        "a truncated record": "invalid event: Input data was truncated",
        "a truncated column": "invalid event: Input data was truncated",
        "a key listed twice": "invalid event: keys lists 'loss' twice: a dictionary lists each metric key once",
        "version 1 columns": "invalid event: unsupported schema version 1 for metric_columns, expected 2 - at `$.v`",
        "more points than a batch holds": f"invalid event: Expected `bytes` of length <= {8 * MAX_POINTS_PER_BATCH}"
        " - at `$.values`",
        "columns on the runs topic": f"event type MetricColumns does not belong on {t.runs}",
    }
    assert_stored_exactly(clickhouse_factory(settings), good)


def send_between(
    feed: Feed, events: list[list[Event]], bad: dict[str, tuple[str, bytes]], settings: Settings
) -> list[ConsumerRecord]:
    """Sends each bad record after one of the good runs' events (taking turns), then the rest of those
    events; returns the dead letters once there is one per bad record and the worker has caught up."""
    for i, (topic, value) in enumerate(bad.values()):
        feed.events([events[i % 2].pop(0)] if events[i % 2] else [])
        feed.send(topic, value)
    for rest in events:
        feed.events(rest)
    feed.close()
    letters = dead_letters(settings, len(bad))
    wait_caught_up(settings, timeout_s=120)
    return letters


def mixed_v2(work: Workload) -> list[Event]:
    """The workload's events with every metric and hardware batch as v2 columns."""
    return [
        part
        for event in work.events()
        for part in (to_columns(event) if isinstance(event, MetricBatch | HardwareBatch) else [event])
    ]
