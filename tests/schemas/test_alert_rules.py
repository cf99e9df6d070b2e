"""Alert rules files: the example validates, and every hostile value is refused with an error that
names the file, the rule and the field; `runstream alerts check` says so and exits 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from runstream_cli.main import main
from runstream_core import alert_rules as ar

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "alerts.example.yaml"

BASE: dict[str, Any] = {
    "team": "vision",
    "webhooks": [{"name": "oncall", "format": "slack", "url_secret": "SLACK"}],
    "rules": [],
}


def with_rule(**rule: Any) -> dict[str, Any]:
    return {**BASE, "rules": [{"name": "r", **rule}]}


def test_the_example_file_validates_and_round_trips() -> None:
    ruleset = ar.validate(yaml.safe_load(EXAMPLE.read_text()), str(EXAMPLE))
    assert ruleset.team == "vision"
    assert [type(r).__name__ for r in ruleset.rules] == [
        "NanRule",
        "ThresholdRule",
        "ChangeRule",
        "ZScoreRule",
        "StalledRule",
        "NoHeartbeatRule",
        "FailedRule",
        "GpuIdleRule",
        "RunAlertRule",
    ]
    assert ar.decode(ar.encode(ruleset)) == ruleset


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (with_rule(kind="nope"), "f.yaml: rules[0] ('r').kind: unknown kind 'nope'; one of nan, threshold"),
        (with_rule(metric="loss"), "f.yaml: rules[0] ('r').kind: unknown kind None"),
        (
            with_rule(kind="threshold", metric="acc", above=1, window=10**12),
            "f.yaml: rules[0] ('r').window: Expected `int` <= 1000",
        ),
        (with_rule(kind="zscore", metric="acc", window=2), "f.yaml: rules[0] ('r').window: Expected `int` >= 3"),
        (with_rule(kind="stalled", after_s=1e30), "f.yaml: rules[0] ('r').after_s: Expected `float` <= 604800.0"),
        (with_rule(kind="stalled", after_s=-1), "f.yaml: rules[0] ('r').after_s: Expected `float` > 0.0"),
        (
            with_rule(kind="nan", metric="loss", wait_duration_s=1e12),
            "f.yaml: rules[0] ('r').wait_duration_s: Expected `float` <= 2592000.0",
        ),
        (with_rule(kind="nan", metric="l[oss"), "f.yaml: rules[0] ('r').metric: glob 'l[oss' opens a '['"),
        (
            with_rule(kind="gpu_idle", for_s=60, scope={"group": "sweep-[0-9"}),
            "f.yaml: rules[0] ('r').scope.group: glob 'sweep-[0-9' opens a '['",
        ),
        (with_rule(kind="nan", metric="a\nb"), "f.yaml: rules[0] ('r').metric: Expected `str` matching regex"),
        (with_rule(kind="nan", metric="x" * 300), "f.yaml: rules[0] ('r').metric: Expected `str` of length <= 256"),
        (
            with_rule(kind="nan", metric="loss", regex="(a+)+$"),
            "f.yaml: rules[0] ('r'): Object contains unknown field `regex`",
        ),
        (
            with_rule(kind="nan", metric="loss", notify=["pager"]),
            "f.yaml: rules[0] ('r').notify: no webhook named 'pager'",
        ),
        (with_rule(kind="threshold", metric="acc"), "a threshold rule takes exactly one of 'above' and 'below'"),
        (with_rule(kind="threshold", metric="acc", above=1, below=0), "exactly one of 'above' and 'below'"),
        (
            with_rule(kind="threshold", metric="acc", above=float("nan")),
            "f.yaml: rules[0] ('r').above: must be a finite",
        ),
        (
            with_rule(kind="change", metric="acc"),
            "f.yaml: rules[0] ('r'): Object missing required field `max_relative`",
        ),
        (
            with_rule(kind="failed", statuses=["finished"]),
            "f.yaml: rules[0] ('r').statuses[0]: Invalid enum value 'finished'",
        ),
        (with_rule(kind="nan", metric="loss", level="LOUD"), "f.yaml: rules[0] ('r').level: Invalid enum value 'LOUD'"),
        ({**with_rule(kind="nan", metric="a"), "team": "Vision"}, "f.yaml: team: Expected `str` matching regex"),
        (
            {**BASE, "webhooks": [{"name": "x", "url_secret": "https://hooks.slack.com/services/T000/B000/XXX"}]},
            "f.yaml: webhooks[0].url_secret: Expected `str` matching regex",
        ),
        ({**BASE, "webhooks": [BASE["webhooks"][0]] * 2}, "f.yaml: webhooks[1].name: duplicate webhook 'oncall'"),
        (
            {**BASE, "rules": [{"name": "r", "kind": "nan", "metric": "a"}] * 2},
            "f.yaml: rules[1] ('r').name: duplicate rule name",
        ),
        ({**BASE, "rules": [{"name": f"r{i}", "kind": "failed"} for i in range(201)]}, "201 rules, at most 200"),
        ({**BASE, "rules": "all of them"}, "f.yaml: rules: expected a list"),
        (["team", "vision"], "f.yaml: expected a mapping"),
    ],
)
def test_hostile_values_are_refused_naming_the_rule_and_field(data: Any, message: str) -> None:
    with pytest.raises(ar.RulesError) as refused:
        ar.validate(data, "f.yaml")
    assert message in str(refused.value)


def test_a_rule_set_from_the_topic_is_bounded_and_validated() -> None:
    with pytest.raises(ar.RulesError, match="over the limit"):
        ar.decode(b" " * (ar.MAX_RULE_SET_BYTES + 1))
    with pytest.raises(ar.RulesError, match="not valid JSON"):
        ar.decode(b"{")


def test_globs_match_in_linear_time_and_as_fnmatch_does() -> None:
    assert ar.matches("train/*", "train/loss") and not ar.matches("train/*", "val/loss")
    assert ar.matches("gpu[0-3]", "gpu2") and not ar.matches("gpu[0-3]", "gpu7")
    assert not ar.matches("*a*a*a*a*a*a*b", "a" * 256)  # returns at once


def test_secrets_are_read_from_the_teams_own_variables() -> None:
    assert ar.secret_env("vision", "SLACK") == "RUNSTREAM_TEAM_VISION_ALERT_SLACK"


def test_check_command_reports_the_error_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "rules.yaml"
    good.write_text(EXAMPLE.read_text())
    with pytest.raises(SystemExit) as exited:
        main(["alerts", "check", str(good)])
    assert exited.value.code == 0
    assert "is valid (team vision: 9 rule(s), 2 webhook(s))" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_rule(kind="gpu_idle", for_s=60, below_percent=500)))
    with pytest.raises(SystemExit) as exited:
        main(["alerts", "check", str(bad)])
    assert exited.value.code == 1
    assert f"runstream: {bad}: rules[0] ('r').below_percent: Expected `float` <= 100.0" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("team: [unclosed")
    with pytest.raises(SystemExit) as exited:
        main(["alerts", "check", str(broken)])
    assert exited.value.code == 1
    assert f"{broken}: not valid YAML" in capsys.readouterr().err
