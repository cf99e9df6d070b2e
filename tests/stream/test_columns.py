"""Wire format v2's binary columns: what the SDK's writer packs, both readers (the core's plain Python one and
the worker's numpy one) read back exactly, values bit for bit, in order, whatever the rows (property-based);
and the records are cut where the format's bounds say."""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstream_core.columns import HardwareRecords, MetricRecords, pack_values, to_batch, to_columns
from runstream_core.events import (
    MAX_EPOCH_MS,
    MAX_KEYS_PER_BATCH,
    MAX_TS_OFFSET_MS,
    HardwareBatch,
    HardwareColumns,
    MetricBatch,
    MetricColumns,
    decode_event,
    encode_event,
)
from runstream_worker.columns import hardware_arrays, metric_arrays, point_count, where

ENVELOPE: dict[str, Any] = {"producer_id": "p", "seq": 7, "rank": 1, "run_id": "r", "team": "t", "project": "x"}
HW_ENVELOPE: dict[str, Any] = {**ENVELOPE, "host": "h", "user": "u", "interval_ms": 1000}


def bits(value: float) -> int:
    """A float's IEEE-754 binary64 pattern: equal bits, equal values (NaN payloads and -0.0 included)."""
    return int.from_bytes(struct.pack("<d", value), "little")


# A value as ``log()`` takes it: any float (NaNs with payloads, infinities, -0.0), ints that fit a float
# (beyond 2**53 too: they travel rounded, as float(v)), and bools.
nan_payloads = st.integers(min_value=1, max_value=2**52 - 1).map(
    lambda m: struct.unpack("<d", struct.pack("<Q", (0x7FF << 52) | m))[0]
)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    nan_payloads,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
)
key_names = st.sampled_from(["loss", "acc", "lr", "train/loss", 'q"uote', "é", "x" * 200])
epochs = st.one_of(
    st.integers(min_value=0, max_value=MAX_EPOCH_MS),
    st.integers(min_value=1_700_000_000_000, max_value=1_700_000_000_000 + 3 * MAX_TS_OFFSET_MS),
)


@st.composite
def metric_rows(draw: st.DrawFn) -> list[tuple[int, int, tuple[str, ...], tuple[Any, ...]]]:
    rows = []
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        keys = tuple(draw(st.lists(key_names, min_size=0, max_size=6, unique=True)))
        row_values = tuple(draw(st.lists(values, min_size=len(keys), max_size=len(keys))))
        rows.append((draw(st.integers(min_value=0, max_value=2**63 - 1)), draw(epochs), keys, row_values))
    return rows


def expected_points(rows: list[tuple[int, int, tuple[str, ...], tuple[Any, ...]]]) -> list[tuple[str, int, int, int]]:
    return [
        (key, step, ts_ms, bits(float(value)))
        for step, ts_ms, keys, row_values in rows
        for key, value in zip(keys, row_values, strict=True)
    ]


def through_the_wire(event: Any) -> Any:
    return decode_event(encode_event(event))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=metric_rows(), limit=st.integers(min_value=1, max_value=20))
def test_metric_rows_written_are_read_back_exactly_by_both_readers(
    rows: list[tuple[int, int, tuple[str, ...], tuple[Any, ...]]], limit: int
) -> None:
    records = MetricRecords(limit)
    for step, ts_ms, keys, row_values in rows:
        records.add(step, ts_ms, keys, pack_values(row_values))
    written = [through_the_wire(writer.build(**ENVELOPE)) for writer in records.take()]
    assert all(isinstance(r, MetricColumns) and 0 < point_count(r) <= limit for r in written)
    core: list[tuple[str, int, int, int]] = []
    numpy: list[tuple[str, int, int, int]] = []
    for record in written:
        batch = to_batch(record)
        core += [
            (k, s, t, bits(v)) for k, s, t, v in zip(batch.keys, batch.steps, batch.ts_ms, batch.values, strict=True)
        ]
        arrays = metric_arrays(record)
        numpy += list(
            zip(
                arrays.key_per_point().tolist(),
                arrays.steps.tolist(),
                arrays.ts_ms.tolist(),
                arrays.values.view(np.uint64).tolist(),
                strict=True,
            )
        )
        assert record.ts_base_ms == int(arrays.ts_ms.min())  # the base is the earliest time
        assert len(record.keys) == len(set(arrays.key_per_point().tolist()))  # keys listed once, all used
    assert core == numpy == expected_points(rows)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    samples=st.lists(
        st.tuples(epochs, st.lists(st.tuples(key_names, st.sampled_from(["", "gpu0", "gpu1"]), values), max_size=5)),
        max_size=8,
    )
)
def test_hardware_samples_written_are_read_back_exactly_by_both_readers(
    samples: list[tuple[int, list[tuple[str, str, Any]]]],
) -> None:
    records = HardwareRecords(6)
    for ts_ms, readings in samples:
        records.add(
            ts_ms, [k for k, _, _ in readings], [d for _, d, _ in readings], pack_values([v for _, _, v in readings])
        )
    written = [through_the_wire(writer.build(**HW_ENVELOPE)) for writer in records.take()]
    core, numpy = [], []
    for record in written:
        assert isinstance(record, HardwareColumns)
        batch = to_batch(record)
        assert (batch.host, batch.user, batch.interval_ms) == ("h", "u", 1000)
        core += list(zip(batch.ts_ms, batch.keys, batch.devices, map(bits, batch.values), strict=True))
        arrays = hardware_arrays(record)
        numpy += list(
            zip(
                arrays.ts_ms.tolist(),
                arrays.key_per_point().tolist(),
                arrays.device_per_point().tolist(),
                arrays.values.view(np.uint64).tolist(),
                strict=True,
            )
        )
    expected = [(t, k, d, bits(float(v))) for t, readings in samples for k, d, v in readings]
    assert core == numpy == expected


