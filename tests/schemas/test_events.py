"""Event schema v1: round trips, validation messages, and the JSON Schema export."""

from __future__ import annotations

import json

import jsonschema
import msgspec
import pytest

from runstream_schemas import json_schema
from runstream_schemas.events import (
    Heartbeat,
    MetricBatch,
    RunEnd,
    RunInfo,
    RunStart,
    RunStatus,
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
    assert json_schema.export_path().read_text() == json_schema.render()


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
