"""JSON Schema export of the events, one file per wire format version, for producers and consumers
written in other languages.

``event.v2.schema.json`` describes every record value a v2 consumer reads: the v1 events, which it
still accepts, and the v2 binary-column batches, whose bytes fields are MessagePack bin (base64 in
JSON) with their layout in the descriptions (docs/wire-format.md). ``event.v1.schema.json`` is what
a v1 consumer knows, unchanged.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import msgspec

from runstream_core.events import COLUMNS_VERSION, SCHEMA_VERSION, Event, EventV1

JSON_DIR = Path(__file__).parent / "json"
LATEST = COLUMNS_VERSION
_UNIONS: dict[int, Any] = {SCHEMA_VERSION: EventV1, COLUMNS_VERSION: Event}
_DESCRIPTIONS = {
    SCHEMA_VERSION: "One Kafka record value, MessagePack-encoded on the wire; field 'type' names the kind.",
    COLUMNS_VERSION: "One Kafka record value, MessagePack-encoded on the wire; field 'type' names the kind and "
    "'v' its version (2 for metric_columns and hardware_columns, 1 for every other kind). Fields of type string "
    "with contentEncoding base64 are MessagePack bin on the wire: little-endian binary columns, one fixed-size "
    "item per point (docs/wire-format.md).",
}
VERSIONS = tuple(_UNIONS)


def _clean_descriptions(node: Any) -> Any:
    """Docstrings as ``inspect.cleandoc`` gives them: msgspec releases differ in how they indent them."""
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value)
            if key == "description" and isinstance(value, str)
            else _clean_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_clean_descriptions(item) for item in node]
    return node


def event_schema(version: int = LATEST) -> dict[str, Any]:
    """The JSON Schema (2020-12) of one event record of wire format ``version``."""
    (schema,), components = msgspec.json.schema_components([_UNIONS[version]], ref_template="#/$defs/{name}")
    schema, components = _clean_descriptions(schema), _clean_descriptions(components)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://runstream.dev/schemas/v{version}/event.json",
        "title": f"runstream event v{version}",
        "description": _DESCRIPTIONS[version],
        **schema,
        "$defs": components,
    }


def render(version: int = LATEST) -> str:
    """Deterministic text of the exported schema."""
    return json.dumps(event_schema(version), indent=2, sort_keys=True) + "\n"


def export_path(version: int = LATEST) -> Path:
    return JSON_DIR / f"event.v{version}.schema.json"


def stale() -> list[Path]:
    """The exported files that differ from the structs (or are missing)."""
    return [
        export_path(version)
        for version in VERSIONS
        if not export_path(version).exists() or export_path(version).read_text() != render(version)
    ]


def write() -> list[Path]:
    """Write every version's file."""
    JSON_DIR.mkdir(parents=True, exist_ok=True)
    for version in VERSIONS:
        export_path(version).write_text(render(version))
    return [export_path(version) for version in VERSIONS]