@settings(max_examples=200, deadline=None)
@given(rows=metric_rows())
def test_a_v1_batch_as_v2_records_holds_the_same_points_as_floats(
    rows: list[tuple[int, int, tuple[str, ...], tuple[Any, ...]]],
) -> None:
    points = expected_points(rows)
    batch = MetricBatch(
        **ENVELOPE,
        keys=[p[0] for p in points],
        steps=[p[1] for p in points],
        ts_ms=[p[2] for p in points],
        values=[v for *_, row_values in rows for v in row_values],
    )
    back = [through_the_wire(record) for record in to_columns(batch)]
    assert [
        (k, s, t, bits(v))
        for record in back
        for b in [to_batch(record)]
        for k, s, t, v in zip(b.keys, b.steps, b.ts_ms, b.values, strict=True)
    ] == points
    assert all(type(v) is float for record in back for v in to_batch(record).values)  # ints travel as floats


def test_a_record_is_cut_at_the_distinct_keys_an_id_can_name() -> None:
    records = MetricRecords(1_000_000)
    keys = tuple(f"k{i}" for i in range(MAX_KEYS_PER_BATCH + 10))
    records.add(1, 1_700_000_000_000, keys, pack_values([1.0] * len(keys)))
    written = [through_the_wire(w.build(**ENVELOPE)) for w in records.take()]
    assert len(written) > 1 and all(len(record.keys) <= MAX_KEYS_PER_BATCH for record in written)
    assert [key for record in written for key in to_batch(record).keys] == list(keys)


def test_a_record_is_cut_where_times_drift_past_what_an_offset_holds_and_the_clock_may_go_back() -> None:
    t0 = 1_700_000_000_000
    records = MetricRecords()
    for step, ts in enumerate([t0, t0 - 5, t0 + MAX_TS_OFFSET_MS - 5, t0 + MAX_TS_OFFSET_MS]):
        records.add(step, ts, ("loss",), pack_values([float(step)]))
    first, second = (through_the_wire(w.build(**ENVELOPE)) for w in records.take())
    assert (first.ts_base_ms, to_batch(first).ts_ms) == (t0 - 5, [t0, t0 - 5, t0 + MAX_TS_OFFSET_MS - 5])
    assert (second.ts_base_ms, to_batch(second).steps) == (t0 + MAX_TS_OFFSET_MS, [3])


def test_where_keeps_the_chosen_points_of_a_record() -> None:
    records = MetricRecords()
    records.add(1, 1_700_000_000_000, ("a", "b", "c"), pack_values([1.0, 2.0, 3.0]))
    (record,) = (w.build(**ENVELOPE) for w in records.take())
    kept = through_the_wire(where(record, np.array([True, False, True])))
    assert isinstance(kept, MetricColumns)
    assert (to_batch(kept).keys, to_batch(kept).values) == (["a", "c"], [1.0, 3.0])


def test_a_value_no_float_can_hold_is_refused_when_packed() -> None:
    with pytest.raises((OverflowError, struct.error)):
        pack_values([10**400])
    with pytest.raises(struct.error):
        pack_values(["1.0"])  # type: ignore[list-item]


def test_readers_refuse_points_out_of_bounds_naming_the_field() -> None:
    records = MetricRecords()
    records.add(1, MAX_EPOCH_MS, ("a",), pack_values([1.0]))
    (good,) = (w.build(**ENVELOPE) for w in records.take())
    cases = {
        "$.key_ids": msgspec.structs.replace(good, key_ids=struct.pack("<H", 1)),
        "$.steps": msgspec.structs.replace(good, steps=struct.pack("<q", -1)),
        "$.ts_offsets_ms": msgspec.structs.replace(good, ts_base_ms=MAX_EPOCH_MS - 1, ts_offsets_ms=b"\x02\0\0\0"),
    }
    for field, bad in cases.items():
        for read in (to_batch, metric_arrays):
            with pytest.raises(msgspec.ValidationError, match=rf"at `\{field}`"):
                read(bad)  # type: ignore[operator]
    hw = HardwareBatch(**HW_ENVELOPE, ts_ms=[1], keys=["cpu"], devices=["gpu0"], values=[1.0])
    (record,) = to_columns(hw)
    bad_device = msgspec.structs.replace(record, device_ids=struct.pack("<H", 3))
    for read in (to_batch, hardware_arrays):
        with pytest.raises(msgspec.ValidationError, match=r"device id 3 is out of range.*at `\$.device_ids`"):
            read(bad_device)  # type: ignore[operator]
