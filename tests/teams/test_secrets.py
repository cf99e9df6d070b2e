"""Passwords come from the environment or a secrets file; anything missing is named, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from runstream_grafana.teams.config import parse_teams
from runstream_grafana.teams.secrets import MissingSecretError, password_variable, resolve_secrets
from tests.fixtures.settings import StackSettings as Settings

CONFIG = parse_teams(
    "teams:\n  - {name: vision, display_name: Vision}\n  - {name: nlp, display_name: NLP}\n"
    "  - {name: speech, display_name: Speech}\n"
)


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"grafana_password": SecretStr("g-pass"), **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def test_variable_names() -> None:
    assert password_variable("vision") == "RUNSTREAM_TEAM_VISION_CLICKHOUSE_PASSWORD"
    assert password_variable("speech_2") == "RUNSTREAM_TEAM_SPEECH_2_CLICKHOUSE_PASSWORD"


def test_environment_wins_over_a_dotenv_file_which_fills_the_rest(tmp_path: Path) -> None:
    file = tmp_path / "teams.env"
    file.write_text(
        "# team passwords\n"
        "RUNSTREAM_TEAM_VISION_CLICKHOUSE_PASSWORD=from-file\n"
        "export RUNSTREAM_TEAM_NLP_CLICKHOUSE_PASSWORD='n$lp pass'\n"
        "RUNSTREAM_TEAM_SPEECH_CLICKHOUSE_PASSWORD=s#1\n"
    )
    environ = {"RUNSTREAM_TEAM_VISION_CLICKHOUSE_PASSWORD": "from-env"}
    secrets = resolve_secrets(CONFIG, settings(), secrets_file=file, environ=environ)
    assert {team: secrets.clickhouse_password(team) for team in ("vision", "nlp", "speech")} == {
        "vision": "from-env",
        "nlp": "n$lp pass",
        "speech": "s#1",
    }
    assert (secrets.grafana_user, secrets.grafana_password.get_secret_value()) == ("admin", "g-pass")


def test_yaml_file_named_by_the_setting(tmp_path: Path) -> None:
    file = tmp_path / "teams-secrets.yaml"
    file.write_text(
        "RUNSTREAM_TEAM_VISION_CLICKHOUSE_PASSWORD: v1\n"
        "RUNSTREAM_TEAM_NLP_CLICKHOUSE_PASSWORD: 'n: 2'\n"
        "RUNSTREAM_TEAM_SPEECH_CLICKHOUSE_PASSWORD: 12345\n"
    )
    secrets = resolve_secrets(CONFIG, settings(teams_secrets_file=file), environ={})
    assert [secrets.clickhouse_password(t) for t in ("vision", "nlp", "speech")] == ["v1", "n: 2", "12345"]


def test_every_missing_secret_is_named(tmp_path: Path) -> None:
    file = tmp_path / "partial.env"
    file.write_text("RUNSTREAM_TEAM_NLP_CLICKHOUSE_PASSWORD=n\nRUNSTREAM_TEAM_SPEECH_CLICKHOUSE_PASSWORD=\n")
    with pytest.raises(MissingSecretError) as raised:
        resolve_secrets(CONFIG, settings(grafana_password=SecretStr("")), secrets_file=file, environ={})
    assert str(raised.value) == (
        f"missing secrets, set them in the environment or {file}: RUNSTREAM_TEAM_VISION_CLICKHOUSE_PASSWORD, "
        "RUNSTREAM_TEAM_SPEECH_CLICKHOUSE_PASSWORD"
    )


def test_grafana_is_optional_the_team_passwords_are_not(tmp_path: Path) -> None:
    environ = {f"RUNSTREAM_TEAM_{t}_CLICKHOUSE_PASSWORD": "pw" for t in ("VISION", "NLP", "SPEECH")}
    without = resolve_secrets(CONFIG, settings(grafana_password=SecretStr("")), environ=environ)
    assert without.grafana is False
    with_grafana = resolve_secrets(CONFIG, settings(grafana_password=SecretStr("g")), environ=environ)
    assert with_grafana.grafana is True


def test_unreadable_or_malformed_secrets_files(tmp_path: Path) -> None:
    with pytest.raises(MissingSecretError, match=r"cannot read secrets file .*absent\.env"):
        resolve_secrets(CONFIG, settings(), secrets_file=tmp_path / "absent.env", environ={})
    listing = tmp_path / "list.yaml"
    listing.write_text("- just\n- a list\n")
    with pytest.raises(MissingSecretError, match="expected a mapping of NAME: password"):
        resolve_secrets(CONFIG, settings(), secrets_file=listing, environ={})
