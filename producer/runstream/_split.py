"""Records cut to size: an event whose encoding is over ``max_record_bytes`` becomes several that are not.

Kafka refuses a record over the producer's ``max_request_size`` (kafka-python checks it before
sending) or the broker's ``message.max.bytes``, and a refused record would block every one queued
behind it. Metric and hardware batches are cut by points (binary-column ones read back and written
again, each part with the keys it uses); a run's start or update is cut by its params and summary
entries (the params a start cannot carry follow in updates of the same instant, which the worker
stores alike). Anything else that is too large cannot be cut.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import msgspec

from runstream_core.columns import to_batch, to_columns
from runstream_core.events import (
    APPEND_ONLY_EVENTS,
    COLUMN_EVENTS,
    Event,
    HardwareBatch,
    HardwareColumns,
    MetricBatch,
    MetricColumns,
    RunStart,
    RunUpdate,
    encode_event,
)

_SEQ_ROOM = 16
"""Bytes a part may grow by when it is given another sequence number or producer id suffix."""
_MAX_PRODUCER_ID = 64


def split_event(event: Event, max_bytes: int, size: int | None = None) -> list[Event] | None:
    """``event`` as events in order that each encode to at most ``max_bytes`` minus a little room for
    another sequence number (``[event]`` when it fits), or None when it cannot be cut that small.
    ``size``: its encoded size, when known. The parts keep ``event``'s producer id and sequence number."""
    limit = max_bytes - _SEQ_ROOM
    if size is None:
        size = len(encode_event(event))
    if size <= limit:
        return [event]
    pieces = _cut(event, size // limit + 1)
    if pieces is None:
        return None
    out: list[Event] = []
    for piece in pieces:
        parts = split_event(piece, max_bytes)
        if parts is None:
            return None
        out.extend(parts)
    return out


def split_for_replay(event: Event, max_bytes: int, size: int | None = None) -> list[Event] | None:
    """``split_event`` for a record read back from a spool, whose sequence number is taken: each part of
    a metric or hardware batch gets producer id ``<producer id>-<part>`` (same sequence number), so the
    worker tells the parts apart and still recognises each when it is replayed."""
    parts = split_event(event, max_bytes, size)
    if parts is None or len(parts) == 1 or not isinstance(event, APPEND_ONLY_EVENTS) or not event.producer_id:
        return parts
    renamed: list[Event] = []
    for i, part in enumerate(parts):
        suffix = f"-{i}"
        producer_id = event.producer_id[: _MAX_PRODUCER_ID - len(suffix)] + suffix
        renamed.append(msgspec.structs.replace(part, producer_id=producer_id))
    return renamed


def _bounds(n: int, pieces: int) -> list[tuple[int, int]]:
    pieces = min(pieces, n)
    edges = [n * i // pieces for i in range(pieces + 1)]
    return list(itertools.pairwise(edges))


def _columns(event: Any, names: Sequence[str], pieces: int) -> list[Event] | None:
    n = len(event.keys)
    if n < 2:
        return None
    return [
        msgspec.structs.replace(event, **{name: getattr(event, name)[a:b] for name in names})
        for a, b in _bounds(n, pieces)
    ]


def _cut(event: Event, pieces: int) -> list[Event] | None:
    """``event`` cut into (at most) ``pieces`` events of about equal size; None when it cannot be cut."""
    if isinstance(event, COLUMN_EVENTS):
        return _cut_columns(event, pieces)
    if isinstance(event, MetricBatch):
        return _columns(event, ("keys", "steps", "ts_ms", "values"), pieces)
    if isinstance(event, HardwareBatch):
        return _columns(event, ("ts_ms", "keys", "devices", "values"), pieces)
    if isinstance(event, RunStart):
        return _cut_start(event, pieces)
    if isinstance(event, RunUpdate):
        return _cut_update(event, pieces)
    return None


def _cut_columns(event: MetricColumns | HardwareColumns, pieces: int) -> list[Event] | None:
    """A v2 batch cut as its v1 equivalent is, each piece written as v2 again."""
    try:
        points = to_batch(event)
    except msgspec.ValidationError:  # points out of bounds: nothing a cut would mend
        return None
    cut = _cut(points, pieces)
    if cut is None:
        return None
    out: list[Event] = []
    for piece in cut:
        assert isinstance(piece, (MetricBatch, HardwareBatch))
        out.extend(to_columns(piece))
    return out


def _cut_start(event: RunStart, pieces: int) -> list[Event] | None:
    params = list(event.params.items())
    if len(params) < 2:
        return None
    chunks = [dict(params[a:b]) for a, b in _bounds(len(params), pieces)]
    at = max(event.run.started_at_ms, event.resumed_at_ms)  # the start's own instant: stored alike
    return [msgspec.structs.replace(event, params=chunks[0]), *(_update(event, at, chunk, {}) for chunk in chunks[1:])]


def _cut_update(event: RunUpdate, pieces: int) -> list[Event] | None:
    entries: list[tuple[bool, str, Any]] = [(True, k, v) for k, v in event.params.items()]
    entries += [(False, k, v) for k, v in event.summary.items()]
    if len(entries) < 2:
        return None
    return [
        _update(
            event,
            event.ts_ms,
            {k: v for is_param, k, v in entries[a:b] if is_param},
            {k: v for is_param, k, v in entries[a:b] if not is_param},
        )
        for a, b in _bounds(len(entries), pieces)
    ]


def _update(event: RunStart | RunUpdate, ts_ms: int, params: dict[str, str], summary: dict[str, Any]) -> RunUpdate:
    return RunUpdate(
        producer_id=event.producer_id,
        seq=event.seq,
        rank=event.rank,
        run=event.run,
        ts_ms=ts_ms,
        params=params,
        summary=summary,
    )
