"""Event schemas (v1) and ClickHouse migrations: the one source of truth for the wire format.

Installed as ``runstream_core``. Every event is a msgspec struct, encoded as MessagePack on Kafka,
with a JSON Schema export (``schemas/json/``) for producers written in other languages.
"""

from runstream_core.events import (
    SCHEMA_VERSION,
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

__all__ = [
    "SCHEMA_VERSION",
    "Event",
    "HardwareBatch",
    "Heartbeat",
    "MetricBatch",
    "RunEnd",
    "RunInfo",
    "RunStart",
    "RunStatus",
    "RunUpdate",
    "decode_event",
    "encode_event",
]
