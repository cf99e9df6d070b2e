"""Wire format v1 of every event a training job publishes.

Records are MessagePack-encoded tagged structs (field ``type`` names the kind, ``v`` the schema
version). Metric points travel column-wise, many per record, so that the worker can hand whole
columns to ClickHouse without touching individual points in Python.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Final

import msgspec

from runstream_core.team_access import TEAM_NAME_PATTERN

SCHEMA_VERSION: Final = 1

# Bounds that keep one bad producer from hurting the pipeline; validated on decode, shown in the
# JSON Schema, and applied by the SDK before anything is sent. Each numeric bound is the range of
# the ClickHouse column the field is stored in (Int64 steps, UInt32 intervals, DateTime64(3) times).
MAX_NAME_LEN: Final = 256
MAX_KEY_LEN: Final = 256
MAX_LABEL_LEN: Final = 1024
"""Tag values."""
MAX_TEXT_LEN: Final = 65_536
"""Param values and summary text."""
MAX_POINTS_PER_BATCH: Final = 100_000
MAX_TAGS: Final = 256
MAX_PARAMS: Final = 10_000
MAX_SUMMARY: Final = 1_000
MAX_STEP: Final = 2**63 - 1
MAX_SEQ: Final = 2**63 - 1
MAX_EPOCH_MS: Final = 10_413_791_999_999
"""2299-12-31T23:59:59.999Z, the last instant ClickHouse's DateTime64(3) holds."""
MAX_INTERVAL_MS: Final = 86_400_000

# Names that label things (team, project, run name, group, user, host, metric, param and tag keys,
# tag values, hardware keys and devices) hold no control character: C0 (U+0000-U+001F), DEL
# (U+007F) or C1 (U+0080-U+009F). Anything else, quotes and backslashes included, is allowed; the
# dashboards never put a name into SQL as it is. The pattern ends in ``(?!\n)`` because Python's
# ``$`` also matches just before a final line break, which would let that one through.
CONTROL_CHARACTERS: Final = r"\x00-\x1f\x7f-\x9f"
NO_CONTROL_PATTERN: Final = rf"^[^{CONTROL_CHARACTERS}]*$(?!\n)"
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")
_ASCII_CONTROL = bytes([*range(0x20), 0x7F])

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LEN, pattern=NO_CONTROL_PATTERN)]
# A team name is the row filter of team isolation and part of user and setting names: one rule
# everywhere (teams.yaml, the SDK, the worker), lowercase identifier characters only.
# (``(?!\n)``: Python's ``$`` also matches just before a final line break.)
TEAM_NAME_WIRE_PATTERN: Final = rf"{TEAM_NAME_PATTERN}(?!\n)"
TeamName = Annotated[str, msgspec.Meta(pattern=TEAM_NAME_WIRE_PATTERN)]
OptionalName = Annotated[str, msgspec.Meta(max_length=MAX_NAME_LEN, pattern=NO_CONTROL_PATTERN)]
# Param keys, tag keys and tag values: bounded, no control character.
Label = Annotated[str, msgspec.Meta(max_length=MAX_KEY_LEN, pattern=NO_CONTROL_PATTERN)]
TagValue = Annotated[str, msgspec.Meta(max_length=MAX_LABEL_LEN, pattern=NO_CONTROL_PATTERN)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_LEN)]
# A run id names a directory of the SDK's: ``.`` and ``..`` are not ids.
RUN_ID_PATTERN: Final = r"^(?!\.{1,2}$)[A-Za-z0-9_.\-]{1,128}$(?!\n)"
RunId = Annotated[str, msgspec.Meta(pattern=RUN_ID_PATTERN)]
# Keys and devices of point batches repeat: they are checked once per distinct value, in the batch's
# __post_init__, rather than by a pattern on every element (5x slower to decode); the pattern
# still documents the bound in the JSON Schema.
MetricKey = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=MAX_KEY_LEN, extra_json_schema={"pattern": NO_CONTROL_PATTERN}),
]
Device = Annotated[str, msgspec.Meta(max_length=64, extra_json_schema={"pattern": NO_CONTROL_PATTERN})]
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH_MS)]
Step = Annotated[int, msgspec.Meta(ge=0, le=MAX_STEP)]
LastStep = Annotated[int, msgspec.Meta(ge=-1, le=MAX_STEP)]
"""A run's last step, or -1 before any."""
PRODUCER_ID_PATTERN: Final = r"^[A-Za-z0-9_\-]{0,64}$(?!\n)"
ProducerId = Annotated[str, msgspec.Meta(pattern=PRODUCER_ID_PATTERN)]
Rank = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]


def control_character(text: str) -> str | None:
    """The first control character in ``text``, or None."""
    found = _CONTROL.search(text)
    return found.group() if found else None


def _check_labels(what: str, values: list[str]) -> None:
    """Raise ValueError naming the first of ``values`` that holds a control character.

    Every value is looked at once: joined, and when all ASCII (the usual case) checked by bytes.translate
    at C speed; otherwise each distinct value (keys repeat across a batch's points) is searched.
    """
    joined = "".join(values)
    if joined.isascii():
        raw = joined.encode("ascii")
        if len(raw.translate(None, _ASCII_CONTROL)) == len(raw):
            return
    elif _CONTROL.search("".join(set(values))) is None:
        return
    for value in values:
        char = control_character(value)
        if char is not None:
            raise ValueError(f"{what} {value[:64]!r} holds control character U+{ord(char):04X}")


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
    team: TeamName
    project: Name
    user: OptionalName = ""
    name: OptionalName = ""
    group: OptionalName = ""
    host: OptionalName = ""
    git_commit: OptionalName = ""
    tags: Annotated[dict[Label, TagValue], msgspec.Meta(max_length=MAX_TAGS)] = {}
    started_at_ms: EpochMs = 0
    world_size: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1


