"""Event schema v1: round trips, validation messages, and the JSON Schema export."""

from __future__ import annotations

import json

import jsonschema
import msgspec
import pytest

from runstream_core import json_schema
from runstream_core.columns import to_columns
from runstream_core.events import (
    NO_CONTROL_PATTERN,
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

INFO = RunInfo(
    run_id="abc123",
    team="vision",
    project="resnet",
    user="ada",
    name="baseline",
    group="sweep-1",
    host="gpu-7",
    git_commit="f" * 40,
    tags={"dataset": "imagenet", "baseline": ""},
    started_at_ms=1_700_000_000_000,
)

EVENTS = [
    RunStart(producer_id="p1", seq=0, run=INFO, params={"optimizer.lr": "0.1"}),
    MetricBatch(
        producer_id="p1",
        seq=1,
        run_id="abc123",
        team="vision",
        project="resnet",
        keys=["loss", "acc"],
        steps=[3, 3],
        ts_ms=[1, 2],
        values=[float("nan"), float("inf")],
    ),
    Heartbeat(producer_id="p1", seq=2, run=INFO, ts_ms=5, step=3),
    RunEnd(producer_id="p1", seq=3, run=INFO, status=RunStatus.FAILED, ended_at_ms=9),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_round_trips(event: object) -> None:
    decoded = decode_event(encode_event(event))  # type: ignore[arg-type]
    assert type(decoded) is type(event)
    assert encode_event(decoded) == encode_event(event)  # bytes, since NaN != NaN


def test_non_finite_values_survive_encoding() -> None:
    decoded = decode_event(encode_event(EVENTS[1]))
    assert isinstance(decoded, MetricBatch)
    assert str(decoded.values) == "[nan, inf]"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"type": "metric_batch", "run_id": "r", "team": "t"}, "Object missing required field"),
        ({"type": "nope"}, "Invalid value 'nope' - at `$.type`"),
        ({"type": "run_end", "run": msgspec.to_builtins(INFO), "status": "exploded", "ended_at_ms": 1}, "status"),
        ({"type": "heartbeat", "run": {**msgspec.to_builtins(INFO), "run_id": "bad id!"}, "ts_ms": 1}, "run_id"),
        ({"type": "heartbeat", "run": {**msgspec.to_builtins(INFO), "team": ""}, "ts_ms": 1}, "team"),
        ({"type": "heartbeat", "v": 2, "run": msgspec.to_builtins(INFO), "ts_ms": 1}, "unsupported schema version 2"),
    ],
)
def test_invalid_events_are_rejected_naming_the_problem(payload: dict[str, object], message: str) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        decode_event(msgspec.msgpack.encode(payload))
    assert message in str(info.value)


def test_metric_batch_columns_must_have_equal_length() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        MetricBatch(run_id="r", team="t", project="p", keys=["a"], steps=[], ts_ms=[1], values=[1.0])


def test_committed_json_schema_matches_the_structs() -> None:
    for version in json_schema.VERSIONS:
        assert json_schema.export_path(version).read_text() == json_schema.render(version)
    assert json_schema.stale() == []


def test_v2_schema_describes_the_binary_columns_and_v1_knows_none() -> None:
    v1, v2 = (jsonschema.Draft202012Validator(json.loads(json_schema.render(v))) for v in (1, 2))
    (columns,) = to_columns(EVENTS[1])
    as_json = json.loads(msgspec.json.encode(columns))  # bytes as base64, as the schema says
    v2.validate(as_json)
    assert not v1.is_valid(as_json)
    assert not v2.is_valid({**as_json, "v": 1})
    assert not v2.is_valid({**as_json, "key_ids": [0, 1]})  # a column is bin (a base64 string in JSON)
    for event in EVENTS[:1] + EVENTS[2:]:  # every v1 event is still a v2 consumer's
        v2.validate(json.loads(msgspec.json.encode(event)))
    values = json.loads(json_schema.render(2))["$defs"]["MetricColumns"]["properties"]["values"]
    assert values["contentEncoding"] == "base64" and "little-endian IEEE-754 binary64" in values["description"]


def test_json_schema_is_valid_and_accepts_real_events_and_rejects_bad_ones() -> None:
    schema = json.loads(json_schema.render())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for event in EVENTS[:1] + EVENTS[2:]:  # JSON has no NaN, so the metric batch is checked below
        validator.validate(json.loads(msgspec.json.encode(event)))
    finite = msgspec.structs.replace(EVENTS[1], values=[0.5, 1.5])
    validator.validate(json.loads(msgspec.json.encode(finite)))
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(
            {"type": "run_end", "run": msgspec.to_builtins(INFO), "status": "exploded", "ended_at_ms": 1}
        )


