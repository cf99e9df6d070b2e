"""JSON Schema export of the v1 events, for producers written in other languages."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import msgspec

from runstream_core.events import SCHEMA_VERSION, Event

JSON_DIR = Path(__file__).parent / "json"


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


def event_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of one event record."""
    (schema,), components = msgspec.json.schema_components([Event], ref_template="#/$defs/{name}")
    schema, components = _clean_descriptions(schema), _clean_descriptions(components)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://runstream.dev/schemas/v{SCHEMA_VERSION}/event.json",
        "title": f"runstream event v{SCHEMA_VERSION}",
        "description": "One Kafka record value, MessagePack-encoded on the wire; field 'type' names the kind.",
        **schema,
        "$defs": components,
    }


def render() -> str:
    """Deterministic text of the exported schema."""
    return json.dumps(event_schema(), indent=2, sort_keys=True) + "\n"


def export_path() -> Path:
    return JSON_DIR / f"event.v{SCHEMA_VERSION}.schema.json"


def write() -> Path:
    path = export_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    return path
