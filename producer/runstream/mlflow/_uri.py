"""The ``runstream://`` tracking URI: which team an MLflow client logs to and reads from."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from runstream_core.errors import UsageError
from runstream_core.team_names import team_name

SCHEME = "runstream"
URI_FORMS = "runstream:// (team from RUNSTREAM_TEAM) or runstream://?team=<team>"


def team_from_uri(uri: str, default_team: str) -> str:
    """The team ``uri`` names (``runstream://?team=vision``), else ``default_team``; Kafka and ClickHouse
    always come from runstream's settings (``RUNSTREAM_*``), never from the URI."""
    parts = urlsplit(uri)
    if parts.scheme != SCHEME:
        raise UsageError(f"not a runstream tracking URI: {uri!r}; use {URI_FORMS}")
    if parts.netloc or parts.path not in ("", "/") or parts.fragment:
        raise UsageError(
            f"{uri!r}: the URI takes no host or path (Kafka and ClickHouse come from RUNSTREAM_* settings); "
            f"use {URI_FORMS}"
        )
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(query) - {"team"})
    if unknown:
        raise UsageError(f"{uri!r}: unknown parameters {unknown}; use {URI_FORMS}")
    teams = query.get("team", [])
    if len(teams) > 1:
        raise UsageError(f"{uri!r}: give team once")
    return team_name(teams[0] if teams else default_team)
