"""Decoding one batch of Kafka records into events, a pure step: bad records and repeats set aside.

Which events a record may hold is the core topics table's (``runstream_core.topics``): a record
whose topic is not one of the pipeline's, or whose event its topic does not carry, is rejected.
Each event keeps the record it came from (``sources``), so that it can still be dead-lettered if the
store refuses it; ``dedup_token`` names a set of such records for ClickHouse's insert deduplication.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import msgspec
import numpy as np

from runstream_core.events import APPEND_ONLY_EVENTS, Event, HardwareBatch, MetricBatch, decode_event
from runstream_core.topics import Topics
from runstream_worker.rows import RowBatch, to_rows
from runstream_worker.tables import hardware, metrics
from runstream_worker.tables.runs import LiveFields, RunKey

RecordId = tuple[str, int]
"""(producer id, sequence number): names one record of one producer, whatever its Kafka offset."""


class StoredRows(NamedTuple):
    """Rows of one record found stored: in one partition (its id), under one insert token."""

    producer_id: str
    seq: int
    partition: int
    token: str
    rows: int


@dataclass(frozen=True)
class SourceRecord:
    """A Kafka record as the worker sees it."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None


@dataclass(frozen=True)
class Rejected:
    """A record that could not be stored, and why."""

    record: SourceRecord
    reason: str


@dataclass
class DecodedBatch:
    """Valid events of a batch in offset order, the record each came from, and the records set aside."""

    events: list[Event] = field(default_factory=list)
    sources: list[SourceRecord] = field(default_factory=list)
    """``sources[i]`` is the record ``events[i]`` was decoded from."""
    rejected: list[Rejected] = field(default_factory=list)
    records: int = 0
    replays: int = 0
    live: Mapping[RunKey, LiveFields] = field(default_factory=dict)
    """Liveness of the batch's runs, for their rows; set before ``rows`` is first read."""

    @cached_property
    def rows(self) -> RowBatch:
        """The rows of the events left (``to_rows``)."""
        return to_rows(self.events, self.live)


def decode_batch(records: Sequence[SourceRecord], topic_prefix: str) -> DecodedBatch:
    """Decode ``records`` (topics under ``topic_prefix``); each ends up as an event, in ``rejected``,
    or counted as a repeat within the batch."""
    topics = Topics(topic_prefix)
    carries: dict[str, tuple[type[Event], ...]] = {}
    out = DecodedBatch(records=len(records))
    seen: set[RecordId] = set()
    for record in records:
        if not record.value:
            out.rejected.append(Rejected(record, "empty record value"))
            continue
        try:
            event = decode_event(record.value)
        except msgspec.MsgspecError as exc:
            out.rejected.append(Rejected(record, f"invalid event: {exc}"))
            continue
        except ValueError as exc:  # raised by struct __post_init__ checks
            out.rejected.append(Rejected(record, f"invalid event: {exc}"))
            continue
        allowed = carries.get(record.topic)
        if allowed is None:
            topic = topics.find(record.topic)
            allowed = carries[record.topic] = topic.events if topic is not None else ()
        if not isinstance(event, allowed):
            out.rejected.append(
                Rejected(record, f"event type {type(event).__name__} does not belong on {record.topic}")
            )
            continue
        if isinstance(event, APPEND_ONLY_EVENTS) and event.producer_id:
            record_id = (event.producer_id, event.seq)
            if record_id in seen:
                out.replays += 1
                continue
            seen.add(record_id)
        out.events.append(event)
        out.sources.append(record)
    return out


def drop_stored(
    events: list[Event], sources: list[SourceRecord], found: Sequence[StoredRows]
) -> tuple[list[Event], list[SourceRecord], int]:
    """The events (and their sources) left once what ``found`` says is stored is taken out, and how
    many were dropped whole (replays).

    A record stored in full is dropped. One stored in some of its partitions only (a worker killed
    between the parts of one insert) keeps its points of the other partitions."""
    partitions: dict[RecordId, set[int]] = {}
    rows: Counter[RecordId] = Counter()
    for unit in found:
        record = (unit.producer_id, unit.seq)
        partitions.setdefault(record, set()).add(unit.partition)
        rows[record] += unit.rows
    kept_events: list[Event] = []
    kept_sources: list[SourceRecord] = []
    replays = 0
    for event, source in zip(events, sources, strict=True):
        record = (event.producer_id, event.seq)
        if not isinstance(event, APPEND_ONLY_EVENTS) or record not in partitions:
            kept_events.append(event)
            kept_sources.append(source)
        elif rows[record] >= len(event.keys):
            replays += 1
        else:
            table = metrics if isinstance(event, MetricBatch) else hardware
            keep = ~np.isin(table.partition_ids(event.ts_ms), sorted(partitions[record]))
            kept_events.append(_points_where(event, keep.tolist()))
            kept_sources.append(source)
    return kept_events, kept_sources, replays


def _points_where(event: MetricBatch | HardwareBatch, keep: list[bool]) -> Event:
    """``event`` with only the points where ``keep`` is true."""

    def pick(column: list[Any]) -> list[Any]:
        return [value for value, k in zip(column, keep, strict=True) if k]

    if isinstance(event, MetricBatch):
        return msgspec.structs.replace(
            event, keys=pick(event.keys), steps=pick(event.steps), ts_ms=pick(event.ts_ms), values=pick(event.values)
        )
    return msgspec.structs.replace(
        event, keys=pick(event.keys), devices=pick(event.devices), ts_ms=pick(event.ts_ms), values=pick(event.values)
    )


def dedup_token(sources: Sequence[SourceRecord], events: Sequence[Event], created_ms: int) -> str:
    """A name for exactly this set of records, for ClickHouse's insert deduplication.

    It covers each record's place in Kafka (topic, partition, offset) and its identity, the
    producer's (producer id, sequence number): a topic deleted and created again reuses offsets for
    other records, which must not be taken for the ones stored. ``created_ms`` (the worker's clock
    when the token was made) ends it after ``@``: ``token_created_ms`` reads it back from a stored
    token, to tell whether ClickHouse still remembers it (see ``runner``)."""
    digest = hashlib.sha256()
    for record, event in sorted(
        zip(sources, events, strict=True), key=lambda p: (p[0].topic, p[0].partition, p[0].offset)
    ):
        digest.update(f"{record.topic}/{record.partition}/{record.offset}/{event.producer_id}/{event.seq};".encode())
    return f"{digest.hexdigest()[:40]}@{created_ms}"


def token_created_ms(token: str) -> int | None:
    """When a token made by ``dedup_token`` was made, also from a token derived from it
    (``<table>:<token>[:<partitions>]``, as the sink stores them); None for any other string."""
    _, at, rest = token.partition("@")
    digits = rest.split(":", 1)[0]
    return int(digits) if at and digits.isdigit() else None
