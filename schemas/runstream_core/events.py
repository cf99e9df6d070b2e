"""The events a training job publishes: the wire format (docs/wire-format.md).

Records are MessagePack-encoded tagged structs (field ``type`` names the kind, ``v`` its schema
version). Metric points travel column-wise, many per record, so that the worker can hand whole
columns to ClickHouse without touching individual points in Python. Lifecycle events and the list
batches (``metric_batch``, ``hardware_batch``) are v1; the binary-column batches
(``metric_columns``, ``hardware_columns``) are v2: fixed-size little-endian items in MessagePack
``bin`` fields, which a consumer reads as arrays without decoding a value per point
(``runstream_core.columns`` reads and writes them in plain Python).
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Final

import msgspec

from runstream_core.team_access import TEAM_NAME_PATTERN

SCHEMA_VERSION: Final = 1
"""``v`` of lifecycle events and of the list batches ``metric_batch`` and ``hardware_batch``."""
COLUMNS_VERSION: Final = 2
"""``v`` of the binary-column batches ``metric_columns`` and ``hardware_columns``."""
WIRE_VERSIONS: Final = (SCHEMA_VERSION, COLUMNS_VERSION)

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

# The binary columns of v2 batches: little-endian items of a fixed size, written in numpy's
# array-protocol notation (the worker hands these to numpy.frombuffer as they are). Each column
# holds one item per point.
VALUES_TYPE: Final = "<f8"
"""IEEE-754 binary64: ints travel converted, bools as 0 and 1, NaN (with its payload) and +/-inf as they are."""
STEPS_TYPE: Final = "<i8"
TS_OFFSETS_TYPE: Final = "<u4"
"""A point's time is ``ts_base_ms`` plus its offset."""
IDS_TYPE: Final = "<u2"
"""An index into the batch's ``keys`` (or ``devices``): dictionary encoding, each distinct name sent once."""


def item_size(column_type: str) -> int:
    """Bytes per item of a binary column type (``"<f8"`` -> 8)."""
    return int(column_type[2:])


MAX_TS_OFFSET_MS: Final[int] = 2 ** (8 * item_size(TS_OFFSETS_TYPE)) - 1
"""A v2 batch's points lie within about 49.7 days of each other; a producer cuts a batch that spans more."""
MAX_KEYS_PER_BATCH: Final[int] = 2 ** (8 * item_size(IDS_TYPE))
"""Distinct keys (and devices) of one v2 batch: every id fits in a uint16."""


def _column_meta(column_type: str, what: str) -> msgspec.Meta:
    size = item_size(column_type)
    kind = {"f": "IEEE-754 binary", "i": "int", "u": "uint"}[column_type[1]]
    return msgspec.Meta(
        max_length=MAX_POINTS_PER_BATCH * size,
        description=f"MessagePack bin: per point, a little-endian {kind}{size * 8} ({size} bytes): {what}.",
    )


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
KeyDictionary = Annotated[
    list[MetricKey],
    msgspec.Meta(
        max_length=MAX_KEYS_PER_BATCH, description="Each distinct key once; key_ids index into this list, from 0."
    ),
]
DeviceDictionary = Annotated[
    list[Device],
    msgspec.Meta(
        max_length=MAX_KEYS_PER_BATCH, description="Each distinct device once; device_ids index into this list, from 0."
    ),
]
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH_MS)]
Step = Annotated[int, msgspec.Meta(ge=0, le=MAX_STEP)]
LastStep = Annotated[int, msgspec.Meta(ge=-1, le=MAX_STEP)]
"""A run's last step, or -1 before any."""
PRODUCER_ID_PATTERN: Final = r"^[A-Za-z0-9_\-]{0,64}$(?!\n)"
ProducerId = Annotated[str, msgspec.Meta(pattern=PRODUCER_ID_PATTERN)]
Rank = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
# v2's binary columns: MessagePack bin, each at most a full batch of items (layout in the descriptions).
KeyIds = Annotated[bytes, _column_meta(IDS_TYPE, "the point's key as an index into keys")]
DeviceIds = Annotated[bytes, _column_meta(IDS_TYPE, "the reading's device as an index into devices")]
StepColumn = Annotated[bytes, _column_meta(STEPS_TYPE, f"the point's step, 0 to {MAX_STEP}")]
TsOffsetColumn = Annotated[
    bytes,
    _column_meta(
        TS_OFFSETS_TYPE, f"the point's time minus ts_base_ms in milliseconds (their sum is at most {MAX_EPOCH_MS})"
    ),
]
ValueColumn = Annotated[bytes, _column_meta(VALUES_TYPE, "the point's value, NaN and infinities as they are")]
TsBase = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=MAX_EPOCH_MS,
        description="Epoch milliseconds that every point's offset is added to; producers send the earliest time.",
    ),
]
ColumnsVersion = Annotated[int, msgspec.Meta(extra_json_schema={"const": COLUMNS_VERSION})]


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


