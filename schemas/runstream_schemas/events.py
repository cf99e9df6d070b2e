"""Wire format v1 of every event a training job publishes.

Records are MessagePack-encoded tagged structs (field ``type`` names the kind, ``v`` the schema
version). Metric points travel column-wise, many per record, so that the worker can hand whole
columns to ClickHouse without touching individual points in Python.
"""

from __future__ import annotations

import enum
from typing import Annotated, Final

import msgspec

SCHEMA_VERSION: Final = 1

# Bounds that keep one bad producer from hurting the pipeline; validated on decode.
MAX_NAME_LEN: Final = 256
MAX_KEY_LEN: Final = 256
MAX_POINTS_PER_BATCH: Final = 100_000

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LEN)]
OptionalName = Annotated[str, msgspec.Meta(max_length=MAX_NAME_LEN)]
RUN_ID_PATTERN: Final = r"^[A-Za-z0-9_.\-]{1,128}$"
RunId = Annotated[str, msgspec.Meta(pattern=RUN_ID_PATTERN)]
MetricKey = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KEY_LEN)]
EpochMs = Annotated[int, msgspec.Meta(ge=0)]
PRODUCER_ID_PATTERN: Final = r"^[A-Za-z0-9_\-]{0,64}$"
ProducerId = Annotated[str, msgspec.Meta(pattern=PRODUCER_ID_PATTERN)]
Rank = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]


class RunStatus(enum.StrEnum):
    """Lifecycle state of a run, as stored in ``runs.status``."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    KILLED = "killed"
    CRASHED = "crashed"


class RunInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Identity of a run; repeated in lifecycle events so each one alone can rebuild the run row."""

    run_id: RunId
    team: Name
    project: Name
    user: OptionalName = ""
    name: OptionalName = ""
    group: OptionalName = ""
    host: OptionalName = ""
    git_commit: OptionalName = ""
    tags: dict[str, str] = {}
    started_at_ms: EpochMs = 0
    world_size: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1


class _Envelope(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every event carries: schema version, producer id, per-producer sequence number and rank.

    ``producer_id`` + ``seq`` identify a record uniquely, so replays can be recognised downstream.
    ``rank`` is the process's rank in a distributed job (0 for single-process runs).
    """

    v: int = SCHEMA_VERSION
    producer_id: ProducerId = ""
    seq: Annotated[int, msgspec.Meta(ge=0)] = 0
    rank: Rank = 0


class RunStart(_Envelope, frozen=True, kw_only=True, tag="run_start"):
    """A run began (or resumed). ``params`` is the flattened config, values rendered as strings."""

    run: RunInfo
    params: dict[str, str] = {}
    resumed_at_ms: EpochMs = 0
    """Set when a run is resumed: the new start outranks the earlier end in ``runs``."""


class RunUpdate(_Envelope, frozen=True, kw_only=True, tag="run_update"):
    """Params, tags (inside ``run``) or summary values set while the run is going.

    ``summary`` holds explicit run summary values (``run.summary["best_acc"] = 0.93``), numbers or text.
    """

    run: RunInfo
    ts_ms: EpochMs
    params: dict[str, str] = {}
    summary: dict[str, float | str] = {}


class RunEnd(_Envelope, frozen=True, kw_only=True, tag="run_end"):
    """A run ended with a final status."""

    run: RunInfo
    status: RunStatus
    ended_at_ms: EpochMs
    step: int = -1
    """The last step logged (-1 if none)."""


class Heartbeat(_Envelope, frozen=True, kw_only=True, tag="heartbeat"):
    """The run's process is alive; ``step`` is the last step it logged (-1 before any)."""

    run: RunInfo
    ts_ms: EpochMs
    step: int = -1


class MetricBatch(_Envelope, frozen=True, kw_only=True, tag="metric_batch"):
    """Many metric points of one run, column-wise: point ``i`` is (keys[i], steps[i], ts_ms[i], values[i])."""

    run_id: RunId
    team: Name
    project: Name
    keys: list[MetricKey]
    steps: list[int]
    ts_ms: list[EpochMs]
    values: list[float]

    def __post_init__(self) -> None:
        n = len(self.keys)
        if not (len(self.steps) == len(self.ts_ms) == len(self.values) == n):
            raise ValueError("metric batch columns differ in length")
        if n > MAX_POINTS_PER_BATCH:
            raise ValueError(f"metric batch holds {n} points, over the limit of {MAX_POINTS_PER_BATCH}")


class HardwareBatch(_Envelope, frozen=True, kw_only=True, tag="hardware_batch"):
    """Hardware readings of one process or node, column-wise: reading ``i`` is
    (ts_ms[i], keys[i], devices[i], values[i]). Keys are listed in ``runstream_schemas.hardware_keys``;
    ``devices`` is "" for host-wide readings and ``gpu<N>`` (NVML index) for a GPU.
    ``interval_ms`` is the sampling interval, so that GPU-hours can be summed from samples.
    """

    run_id: RunId
    team: Name
    project: Name
    host: OptionalName = ""
    user: OptionalName = ""
    interval_ms: Annotated[int, msgspec.Meta(ge=0)] = 0
    ts_ms: list[EpochMs]
    keys: list[MetricKey]
    devices: list[Annotated[str, msgspec.Meta(max_length=64)]]
    values: list[float]

    def __post_init__(self) -> None:
        n = len(self.keys)
        if not (len(self.ts_ms) == len(self.devices) == len(self.values) == n):
            raise ValueError("hardware batch columns differ in length")
        if n > MAX_POINTS_PER_BATCH:
            raise ValueError(f"hardware batch holds {n} readings, over the limit of {MAX_POINTS_PER_BATCH}")


Event = RunStart | RunUpdate | RunEnd | Heartbeat | MetricBatch | HardwareBatch
LIFECYCLE_EVENTS: Final = (RunStart, RunUpdate, RunEnd, Heartbeat)
# Events stored as rows that would be doubled by a replay; the worker drops repeats of these.
APPEND_ONLY_EVENTS: Final = (MetricBatch, HardwareBatch)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Event)


def encode_event(event: Event) -> bytes:
    """Encode an event for a Kafka record value."""
    return _encoder.encode(event)


def decode_event(payload: bytes) -> Event:
    """Decode and validate one record value.

    Raises ``msgspec.DecodeError`` / ``msgspec.ValidationError`` (both ``msgspec.MsgspecError``)
    with a message that names the offending field.
    """
    event: Event = _decoder.decode(payload)
    if event.v != SCHEMA_VERSION:
        raise msgspec.ValidationError(f"unsupported schema version {event.v}, expected {SCHEMA_VERSION}")
    return event
