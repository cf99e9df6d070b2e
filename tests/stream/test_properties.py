"""Property-based: whatever a take holds, no exception escapes it, and every record in it is stored,
set aside with a reason (a dead letter), or dropped as a repeat of a record before it.

Records are drawn three ways: arbitrary bytes; arbitrary MessagePack values; and events of every
kind whose fields are drawn both within and beyond their bounds (sizes, ranges, control
characters, wrong types). The path is checked pure (decoding and rows), through the runner with a
sink that keeps rows in memory, and through the runner into the real embedded engine.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from runstream_core.clickhouse import connect
from runstream_core.events import (
    APPEND_ONLY_EVENTS,
    MAX_EPOCH_MS,
    HardwareBatch,
    MetricBatch,
)
from runstream_worker.dead_letters import Letter
from runstream_worker.decode import RecordId, SourceRecord, StoredRows, decode_batch
from runstream_worker.migrate import migrate
from runstream_worker.rows import RowBatch, build_rows
from runstream_worker.runner import Backoff, Runner
from runstream_worker.settings import WorkerSettings
from runstream_worker.sink import ClickHouseSink
from runstream_worker.tables.runs import RunningRun
from tests.fixtures.settings import StackSettings as Settings

PREFIX = "p."
TOPICS = [f"{PREFIX}metrics", f"{PREFIX}hardware", f"{PREFIX}runs", f"{PREFIX}dead-letters", "other.metrics"]

# Values as a producer in any language could send them: MessagePack's whole range ...
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
floats = st.floats(allow_nan=True, allow_infinity=True)
texts = st.text(max_size=40)  # control characters included
wild: st.SearchStrategy[Any] = st.one_of(st.none(), st.booleans(), ints, floats, texts, st.binary(max_size=20))
# ... and values within the bounds of the field they are drawn for.
plain = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)
names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
run_ids = st.from_regex(r"[A-Za-z0-9_.\-]{1,12}", fullmatch=True)
producers = st.from_regex(r"[A-Za-z0-9_\-]{0,8}", fullmatch=True)
epochs = st.integers(min_value=0, max_value=MAX_EPOCH_MS)
steps = st.integers(min_value=0, max_value=2**63 - 1)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy`` 15 times in 16, any other value the 16th."""
    return st.integers(min_value=0, max_value=15).flatmap(lambda i: wild if i == 0 else strategy)


@st.composite
def run_infos(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "run_id": draw(maybe(run_ids)),
        "team": draw(maybe(names)),
        "project": draw(maybe(names.filter(bool))),
        "user": draw(maybe(plain)),
        "name": draw(maybe(plain)),
        "tags": draw(maybe(st.dictionaries(plain, plain, max_size=3))),
        "started_at_ms": draw(maybe(epochs)),
        "world_size": draw(maybe(st.integers(min_value=1, max_value=1_000_000))),
    }


@st.composite
def envelopes(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    return {
        "type": kind,
        "v": draw(maybe(st.just(1))),
        "producer_id": draw(maybe(producers)),
        "seq": draw(maybe(st.integers(min_value=0, max_value=50))),
        "rank": draw(maybe(st.integers(min_value=0, max_value=1_000_000))),
    }


@st.composite
def point_events(draw: st.DrawFn) -> dict[str, Any]:
    hardware = draw(st.booleans())
    n = draw(st.integers(min_value=0, max_value=8))
    ragged = draw(st.integers(min_value=0, max_value=5)) == 0  # columns of different lengths

    def column(element: st.SearchStrategy[Any]) -> Any:
        length = draw(st.integers(min_value=max(0, n - 1), max_value=n + 1)) if ragged else n
        return draw(maybe(st.lists(maybe(element), min_size=length, max_size=length)))

    body = {
        **draw(envelopes("hardware_batch" if hardware else "metric_batch")),
        "run_id": draw(maybe(run_ids)),
        "team": draw(maybe(names)),
        "project": draw(maybe(names)),
        "keys": column(plain.filter(bool)),
        "ts_ms": column(epochs),
        "values": column(floats),
    }
    if hardware:
        body["devices"] = column(plain)
        body["interval_ms"] = draw(maybe(st.integers(min_value=0, max_value=86_400_000)))
        body["host"] = draw(maybe(plain))
    else:
        body["steps"] = column(steps)
    return body


@st.composite
def lifecycle_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["run_start", "run_update", "run_end", "heartbeat"]))
    body = {**draw(envelopes(kind)), "run": draw(maybe(run_infos()))}
    if kind == "run_start":
        body["params"] = draw(maybe(st.dictionaries(plain, plain, max_size=3)))
        body["resumed_at_ms"] = draw(maybe(epochs))
    elif kind == "run_update":
        body["ts_ms"] = draw(maybe(epochs))
        body["summary"] = draw(maybe(st.dictionaries(plain, st.one_of(floats, plain), max_size=3)))
    elif kind == "run_end":
        body["status"] = draw(maybe(st.sampled_from(["finished", "failed", "killed", "crashed"])))
        body["ended_at_ms"] = draw(maybe(epochs))
        body["step"] = draw(maybe(st.integers(min_value=-1, max_value=2**63 - 1)))
    else:
        body["ts_ms"] = draw(maybe(epochs))
        body["step"] = draw(maybe(st.integers(min_value=-1, max_value=2**63 - 1)))
    if draw(st.integers(min_value=0, max_value=15)) == 0:  # a field missing
        body.pop(draw(st.sampled_from(sorted(body))))
    return body


