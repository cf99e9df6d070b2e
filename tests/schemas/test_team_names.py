"""The one team-name rule: normalise what was typed, then require TEAM_NAME_PATTERN."""

from __future__ import annotations

import re

import pytest

from runstream_core.errors import UsageError
from runstream_core.team_access import TEAM_NAME_PATTERN, check_team_name
from runstream_core.team_names import TEAM_NAME_RULE, normalize_team_name, team_name


@pytest.mark.parametrize(
    ("typed", "normal"),
    [
        ("vision", "vision"),
        ("Vision", "vision"),
        ("  ML Infra\n", "ml_infra"),
        ("speech-to-text", "speech_to_text"),
        ("A B-C", "a_b_c"),
        ("vision!", "vision!"),  # not a team name, and left for team_name() to refuse
    ],
)
def test_normalising_strips_lowers_and_turns_spaces_and_dashes_into_underscores(typed: str, normal: str) -> None:
    assert normalize_team_name(typed) == normal
    assert normalize_team_name(normal) == normal  # normalising twice changes nothing


def test_a_normalised_name_that_fits_the_pattern_is_the_teams_name() -> None:
    assert team_name(" NLP-Research ") == "nlp_research"
    assert check_team_name(team_name("NLP")) == "nlp"  # what the row policies and users are made of
    assert re.fullmatch(TEAM_NAME_PATTERN, team_name("x" * 32))


@pytest.mark.parametrize("typed", ["", "  ", "1st", "_x", "a.b", "x" * 33, "é", "a\tb", 'v"'])
def test_anything_else_is_a_usage_error_that_states_the_rule(typed: str) -> None:
    with pytest.raises(UsageError) as raised:
        team_name(typed)
    assert TEAM_NAME_RULE in str(raised.value)


def test_the_message_shows_what_the_name_became() -> None:
    with pytest.raises(UsageError, match=r"team 'Vision!' \(normalised: 'vision!'\) is not a team name"):
        team_name("Vision!")