class _Envelope(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every event carries: schema version, producer id, per-producer sequence number and rank.

    ``producer_id`` + ``seq`` identify a record uniquely, so replays can be recognised downstream.
    ``rank`` is the process's rank in a distributed job (0 for single-process runs).
    """

    v: int = SCHEMA_VERSION
    producer_id: ProducerId = ""
    seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] = 0
    rank: Rank = 0


class RunStart(_Envelope, frozen=True, kw_only=True, tag="run_start"):
    """A run began (or resumed). ``params`` is the flattened config, values rendered as strings."""

    run: RunInfo
    params: Annotated[dict[Label, Text], msgspec.Meta(max_length=MAX_PARAMS)] = {}
    resumed_at_ms: EpochMs = 0
    """Set when a run is resumed: the new start outranks the earlier end in ``runs``."""


class RunUpdate(_Envelope, frozen=True, kw_only=True, tag="run_update"):
    """Params, tags (inside ``run``) or summary values set while the run is going.

    ``summary`` holds explicit run summary values (``run.summary["best_acc"] = 0.93``), numbers or text.
    """

    run: RunInfo
    ts_ms: EpochMs
    params: Annotated[dict[Label, Text], msgspec.Meta(max_length=MAX_PARAMS)] = {}
    summary: Annotated[dict[Label, float | Text], msgspec.Meta(max_length=MAX_SUMMARY)] = {}


class RunEnd(_Envelope, frozen=True, kw_only=True, tag="run_end"):
    """A run ended with a final status."""

    run: RunInfo
    status: RunStatus
    ended_at_ms: EpochMs
    step: LastStep = -1
    """The last step logged (-1 if none)."""


class Heartbeat(_Envelope, frozen=True, kw_only=True, tag="heartbeat"):
    """The run's process is alive; ``step`` is the last step it logged (-1 before any)."""

    run: RunInfo
    ts_ms: EpochMs
    step: LastStep = -1


class AlertLevel(enum.StrEnum):
    """How loud an alert is (W&B's ``AlertLevel``)."""

    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


MAX_ALERT_TEXT_LEN: Final = 16_384


class RunAlert(_Envelope, frozen=True, kw_only=True, tag="run_alert"):
    """An alert the job raised itself (``run.alert()``); the worker stores it and routes it by the
    team's ``run_alert`` rules. ``wait_duration`` is applied by the SDK, before sending."""

    run: RunInfo
    ts_ms: EpochMs
    title: Name
    text: Annotated[str, msgspec.Meta(max_length=MAX_ALERT_TEXT_LEN)] = ""
    level: AlertLevel = AlertLevel.INFO


class MetricBatch(_Envelope, frozen=True, kw_only=True, tag="metric_batch"):
    """Many metric points of one run, column-wise: point ``i`` is (keys[i], steps[i], ts_ms[i], values[i])."""

    run_id: RunId
    team: TeamName
    project: Name
    keys: list[MetricKey]
    steps: list[Step]
    ts_ms: list[EpochMs]
    values: list[float]

    def __post_init__(self) -> None:
        n = len(self.keys)
        if not (len(self.steps) == len(self.ts_ms) == len(self.values) == n):
            raise ValueError("metric batch columns differ in length")
        if n > MAX_POINTS_PER_BATCH:
            raise ValueError(f"metric batch holds {n} points, over the limit of {MAX_POINTS_PER_BATCH}")
        _check_labels("metric key", self.keys)


class HardwareBatch(_Envelope, frozen=True, kw_only=True, tag="hardware_batch"):
    """Hardware readings of one process or node, column-wise: reading ``i`` is
    (ts_ms[i], keys[i], devices[i], values[i]). Keys are listed in ``runstream_core.hardware_keys``;
    ``devices`` is "" for host-wide readings and ``gpu<N>`` (NVML index) for a GPU.
    ``interval_ms`` is the sampling interval, so that GPU-hours can be summed from samples.
    """

    run_id: RunId
    team: TeamName
    project: Name
    host: OptionalName = ""
    user: OptionalName = ""
    interval_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_INTERVAL_MS)] = 0
    ts_ms: list[EpochMs]
    keys: list[MetricKey]
    devices: list[Device]
    values: list[float]

    def __post_init__(self) -> None:
        n = len(self.keys)
        if not (len(self.ts_ms) == len(self.devices) == len(self.values) == n):
            raise ValueError("hardware batch columns differ in length")
        if n > MAX_POINTS_PER_BATCH:
            raise ValueError(f"hardware batch holds {n} readings, over the limit of {MAX_POINTS_PER_BATCH}")
        _check_labels("hardware key", self.keys)
        _check_labels("hardware device", self.devices)


Event = RunStart | RunUpdate | RunEnd | Heartbeat | RunAlert | MetricBatch | HardwareBatch
LIFECYCLE_EVENTS: Final = (RunStart, RunUpdate, RunEnd, Heartbeat, RunAlert)
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
