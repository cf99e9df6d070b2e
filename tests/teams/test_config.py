"""teams.yaml: the example parses to the expected model; every kind of mistake names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from runstream_grafana.teams.config import Member, TeamsConfigError, load_teams, parse_teams

REPO = Path(__file__).resolve().parents[2]


def test_example_file_parses_to_the_documented_teams() -> None:
    config = load_teams(REPO / "deploy" / "teams.example.yaml")
    assert config.platform_admins == ("ops@example.com",)
    assert [(t.name, t.display_name) for t in config.teams] == [
        ("vision", "Vision"),
        ("nlp", "NLP"),
        ("speech", "Speech"),
    ]
    assert config.team("nlp").members == (
        Member(login="alan@example.com", role="Editor"),
        Member(login="barbara@example.com", role="Viewer"),
    )
    assert config.team("vision").members[0] == Member(login="ada@example.com", role="Admin")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'teams:\n  - name: "vision\' OR 1=1 --"\n    display_name: V\n',
            "teams.yaml: teams[0].name: String should match pattern",
        ),
        ("teams:\n  - name: Vision\n    display_name: V\n", "teams[0].name: String should match pattern"),
        ("teams:\n  - name: vision\n", "teams[0].display_name: Field required"),
        (
            "teams:\n  - name: vision\n    display_name: V\n    members:\n      - login: ada\n      - login: bob\n"
            "        role: Owner\n",
            "teams[0].members[1].role: Input should be 'Viewer', 'Editor' or 'Admin'",
        ),
        (
            "teams:\n  - name: vision\n    display_name: V\n    members:\n      - login: ada\n      - login: ADA\n",
            "teams[0].members: Value error, duplicate member login 'ada'",
        ),
        (
            "teams:\n  - {name: vision, display_name: V}\n  - {name: vision, display_name: W}\n",
            "(top level): Value error, duplicate team name 'vision'",
        ),
        (
            "teams:\n  - {name: vision, display_name: V, colour: red}\n",
            "teams[0].colour: Extra inputs are not permitted",
        ),
        ("teams: []\n", "teams: Tuple should have at least 1 item"),
        ("platform_admins: [ops]\n", "teams: Field required"),
        ("- vision\n- nlp\n", "teams.yaml: expected a mapping with a 'teams' list at the top level"),
        ("teams: [\n", "teams.yaml: not valid YAML"),
    ],
)
def test_invalid_files_name_the_field(text: str, message: str) -> None:
    with pytest.raises(TeamsConfigError) as raised:
        parse_teams(text)
    assert message in str(raised.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TeamsConfigError, match=r"cannot read teams file .*nope\.yaml: No such file or directory"):
        load_teams(tmp_path / "nope.yaml")