msgpack_values = st.recursive(
    wild, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)), max_leaves=12
)
values = st.one_of(
    st.binary(max_size=64),
    msgpack_values.map(msgspec.msgpack.encode),
    point_events().map(msgspec.msgpack.encode),
    point_events().map(msgspec.msgpack.encode),
    lifecycle_events().map(msgspec.msgpack.encode),
    lifecycle_events().map(msgspec.msgpack.encode),
)


@st.composite
def takes(draw: st.DrawFn, topics: list[str] = TOPICS) -> list[SourceRecord]:
    records = draw(st.lists(st.tuples(st.sampled_from(topics), st.one_of(st.none(), values)), max_size=12))
    return [SourceRecord(topic, 0, offset, value, b"k") for offset, (topic, value) in enumerate(records)]


def accounted(records: list[SourceRecord], stored: set[int], rejected: list[int], repeats: int) -> None:
    """Every record once: stored, rejected (once), or one of ``repeats`` within the take."""
    offsets = [r.offset for r in records]
    assert len(rejected) == len(set(rejected))
    assert not stored & set(rejected)
    assert len(stored) + len(rejected) + repeats == len(offsets)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(takes())
def test_decoding_and_rows_never_raise_and_account_for_every_record(records: list[SourceRecord]) -> None:
    decoded = decode_batch(records, PREFIX)
    rows, failed = build_rows(decoded.events)
    assert all(r.reason for r in decoded.rejected)
    failed_offsets = [decoded.sources[i].offset for i, _ in failed]
    stored = {s.offset for s in decoded.sources} - set(failed_offsets)
    accounted(records, stored, [r.record.offset for r in decoded.rejected] + failed_offsets, decoded.replays)
    # Rows come from the events kept, point by point.
    kept = [e for i, e in enumerate(decoded.events) if i not in {i for i, _ in failed}]
    assert rows.metric_points == sum(len(e.keys) for e in kept if isinstance(e, MetricBatch))
    assert rows.hardware_readings == sum(len(e.keys) for e in kept if isinstance(e, HardwareBatch))
    assert len({len(column) for column in rows.metrics}) == 1
    assert len({len(column) for column in rows.hardware}) == 1


class MemorySink:
    """Keeps rows in memory, as a store would; refuses nothing."""

    def __init__(self) -> None:
        self.written: list[RowBatch] = []

    def write(self, rows: RowBatch, token: str | None) -> None:
        self.written.append(rows)

    def stored_records(self, ids: set[RecordId], run_keys: set[tuple[str, str, str]]) -> list[StoredRows]:
        return []

    def repair(self, token: str) -> int:
        return 0

    def running_runs(self) -> list[RunningRun]:
        return []

    def close(self) -> None:
        pass


class DeadLetters:
    def __init__(self) -> None:
        self.sent: list[Letter] = []

    async def __call__(self, letter: Letter) -> None:
        self.sent.append(letter)


def runner(sink: MemorySink | ClickHouseSink, dead_letters: DeadLetters, prefix: str = PREFIX) -> Runner:
    config = WorkerSettings(_env_file=None, topic_prefix=prefix)  # type: ignore[call-arg]
    return Runner(config, sink, dead_letters, backoff=Backoff(first_s=0.001, max_s=0.002), worker="w")