def _point_count(kind: str, columns: tuple[tuple[str, bytes, str], ...]) -> int:
    """The points of a v2 batch's binary columns, after checking each holds whole items and all hold as many."""
    counts: dict[str, int] = {}
    for name, data, column_type in columns:
        size = item_size(column_type)
        if len(data) % size:
            raise ValueError(f"{name} holds {len(data)} bytes, not a whole number of {size}-byte items")
        counts[name] = len(data) // size
    n = counts[columns[0][0]]
    if any(count != n for count in counts.values()):
        listed = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise ValueError(f"{kind} columns differ in length: {listed} points")
    if n > MAX_POINTS_PER_BATCH:
        raise ValueError(f"{kind} columns hold {n} points, over the limit of {MAX_POINTS_PER_BATCH}")
    return n


def _check_dictionary(what: str, field: str, names: list[str]) -> None:
    """A dictionary lists each name once (ids would be ambiguous otherwise), none with a control character."""
    if len(set(names)) != len(names):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"{field} lists {name[:64]!r} twice: a dictionary lists each {what} once")
            seen.add(name)
    _check_labels(what, names)


class MetricColumns(_Envelope, frozen=True, kw_only=True, tag="metric_columns"):
    """Many metric points of one run as binary columns (wire format v2): point ``i`` is
    (keys[key_ids[i]], steps[i], ts_base_ms + ts_offsets_ms[i], values[i]).

    Each column is MessagePack bin holding one fixed-size little-endian item per point, so a consumer
    reads it as an array (numpy.frombuffer, Go's encoding/binary) without a value per point to decode.
    Decoding checks the columns' lengths and the dictionary; reading the columns checks the points:
    every id below the number of keys, every step at least 0, and ts_base_ms plus every offset at
    most the last instant of 2299 (``runstream_core.columns.check_column_bounds``).
    """

    v: ColumnsVersion = COLUMNS_VERSION
    run_id: RunId
    team: TeamName
    project: Name
    keys: KeyDictionary
    key_ids: KeyIds
    steps: StepColumn
    ts_base_ms: TsBase
    ts_offsets_ms: TsOffsetColumn
    values: ValueColumn

    def __post_init__(self) -> None:
        _point_count(
            "metric",
            (
                ("key_ids", self.key_ids, IDS_TYPE),
                ("steps", self.steps, STEPS_TYPE),
                ("ts_offsets_ms", self.ts_offsets_ms, TS_OFFSETS_TYPE),
                ("values", self.values, VALUES_TYPE),
            ),
        )
        _check_dictionary("metric key", "keys", self.keys)


class HardwareColumns(_Envelope, frozen=True, kw_only=True, tag="hardware_columns"):
    """Hardware readings of one process or node as binary columns (wire format v2): reading ``i`` is
    (ts_base_ms + ts_offsets_ms[i], keys[key_ids[i]], devices[device_ids[i]], values[i]); the rest as in
    ``HardwareBatch`` and the columns as in ``MetricColumns``.
    """

    v: ColumnsVersion = COLUMNS_VERSION
    run_id: RunId
    team: TeamName
    project: Name
    host: OptionalName = ""
    user: OptionalName = ""
    interval_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_INTERVAL_MS)] = 0
    ts_base_ms: TsBase
    ts_offsets_ms: TsOffsetColumn
    keys: KeyDictionary
    key_ids: KeyIds
    devices: DeviceDictionary
    device_ids: DeviceIds
    values: ValueColumn

    def __post_init__(self) -> None:
        _point_count(
            "hardware",
            (
                ("key_ids", self.key_ids, IDS_TYPE),
                ("device_ids", self.device_ids, IDS_TYPE),
                ("ts_offsets_ms", self.ts_offsets_ms, TS_OFFSETS_TYPE),
                ("values", self.values, VALUES_TYPE),
            ),
        )
        _check_dictionary("hardware key", "keys", self.keys)
        _check_dictionary("hardware device", "devices", self.devices)


Event = (
    RunStart | RunUpdate | RunEnd | Heartbeat | RunAlert | MetricBatch | HardwareBatch | MetricColumns | HardwareColumns
)
EventV1 = RunStart | RunUpdate | RunEnd | Heartbeat | RunAlert | MetricBatch | HardwareBatch
"""What a consumer of wire format v1 knows: every event but the binary-column batches."""
LIFECYCLE_EVENTS: Final = (RunStart, RunUpdate, RunEnd, Heartbeat, RunAlert)
COLUMN_EVENTS: Final = (MetricColumns, HardwareColumns)
"""The v2 batches; every other event is v1."""
# Events stored as rows that would be doubled by a replay; the worker drops repeats of these.
APPEND_ONLY_EVENTS: Final = (MetricBatch, HardwareBatch, MetricColumns, HardwareColumns)

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
    expected = COLUMNS_VERSION if isinstance(event, COLUMN_EVENTS) else SCHEMA_VERSION
    if event.v != expected:
        tag = type(event).__struct_config__.tag
        raise msgspec.ValidationError(f"unsupported schema version {event.v} for {tag}, expected {expected} - at `$.v`")
    return event