def test_schema_descriptions_are_cleaned_whatever_the_docstring_indentation() -> None:
    """msgspec 0.22 keeps a docstring's indentation and 0.23 strips it; the export must not care."""
    indented = {
        "description": "First line.\n    Second line,\n      indented more.",
        "properties": {"a": {"description": "\n    Only indented.\n"}},
        "anyOf": [{"description": "plain"}, {"title": "no description"}],
    }
    assert json_schema._clean_descriptions(indented) == {
        "description": "First line.\nSecond line,\n  indented more.",
        "properties": {"a": {"description": "Only indented."}},
        "anyOf": [{"description": "plain"}, {"title": "no description"}],
    }


# C0, DEL and C1 control characters; every other character is a valid part of a name.
CONTROL = ["\x00", "\n", "\r", "\t", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f"]
NOT_CONTROL = ["'", "\\", "\\'", "$$", "--", "{a}", "%2C", "*", "\xa0", "\u2028", "损失", "😀", " "]


def info(**fields: object) -> dict[str, object]:
    return {**msgspec.to_builtins(INFO), **fields}


def metric_batch(**fields: object) -> dict[str, object]:
    base = msgspec.to_builtins(EVENTS[1])
    return {**base, "values": [0.5, 1.5], **fields}


def hardware_batch(**fields: object) -> dict[str, object]:
    batch = HardwareBatch(
        run_id="abc123",
        team="vision",
        project="resnet",
        ts_ms=[1],
        keys=["gpu.utilization_percent"],
        devices=["gpu0"],
        values=[50.0],
        host="gpu-7",
    )
    return {**msgspec.to_builtins(batch), **fields}


def run_start(**fields: object) -> dict[str, object]:
    return {**msgspec.to_builtins(EVENTS[0]), **fields}


def run_update(**fields: object) -> dict[str, object]:
    return {**msgspec.to_builtins(RunUpdate(run=INFO, ts_ms=1)), **fields}


# Each labelled field, with ``{}`` standing for the text put there.
LABELLED = {
    "project": lambda t: run_start(run=info(project=t)),
    "run name": lambda t: run_start(run=info(name=f"run {t}")),
    "group": lambda t: run_start(run=info(group=t)),
    "user": lambda t: run_start(run=info(user=t)),
    "host": lambda t: run_start(run=info(host=t)),
    "tag key": lambda t: run_start(run=info(tags={f"k{t}": "v"})),
    "tag value": lambda t: run_start(run=info(tags={"k": f"v{t}"})),
    "param key": lambda t: run_start(params={f"lr{t}": "0.1"}),
    "param key (update)": lambda t: run_update(params={t: "0.1"}),
    "batch project": lambda t: metric_batch(project=t),
    "metric key": lambda t: metric_batch(keys=["loss", f"acc{t}"]),
    "hardware key": lambda t: hardware_batch(keys=[f"gpu{t}"]),
    "hardware device": lambda t: hardware_batch(devices=[f"gpu0{t}"]),
    "hardware host": lambda t: hardware_batch(host=t),
    "hardware user": lambda t: hardware_batch(user=t),
}


@pytest.mark.parametrize("field", sorted(LABELLED))
@pytest.mark.parametrize("char", CONTROL, ids=lambda c: f"U+{ord(c):04X}")
def test_names_with_control_characters_are_rejected(field: str, char: str) -> None:
    payload = msgspec.msgpack.encode(LABELLED[field](char))
    with pytest.raises((msgspec.ValidationError, ValueError)) as info:
        decode_event(payload)
    message = str(info.value)
    assert "control character" in message or f"matching regex {NO_CONTROL_PATTERN!r}" in message, message
    # At the end of the text too: a final line break gets no pass from the pattern's ``$``.
    with pytest.raises((msgspec.ValidationError, ValueError)):
        decode_event(msgspec.msgpack.encode(LABELLED[field](f"x{char}")))


def test_point_batches_name_the_key_and_the_character() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"metric key 'acc\\n' holds control character U\+000A"):
        decode_event(msgspec.msgpack.encode(metric_batch(keys=["loss", "acc\n"])))
    with pytest.raises(msgspec.ValidationError, match=r"hardware device 'gpu\\x85' holds control character U\+0085"):
        decode_event(msgspec.msgpack.encode(hardware_batch(devices=["gpu\x85"])))
    with pytest.raises(msgspec.ValidationError, match=r"metric key '损失\\x00' holds control character U\+0000"):
        decode_event(msgspec.msgpack.encode(metric_batch(keys=["损失", "损失\x00"])))


