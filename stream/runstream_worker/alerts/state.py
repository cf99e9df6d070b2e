"""What the alert engine keeps per run and per (rule, key), and how it is stored (JSON in
``alert_state``, one row per run and one per rule and key, newest wins)."""

from __future__ import annotations

import msgspec

RunKey = tuple[str, str, str]
"""(team, project, run id)."""

RUN_ENTRY = ""


class RunState(msgspec.Struct, kw_only=True):
    """A run as the alert engine knows it. Times named ``*_ms`` with ``seen`` or ``moved`` are the
    worker's clock; a producer's clock may be off by any amount."""

    group: str = ""
    tags: dict[str, str] = {}
    name: str = ""
    info_known: bool = False
    """Whether group and tags came from a lifecycle event or the ``runs`` table."""
    open: bool = True
    last_seen_ms: int = 0
    last_step: int = -1
    step_moved_ms: int = 0
    marks: dict[str, int] = {}
    """Per producer and topic (``producer/topic``): the highest sequence number evaluated; a
    record at or below it is a replay and is not evaluated again."""


class EntryState(msgspec.Struct, kw_only=True):
    """One rule on one key (metric key, GPU, or '' for run rules) of one run."""

    fingerprint: str
    """The rule's definition when this state began; a changed rule starts over."""
    window: list[float] = []
    firing: bool = False
    episode: int = 0
    notified: bool = False
    """Whether the current episode's alert was sent (not suppressed by ``wait_duration``)."""
    last_sent_ms: int = 0
    below_since_ms: int | None = None
    """gpu_idle: the time of the first reading of the current run of low ones (the readings' clock)."""


def entry_name(rule: str, subject: str) -> str:
    return f"{rule}/{subject}"


_encoder = msgspec.json.Encoder()
_run_decoder = msgspec.json.Decoder(RunState)
_entry_decoder = msgspec.json.Decoder(EntryState)


def encode(state: RunState | EntryState) -> str:
    return _encoder.encode(state).decode()


def decode_run(blob: str | bytes) -> RunState | None:
    try:
        return _run_decoder.decode(blob)
    except msgspec.MsgspecError:
        return None  # written by a version that no longer reads: start over


def decode_entry(blob: str | bytes) -> EntryState | None:
    try:
        return _entry_decoder.decode(blob)
    except msgspec.MsgspecError:
        return None
