"""How a team name someone typed becomes the team's name: one rule for every component.

A team name is the ``team`` column value that team isolation filters on, so rows logged for
"Vision" would be invisible under the row policies of "vision". Every place that takes a team name
from a person (``runstream.init``, query filters, later teams.yaml) normalises it the same way and
then requires ``TEAM_NAME_PATTERN``.
"""

from __future__ import annotations

import re
from typing import Final

from runstream_core.errors import UsageError
from runstream_core.team_access import TEAM_NAME_PATTERN

TEAM_NAME_RULE: Final = (
    "a team name is lowercase letters, digits and underscores, starting with a letter, at most 32 characters "
    "(surrounding blanks are removed, capitals lowered, spaces and dashes become underscores)"
)
_TEAM_NAME = re.compile(TEAM_NAME_PATTERN)


def normalize_team_name(name: str) -> str:
    """``name`` stripped, lowercased, with spaces and dashes turned into underscores ("ML Infra" -> "ml_infra").

    The result is not checked: see :func:`team_name`.
    """
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def team_name(name: str) -> str:
    """``name`` normalised, if the result matches ``TEAM_NAME_PATTERN``; else :class:`UsageError` stating the rule."""
    if not isinstance(name, str):
        raise UsageError(f"team must be a string, got {name!r}; {TEAM_NAME_RULE}")
    normal = normalize_team_name(name)
    if not _TEAM_NAME.fullmatch(normal):
        shown = f"{name!r}" if normal == name else f"{name!r} (normalised: {normal!r})"
        raise UsageError(f"team {shown} is not a team name: {TEAM_NAME_RULE}")
    return normal
