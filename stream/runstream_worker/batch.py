"""Decoding one batch of Kafka records into rows, setting bad records aside with a reason."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import msgspec

from runstream_schemas.events import Event, Heartbeat, MetricBatch, RunEnd, RunStart, decode_event
from runstream_worker.rows import RowBatch


@dataclass(frozen=True)
class SourceRecord:
    """A Kafka record as the worker sees it."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass(frozen=True)
class Rejected:
    """A record that could not be stored, and why."""

    record: SourceRecord
    reason: str


@dataclass
class DecodedBatch:
    rows: RowBatch = field(default_factory=RowBatch)
    rejected: list[Rejected] = field(default_factory=list)
    heartbeats: int = 0
    records: int = 0


# Which event kinds each topic may carry (by topic suffix).
_ALLOWED: dict[str, tuple[type[Event], ...]] = {
    "runs": (RunStart, RunEnd, Heartbeat),
    "metrics": (MetricBatch,),
}


def decode_batch(records: list[SourceRecord], topic_prefix: str) -> DecodedBatch:
    """Decode ``records``; every record ends up either in the rows or in ``rejected``."""
    out = DecodedBatch(records=len(records))
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
        allowed = _ALLOWED.get(record.topic.removeprefix(topic_prefix), ())
        if not isinstance(event, allowed):
            out.rejected.append(
                Rejected(record, f"event type {type(event).__name__} does not belong on {record.topic}")
            )
            continue
        if isinstance(event, MetricBatch):
            out.rows.add_metrics(event)
        elif isinstance(event, RunStart):
            out.rows.add_run_start(event)
        elif isinstance(event, RunEnd):
            out.rows.add_run_end(event)
        else:
            out.heartbeats += 1
    return out


def dedup_token(records: list[SourceRecord]) -> str:
    """A stable name for exactly this set of source offsets."""
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        digest.update(f"{record.topic}/{record.partition}/{record.offset};".encode())
    return digest.hexdigest()