@pytest.mark.parametrize("field", sorted(LABELLED))
def test_names_with_any_other_character_are_accepted(field: str) -> None:
    for text in NOT_CONTROL:
        event = decode_event(msgspec.msgpack.encode(LABELLED[field](text)))
        assert encode_event(event) == msgspec.msgpack.encode(event)


def test_json_schema_refuses_control_characters_in_names() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(json_schema.render()))
    for field, build in LABELLED.items():
        for char in ("\n", "\x00", "\x85"):
            assert not validator.is_valid(json.loads(json.dumps(build(char)))), (field, char)
        assert validator.is_valid(json.loads(json.dumps(build("ok'\\{}")))), field


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "metric_batch", "steps": [2**63]}, "steps[0]"),
        ({"type": "metric_batch", "steps": [-5]}, "steps[0]"),
        ({"type": "metric_batch", "ts_ms": [2**53]}, "ts_ms[0]"),
        ({"type": "hardware_batch", "interval_ms": 2**32}, "interval_ms"),
        ({"type": "run_start", "run": {"started_at_ms": 2**53}}, "started_at_ms"),
        ({"type": "run_start", "params": {f"k{i}": "v" for i in range(10_001)}}, "params"),
        ({"type": "run_start", "params": {"k": "v" * 65_537}}, "params"),
        ({"type": "run_start", "run": {"tags": {f"t{i}": "" for i in range(257)}}}, "tags"),
        ({"type": "run_start", "run": {"tags": {"t": "v" * 1025}}}, "tags"),
        ({"type": "run_update", "summary": {f"s{i}": 1.0 for i in range(1001)}}, "summary"),
        ({"type": "heartbeat", "seq": 2**63}, "seq"),
    ],
)
def test_every_field_is_bounded(event: dict[str, object], field: str) -> None:
    """Values the store's columns cannot hold are refused on decode, naming the field."""
    run = {"run_id": "r", "team": "t", "project": "p"}
    bases: dict[str, dict[str, object]] = {
        "metric_batch": {
            "run_id": "r",
            "team": "t",
            "project": "p",
            "keys": ["k"],
            "steps": [0],
            "ts_ms": [1],
            "values": [1.0],
        },
        "hardware_batch": {
            "run_id": "r",
            "team": "t",
            "project": "p",
            "keys": ["k"],
            "devices": [""],
            "ts_ms": [1],
            "values": [1.0],
        },
        "run_start": {"run": run},
        "run_update": {"run": run, "ts_ms": 1},
        "heartbeat": {"run": run, "ts_ms": 1},
    }
    kind = str(event["type"])
    payload = {**bases[kind], **{k: v for k, v in event.items() if k != "run"}, "type": kind}
    if "run" in event:
        payload["run"] = {**run, **event["run"]}  # type: ignore[dict-item]
    with pytest.raises(msgspec.ValidationError) as info:
        decode_event(msgspec.msgpack.encode(payload))
    assert field.split("[", maxsplit=1)[0] in str(info.value)
    # The same event within the bounds decodes.
    decode_event(msgspec.msgpack.encode({**bases[kind], "type": kind}))


def test_the_json_schema_shows_the_bounds() -> None:
    defs = json.loads(json_schema.render())["$defs"]
    assert defs["MetricBatch"]["properties"]["steps"]["items"]["maximum"] == 2**63 - 1
    assert defs["HardwareBatch"]["properties"]["interval_ms"]["maximum"] == 86_400_000
    assert defs["RunInfo"]["properties"]["tags"]["maxProperties"] == 256
    assert defs["RunStart"]["properties"]["params"]["maxProperties"] == 10_000


@pytest.mark.parametrize("team", ["Vision", "vision team", "vision\n", "1vision", "", "v" * 33, "\\'", "a,b", "视觉"])
def test_team_names_follow_the_one_rule(team: str) -> None:
    """The team is the row filter of isolation: lowercase letters, digits, underscores (as teams.yaml)."""
    for build in (lambda: run_start(run=info(team=team)), lambda: metric_batch(team=team)):
        with pytest.raises(msgspec.ValidationError, match="team"):
            decode_event(msgspec.msgpack.encode(build()))
    assert decode_event(msgspec.msgpack.encode(metric_batch(team="vision_2")))


@pytest.mark.parametrize("run_id", ["..", ".", "abc\n", "a/b", "", "x" * 129])
def test_run_ids_that_are_no_name_for_a_directory_are_refused(run_id: str) -> None:
    with pytest.raises(msgspec.ValidationError, match="run_id"):
        decode_event(msgspec.msgpack.encode(metric_batch(run_id=run_id)))
    assert decode_event(msgspec.msgpack.encode(metric_batch(run_id="run-1.a_b")))
