"""Decoding one batch of Kafka records into events, a pure step: bad records and repeats set aside.

Which events a record may hold is the core topics table's (``runstream_core.topics``): a record
whose topic is not one of the pipeline's, or whose event its topic does not carry, is rejected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import msgspec

from runstream_core.events import APPEND_ONLY_EVENTS, Event, decode_event
from runstream_core.topics import Topics
from runstream_worker.rows import RowBatch, to_rows
from runstream_worker.tables.runs import LiveFields

RecordId = tuple[str, int]
"""(producer id, sequence number): names one record of one producer, whatever its Kafka offset."""


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
    """Valid events of a batch in offset order, and the records set aside."""

    events: list[Event] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    records: int = 0
    replays: int = 0
    live: Mapping[str, LiveFields] = field(default_factory=dict)
    """Liveness of the batch's runs, for their rows; set before ``rows`` is first read."""

    def record_ids(self) -> set[RecordId]:
        """Ids of the append-only events, whose repeats would double rows."""
        return {(e.producer_id, e.seq) for e in self.events if isinstance(e, APPEND_ONLY_EVENTS) and e.producer_id}

    def record_runs(self) -> set[tuple[str, str, str]]:
        """(team, project, run id) of the append-only events."""
        return {(e.team, e.project, e.run_id) for e in self.events if isinstance(e, APPEND_ONLY_EVENTS)}

    def drop_replays(self, stored: set[RecordId]) -> None:
        """Drop append-only events whose record is already stored."""
        if not stored:
            return
        kept = [e for e in self.events if not (isinstance(e, APPEND_ONLY_EVENTS) and (e.producer_id, e.seq) in stored)]
        self.replays += len(self.events) - len(kept)
        self.events = kept
        self.__dict__.pop("rows", None)

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
    return out


def dedup_token(records: Sequence[SourceRecord]) -> str:
    """A stable name for exactly this set of source offsets."""
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        digest.update(f"{record.topic}/{record.partition}/{record.offset};".encode())
    return digest.hexdigest()
