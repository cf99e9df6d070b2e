"""Cutting an event that is too large for one Kafka record into events that are not."""

from __future__ import annotations

import pytest

from runstream._split import split_event, split_for_replay
from runstream_core.events import (
    Event,
    HardwareBatch,
    Heartbeat,
    MetricBatch,
    RunEnd,
    RunInfo,
    RunStart,
    RunStatus,
    RunUpdate,
    decode_event,
    encode_event,
)

INFO = RunInfo(run_id="r", team="t", project="p", started_at_ms=1_000)
LIMIT = 64 * 1024


def metric_batch(n: int, key_len: int = 200) -> MetricBatch:
    return MetricBatch(
        producer_id="p" * 32,
        seq=7,
        run_id="r",
        team="t",
        project="p",
        keys=[f"{i}".ljust(key_len, "k") for i in range(n)],
        steps=list(range(n)),
        ts_ms=[5] * n,
        values=[float(i) for i in range(n)],
    )


def sizes(events: list[Event]) -> list[int]:
    return [len(encode_event(e)) for e in events]


def test_an_event_that_fits_is_left_as_it_is() -> None:
    small = metric_batch(10)
    assert split_event(small, LIMIT) == [small]


def test_a_metric_batch_is_cut_by_points_in_order_keeping_its_ids() -> None:
    big = metric_batch(2000)  # ~430 kB
    parts = split_event(big, LIMIT)
    assert parts is not None and len(parts) > 1
    assert max(sizes(parts)) <= LIMIT - 16  # room for another sequence number
    assert all(isinstance(p, MetricBatch) and (p.producer_id, p.seq) == (big.producer_id, 7) for p in parts)
    assert [k for p in parts for k in p.keys] == big.keys  # type: ignore[union-attr]
    assert [s for p in parts for s in p.steps] == big.steps  # type: ignore[union-attr]
    assert all(decode_event(encode_event(p)) == p for p in parts)  # each valid on the wire


def test_a_hardware_batch_is_cut_by_readings() -> None:
    n = 3000
    big = HardwareBatch(
        run_id="r",
        team="t",
        project="p",
        ts_ms=[1] * n,
        keys=["gpu.utilization_percent".ljust(100, "x")] * n,
        devices=[f"gpu{i % 8}" for i in range(n)],
        values=[1.0] * n,
    )
    parts = split_event(big, LIMIT)
    assert parts is not None and max(sizes(parts)) <= LIMIT
    assert sum(len(p.keys) for p in parts) == n  # type: ignore[union-attr]


def test_a_start_with_too_many_params_becomes_a_start_and_updates_of_the_same_instant() -> None:
    params = {f"p{i}": "v" * 500 for i in range(400)}  # ~200 kB
    start = RunStart(run=INFO, params=params, resumed_at_ms=2_000)
    parts = split_event(start, LIMIT)
    assert parts is not None and isinstance(parts[0], RunStart) and len(parts) > 1
    assert all(isinstance(p, RunUpdate) and p.ts_ms == 2_000 and p.run == INFO for p in parts[1:])
    assert parts[0].resumed_at_ms == 2_000  # type: ignore[union-attr]
    merged: dict[str, str] = {}
    for part in parts:
        merged.update(part.params)  # type: ignore[union-attr]
    assert merged == params and max(sizes(parts)) <= LIMIT


def test_an_update_is_cut_by_its_params_and_summary() -> None:
    update = RunUpdate(
        run=INFO,
        ts_ms=3_000,
        params={f"p{i}": "v" * 500 for i in range(100)},
        summary={f"s{i}": "t" * 500 for i in range(100)},
    )
    parts = split_event(update, LIMIT)
    assert parts is not None and all(isinstance(p, RunUpdate) and p.ts_ms == 3_000 for p in parts)
    assert {k for p in parts for k in p.params} == set(update.params)  # type: ignore[union-attr]
    assert {k for p in parts for k in p.summary} == set(update.summary)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "event",
    [
        Heartbeat(
            run=RunInfo(run_id="r", team="t", project="p", tags={f"t{i}": "x" * 1000 for i in range(100)}), ts_ms=1
        ),
        RunEnd(
            run=RunInfo(run_id="r", team="t", project="p", tags={f"t{i}": "x" * 1000 for i in range(100)}),
            status=RunStatus.FINISHED,
            ended_at_ms=1,
        ),
        RunStart(run=INFO, params={"one": "x" * 65_536}),
    ],
)
def test_what_nothing_can_cut_is_none(event: Event) -> None:
    assert split_event(event, LIMIT) is None


def test_parts_of_a_replayed_batch_get_producer_ids_of_their_own() -> None:
    big = metric_batch(2000)
    parts = split_for_replay(big, LIMIT)
    assert parts is not None
    assert [p.producer_id for p in parts] == [f"{'p' * 32}-{i}" for i in range(len(parts))]  # type: ignore[union-attr]
    assert {p.seq for p in parts} == {7}
    assert split_for_replay(big, LIMIT) == parts  # a replay is split alike: the worker recognises it
    start = RunStart(run=INFO, producer_id="q" * 32, params={f"p{i}": "v" * 500 for i in range(400)})
    replayed = split_for_replay(start, LIMIT)
    assert replayed is not None and {p.producer_id for p in replayed} == {"q" * 32}  # lifecycle: no dedup needed