def handled(work: Runner, records: list[SourceRecord]) -> tuple[int, int]:
    async def run() -> tuple[int, int]:
        done = await work.handle(records)
        return done.replays, len(done.rejected)

    return asyncio.run(run())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(takes())
def test_the_runner_never_raises_and_dead_letters_every_record_it_does_not_store(records: list[SourceRecord]) -> None:
    sink, dead_letters = MemorySink(), DeadLetters()
    replays, rejected = handled(runner(sink, dead_letters), records)
    letters = [int(x.headers["source_offset"]) for x in dead_letters.sent]
    assert rejected == len(letters) and all(x.headers["reason"] for x in dead_letters.sent)
    decoded = decode_batch(records, PREFIX)
    stored = {s.offset for s in decoded.sources} - set(letters)
    accounted(records, stored, letters, replays)
    event(f"records stored: {min(len(stored), 3)}+; dead letters: {min(len(letters), 3)}+")
    points = sum(rows.metric_points for rows in sink.written)
    kept = [e for e, s in zip(decoded.events, decoded.sources, strict=True) if s.offset in stored]
    assert points == sum(len(e.keys) for e in kept if isinstance(e, MetricBatch))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, ClickHouseSink, Client]]:
    path = tmp_path_factory.mktemp("properties") / "clickhouse"
    store = Settings(clickhouse_url=f"chdb://{path}", _env_file=None)  # type: ignore[call-arg]
    migrate(store)
    sink = ClickHouseSink(store)
    client = connect(store)
    yield store, sink, client
    client.close()
    sink.close()


_examples = itertools.count()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.one_of(point_events(), lifecycle_events()), min_size=1, max_size=8))
def test_events_with_any_values_are_stored_or_dead_lettered_on_the_real_engine(
    engine: tuple[Settings, ClickHouseSink, Client], bodies: list[dict[str, Any]]
) -> None:
    store, sink, client = engine
    # Producer ids of this example alone, to find its rows among the module's.
    tag = f"x{next(_examples)}{uuid.uuid4().hex[:6]}"
    for body in bodies:
        if isinstance(body.get("producer_id"), str):
            body["producer_id"] = tag + body["producer_id"][:40]
    topics = {"metric_batch": "metrics", "hardware_batch": "hardware"}
    records = [
        SourceRecord(f"{PREFIX}{topics.get(body.get('type', ''), 'runs')}", 0, i, msgspec.msgpack.encode(body))
        for i, body in enumerate(bodies)
    ]
    dead_letters = DeadLetters()
    work = Runner(
        WorkerSettings(_env_file=None, topic_prefix=PREFIX, clickhouse_url=store.clickhouse_url),  # type: ignore[call-arg]
        sink,
        dead_letters,
        backoff=Backoff(first_s=0.001, max_s=0.002),
        worker="w",
    )
    replays, rejected = handled_keep_open(work, records)
    letters = {int(x.headers["source_offset"]) for x in dead_letters.sent}
    assert rejected == len(letters)
    decoded = decode_batch(records, PREFIX)
    stored = [
        e
        for e, s in zip(decoded.events, decoded.sources, strict=True)
        if s.offset not in letters and isinstance(e, APPEND_ONLY_EVENTS) and e.producer_id.startswith(tag)
    ]
    expected = {(e.producer_id, e.seq): len(e.keys) for e in stored}
    event(f"records with rows to store: {min(len([n for n in expected.values() if n]), 3)}+")
    found = client.query(
        "SELECT producer_id, seq, count() FROM (SELECT producer_id, seq FROM metrics UNION ALL "
        "SELECT producer_id, seq FROM hardware) WHERE startsWith(producer_id, {tag:String}) GROUP BY producer_id, seq",
        parameters={"tag": tag},
    ).result_rows
    assert {(p, s): n for p, s, n in found if n} == {k: n for k, n in expected.items() if n}
    assert replays <= len(records)


def handled_keep_open(work: Runner, records: list[SourceRecord]) -> tuple[int, int]:
    """``handled`` without closing the shared sink."""

    async def run() -> tuple[int, int]:
        done = await work.handle(records)
        return done.replays, len(done.rejected)

    replays, rejected = asyncio.run(run())
    work._executor.shutdown(wait=True)
    return replays, rejected
