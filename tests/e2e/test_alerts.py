"""Alerts on the real broker and engine, with a local webhook receiver: every kind of rule fires
exactly the expected messages, nothing is sent twice across a worker restart, no team's rule sees
another team's runs, a malformed rule set changes nothing, and webhooks that fail or hang end as
dead letters while the rest goes on."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runstream_cli import alerts as cli_alerts
from runstream_cli.worker_process import WorkerProcess
from runstream_core import alert_rules as ar
from runstream_core.clickhouse import connect
from runstream_core.events import (
    AlertLevel,
    Event,
    HardwareBatch,
    Heartbeat,
    MetricBatch,
    RunAlert,
    RunEnd,
    RunInfo,
    RunStart,
    RunStatus,
)
from runstream_core.hardware_keys import GPU_UTILIZATION_PERCENT
from runstream_worker.lag import wait_caught_up
from runstream_worker.migrate import migrate
from tests.faults.worker_support import Feed, dead_letters, headers
from tests.fixtures.pipeline import ServedClickHouse
from tests.fixtures.settings import StackSettings as Settings
from tests.fixtures.webhooks import WebhookReceiver

Row = tuple[str, str, str, str, str, str]
"""(team, run id, rule, subject, event, delivery)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def alert_settings(pipeline_settings: Settings, served_clickhouse: ServedClickHouse) -> Settings:
    settings = pipeline_settings.model_copy(
        update={
            "clickhouse_url": served_clickhouse.url,  # readable while the worker writes
            "worker_flush_interval_s": 0.2,
            "worker_alert_interval_s": 0.3,
            "worker_alert_webhook_tries": 2,
            "worker_alert_webhook_timeout_s": 1.0,
            "worker_liveness_interval_s": 0.5,
        }
    )
    migrate(settings)
    return settings


@pytest.fixture
def secrets(webhooks: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The webhook URLs and the token, in the environment the worker inherits."""
    for name, path in (("JSON_URL", "/ok/json"), ("SLACK_URL", "/ok/slack"), ("DISCORD_URL", "/ok/discord")):
        monkeypatch.setenv(ar.secret_env("vision", name), webhooks.url + path)
    monkeypatch.setenv(ar.secret_env("vision", "FAIL_URL"), webhooks.url + "/fail")
    monkeypatch.setenv(ar.secret_env("vision", "HANG_URL"), webhooks.url + "/hang")
    monkeypatch.setenv(ar.secret_env("vision", "TOKEN"), "s3cret-token")
    monkeypatch.setenv(ar.secret_env("nlp", "JSON_URL"), webhooks.url + "/ok/nlp")
    yield


WEBHOOKS = [
    {"name": "json", "format": "json", "url_secret": "JSON_URL", "token_secret": "TOKEN"},
    {"name": "slack", "format": "slack", "url_secret": "SLACK_URL"},
    {"name": "discord", "format": "discord", "url_secret": "DISCORD_URL"},
]


def ruleset(rules: list[dict[str, Any]], team: str = "vision", webhooks: list[dict[str, Any]] = WEBHOOKS) -> ar.RuleSet:
    return ar.validate({"team": team, "webhooks": webhooks, "rules": rules})


def apply(settings: Settings, rules: ar.RuleSet) -> None:
    cli_alerts.apply(rules, settings)


def alert_rows(settings: Settings, *, final: bool = True) -> list[Row]:
    client = connect(settings)
    try:
        rows = client.query(
            f"SELECT team, run_id, rule, subject, event, delivery FROM alerts {'FINAL' if final else ''} "
            "ORDER BY team, run_id, ts, alert_id"
        ).result_rows
    finally:
        client.close()
    return [tuple(str(v) for v in row) for row in rows]  # type: ignore[misc]


def wait_rows(
    settings: Settings, count: int, timeout_s: float = 60.0, where: Callable[[Row], bool] = lambda r: True
) -> list[Row]:
    deadline = time.monotonic() + timeout_s
    while len(rows := [r for r in alert_rows(settings) if where(r)]) < count:
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)
    return rows


def settle(settings: Settings) -> None:
    """Everything sent is handled, and the webhooks' last answers are stored."""
    wait_caught_up(settings, timeout_s=60)
    deadline = time.monotonic() + 30
    while any(r[5] == "pending" for r in alert_rows(settings)):
        assert time.monotonic() < deadline, alert_rows(settings)
        time.sleep(0.2)
    time.sleep(1.0)  # a few timer ticks more: nothing further may appear


class Job:
    """One run's records with its own producer id and sequence numbers."""

    def __init__(self, feed: Feed, run_id: str, project: str, team: str = "vision", **info: Any) -> None:
        self.feed = feed
        self.info = RunInfo(run_id=run_id, team=team, project=project, started_at_ms=now_ms(), **info)
        self.producer = uuid.uuid4().hex[:12]
        self.seq = 0

    def _next(self) -> dict[str, Any]:
        self.seq += 1
        return {"producer_id": self.producer, "seq": self.seq}

    def send(self, *events: Event) -> None:
        self.feed.events(events)

    def start(self) -> None:
        self.send(RunStart(run=self.info, **self._next()))

    def metric(self, key: str, values: list[float], first_step: int = 0) -> None:
        n = len(values)
        self.send(
            MetricBatch(
                run_id=self.info.run_id,
                team=self.info.team,
                project=self.info.project,
                keys=[key] * n,
                steps=list(range(first_step, first_step + n)),
                ts_ms=[now_ms()] * n,
                values=values,
                **self._next(),
            )
        )

    def gpu(self, ts_ms: int, values: dict[str, float]) -> None:
        self.send(
            HardwareBatch(
                run_id=self.info.run_id,
                team=self.info.team,
                project=self.info.project,
                interval_ms=15_000,
                ts_ms=[ts_ms] * len(values),
                keys=[GPU_UTILIZATION_PERCENT] * len(values),
                devices=list(values),
                values=list(values.values()),
                **self._next(),
            )
        )

    def heartbeat(self, step: int) -> None:
        self.send(Heartbeat(run=self.info, ts_ms=now_ms(), step=step, **self._next()))

    def end(self, status: RunStatus = RunStatus.FINISHED) -> None:
        self.send(RunEnd(run=self.info, status=status, ended_at_ms=now_ms(), **self._next()))

    def alert(self, title: str, level: AlertLevel) -> None:
        self.send(
            RunAlert(run=self.info, ts_ms=now_ms(), title=title, text="from the job", level=level, **self._next())
        )


ALL_KINDS = [
    {
        "name": "nan",
        "kind": "nan",
        "metric": "loss",
        "scope": {"project": "p-nan"},
        "wait_duration_s": 0,
        "notify": ["json", "slack", "discord"],
        "level": "ERROR",
    },
    {
        "name": "nan-spaced",
        "kind": "nan",
        "metric": "loss",
        "scope": {"project": "p-spaced"},
        "wait_duration_s": 3600,
        "notify": ["json"],
    },
    {
        "name": "thr",
        "kind": "threshold",
        "metric": "acc",
        "above": 5,
        "window": 2,
        "scope": {"project": "p-thr"},
        "notify": ["json"],
    },
    {
        "name": "chg",
        "kind": "change",
        "metric": "acc",
        "window": 3,
        "max_relative": 0.5,
        "scope": {"project": "p-chg"},
        "notify": ["json"],
    },
    {
        "name": "z",
        "kind": "zscore",
        "metric": "grad",
        "window": 3,
        "max_z": 3,
        "scope": {"project": "p-z"},
        "notify": ["json"],
    },
    {
        "name": "idle",
        "kind": "gpu_idle",
        "below_percent": 10,
        "for_s": 30,
        "scope": {"project": "p-gpu"},
        "notify": ["json"],
    },
    {"name": "failed", "kind": "failed", "scope": {"project": "p-failed"}, "notify": ["json"]},
    {"name": "stalled", "kind": "stalled", "after_s": 2, "scope": {"project": "p-stalled"}, "notify": ["json"]},
    {"name": "silent", "kind": "no_heartbeat", "after_s": 2, "scope": {"project": "p-silent"}, "notify": ["json"]},
    {
        "name": "tagged",
        "kind": "nan",
        "metric": "*",
        "scope": {"project": "p-tags", "group": "sweep-*", "tags": ["gold"]},
        "notify": ["json"],
    },
    {"name": "job", "kind": "run_alert", "level": "WARN", "scope": {"project": "p-job"}, "notify": ["json"]},
]


def test_every_kind_fires_exactly_the_expected_alerts(
    alert_settings: Settings,
    secrets: None,
    webhooks: WebhookReceiver,
    worker_factory: Callable[[Settings], WorkerProcess],
) -> None:
    apply(alert_settings, ruleset(ALL_KINDS))
    # The other team has a NaN rule of its own: it fires for its own runs only, and theirs for none of them.
    apply(
        alert_settings,
        ruleset(
            [{"name": "nan", "kind": "nan", "metric": "acc", "notify": ["mine"]}],
            "nlp",
            [{"name": "mine", "url_secret": "JSON_URL"}],
        ),
    )
    worker_factory(alert_settings)
    feed = Feed(alert_settings)
    nan, nan_n = float("nan"), float("inf")
    jobs = {
        name: Job(feed, f"run-{name}", f"p-{name}")
        for name in ("nan", "spaced", "thr", "chg", "z", "gpu", "failed", "stalled", "silent", "job")
    }
    for job in jobs.values():
        job.start()
    jobs["nan"].metric("loss", [1.0, nan, nan, 2.0, nan_n, 3.0])
    jobs["nan"].metric("acc", [nan])  # not the rule's metric
    jobs["spaced"].metric("loss", [nan, 1.0, nan, 1.0])
    jobs["thr"].metric("acc", [1.0, 9.0, 9.0, 1.0, 1.0])
    jobs["chg"].metric("acc", [10.0, 10.0, 10.0, 20.0, 10.0, 10.0])
    jobs["z"].metric("grad", [1.0, 2.0, 1.0, 2.0, 100.0, 1.5])
    t0 = now_ms()
    for i, util in enumerate([2.0, 3.0, 1.0, 80.0]):
        jobs["gpu"].gpu(t0 + i * 15_000, {"gpu0": util, "gpu1": 90.0})
    jobs["failed"].end(RunStatus.FAILED)
    jobs["job"].alert("diverging", AlertLevel.ERROR)
    jobs["job"].alert("fyi", AlertLevel.INFO)
    # Tags and group: only the run in the group with the tag is watched. Its points are sent before its
    # start (they travel on another topic anyway): they wait for the start to be read.
    gold = Job(feed, "run-gold", "p-tags", group="sweep-1", tags={"gold": ""})
    plain = Job(feed, "run-plain", "p-tags", group="sweep-1")
    for job in (gold, plain):
        job.seq = 1
        job.metric("x", [nan])
        job.seq = 0
        job.start()
    # Another team's runs, in the very projects the rules watch: nothing of vision's fires for them.
    for project in ("p-nan", "p-failed"):
        other = Job(feed, f"nlp-{project}", project, team="nlp")
        other.start()
        other.metric("acc", [nan, 1.0])
        other.end(RunStatus.FAILED)
    # Time-based: the stalled run beats at one step, then moves; the silent one goes quiet, then beats.
    jobs["silent"].heartbeat(0)
    for _ in range(12):
        jobs["stalled"].heartbeat(5)
        time.sleep(0.3)
    wait_rows(alert_settings, 1, where=lambda r: r[2] == "stalled")
    wait_rows(alert_settings, 1, where=lambda r: r[2] == "silent")
    jobs["stalled"].heartbeat(6)
    jobs["silent"].heartbeat(1)
    jobs["stalled"].end()
    jobs["silent"].end()

    expected = [
        *[("vision", "run-nan", "nan", "loss", "fired", "sent")] * 2,
        *[("vision", "run-nan", "nan", "loss", "resolved", "sent")] * 2,
        ("vision", "run-spaced", "nan-spaced", "loss", "fired", "sent"),
        ("vision", "run-spaced", "nan-spaced", "loss", "resolved", "sent"),
        ("vision", "run-spaced", "nan-spaced", "loss", "fired", "suppressed"),  # within wait_duration
        ("vision", "run-spaced", "nan-spaced", "loss", "resolved", "suppressed"),
        ("vision", "run-thr", "thr", "acc", "fired", "sent"),
        ("vision", "run-thr", "thr", "acc", "resolved", "sent"),
        ("vision", "run-chg", "chg", "acc", "fired", "sent"),
        ("vision", "run-chg", "chg", "acc", "resolved", "sent"),
        ("vision", "run-z", "z", "grad", "fired", "sent"),
        ("vision", "run-z", "z", "grad", "resolved", "sent"),
        ("vision", "run-gpu", "idle", "gpu0", "fired", "sent"),
        ("vision", "run-gpu", "idle", "gpu0", "resolved", "sent"),
        ("vision", "run-failed", "failed", "", "fired", "sent"),
        ("vision", "run-stalled", "stalled", "", "fired", "sent"),
        ("vision", "run-stalled", "stalled", "", "resolved", "sent"),
        ("vision", "run-silent", "silent", "", "fired", "sent"),
        ("vision", "run-silent", "silent", "", "resolved", "sent"),
        ("vision", "run-job", "", "", "raised", "sent"),
        ("vision", "run-job", "", "", "raised", "none"),  # INFO: under the rule's level, stored only
        ("vision", "run-gold", "tagged", "x", "fired", "sent"),
    ]
    # nlp's own rule fires for nlp's own runs only.
    expected += [
        ("nlp", f"nlp-{p}", "nan", "acc", e, "sent") for p in ("p-nan", "p-failed") for e in ("fired", "resolved")
    ]
    # Every row expected first (a timer's row may come after the last take is stored), then nothing more.
    wait_rows(alert_settings, len(expected))
    settle(alert_settings)
    feed.close()
    rows = alert_rows(alert_settings)
    assert sorted(rows) == sorted(expected)
    # run-nan had two episodes, each fired and resolved.
    client = connect(alert_settings)
    try:
        ids = client.query("SELECT alert_id FROM alerts FINAL WHERE run_id = 'run-nan' ORDER BY alert_id").result_rows
    finally:
        client.close()
    assert [i for (i,) in ids] == ["nan/loss/1/fired", "nan/loss/1/resolved", "nan/loss/2/fired", "nan/loss/2/resolved"]

    sent_json = webhooks.on("/ok/json")
    sent = sorted((b.body["run_id"], b.body["rule"], b.body["subject"], b.body["event"]) for b in sent_json)
    assert sent == sorted((r[1], r[2], r[3], r[4]) for r in expected if r[0] == "vision" and r[5] == "sent")
    assert all(b.headers["authorization"] == "Bearer s3cret-token" for b in sent_json)
    assert len({b.body["alert_id"] + b.body["run_id"] for b in sent_json}) == len(sent_json)  # none twice
    nan_json = [b.body for b in sent_json if b.body["run_id"] == "run-nan"]
    assert sorted((b["step"], b["event"], b["level"]) for b in nan_json) == [
        (1, "fired", "ERROR"),
        (3, "resolved", "ERROR"),
        (4, "fired", "ERROR"),
        (5, "resolved", "ERROR"),
    ]
    slack_bodies = [r.body for r in webhooks.on("/ok/slack")]
    discord_bodies = [r.body for r in webhooks.on("/ok/discord")]
    assert len(slack_bodies) == len(discord_bodies) == 4
    assert all(set(b) == {"text"} and "nan [nan] loss" in b["text"] for b in slack_bodies)
    assert all(set(b) == {"content", "embeds"} and b["embeds"][0]["title"] == b["content"] for b in discord_bodies)
    assert sorted(r.body["run_id"] for r in webhooks.on("/ok/nlp")) == sorted(
        [f"nlp-{p}" for p in ("p-nan", "p-failed")] * 2
    )


def test_nothing_is_duplicated_across_a_worker_restart(
    alert_settings: Settings,
    secrets: None,
    webhooks: WebhookReceiver,
    worker_factory: Callable[[Settings], WorkerProcess],
) -> None:
    apply(
        alert_settings,
        ruleset(
            [
                {"name": "nan", "kind": "nan", "metric": "loss", "wait_duration_s": 0, "notify": ["json"]},
                {"name": "avg", "kind": "threshold", "metric": "acc", "above": 5, "window": 3, "notify": ["json"]},
            ]
        ),
    )
    worker = worker_factory(alert_settings)
    feed = Feed(alert_settings)
    job = Job(feed, "restarted", "p")
    job.start()
    job.metric("loss", [float("nan"), 1.0])
    job.metric("acc", [9.0, 9.0], first_step=0)  # two of the window's three points
    wait_rows(alert_settings, 2)
    settle(alert_settings)
    assert worker.stop() == 0
    # The same records again (as a replay after a crash would send them), then new ones.
    replayed_seq = job.seq
    job.seq = 1
    job.metric("loss", [float("nan"), 1.0])
    job.metric("acc", [9.0, 9.0], first_step=0)
    assert job.seq == replayed_seq
    worker_factory(alert_settings)
    job.metric("acc", [9.0], first_step=2)  # the window, persisted, is full now: average 9 > 5
    job.metric("loss", [float("nan")], first_step=2)  # a second episode, numbered after the first
    wait_rows(alert_settings, 4)
    settle(alert_settings)
    feed.close()
    rows = alert_rows(alert_settings)
    assert sorted(rows) == sorted(
        [
            ("vision", "restarted", "nan", "loss", "fired", "sent"),
            ("vision", "restarted", "nan", "loss", "resolved", "sent"),
            ("vision", "restarted", "nan", "loss", "fired", "sent"),
            ("vision", "restarted", "avg", "acc", "fired", "sent"),
        ]
    )
    ids = sorted(r.body["alert_id"] for r in webhooks.on("/ok/json"))
    assert ids == ["avg/acc/1/fired", "nan/loss/1/fired", "nan/loss/1/resolved", "nan/loss/2/fired"]


def test_a_malformed_rule_set_changes_nothing(
    alert_settings: Settings,
    secrets: None,
    webhooks: WebhookReceiver,
    worker_factory: Callable[[Settings], WorkerProcess],
    tmp_path: Path,
) -> None:
    good = {
        "team": "vision",
        "webhooks": [WEBHOOKS[0]],
        "rules": [{"name": "nan", "kind": "nan", "metric": "loss", "notify": ["json"]}],
    }
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(good))
    env = {**alert_settings.as_env(), "PATH": "/usr/bin:/bin"}
    applied = subprocess.run(
        [sys.executable, "-m", "runstream_cli.main", "alerts", "apply", str(path)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )
    assert applied.returncode == 0, applied.stderr
    worker = worker_factory(alert_settings)
    bad = {
        **good,
        "rules": [
            {"name": "nan", "kind": "nan", "metric": "loss"},
            {"name": "huge", "kind": "threshold", "metric": "acc", "above": 1, "window": 10**9},
        ],
    }
    path.write_text(yaml.safe_dump(bad))
    refused = subprocess.run(
        [sys.executable, "-m", "runstream_cli.main", "alerts", "apply", str(path)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1
    assert f"{path}: rules[1] ('huge').window: Expected `int` <= 1000" in refused.stderr
    # A record that bypasses the command (garbage, or a rule set of another team under this key) is refused too.
    feed = Feed(alert_settings)
    topic = feed.topics.alert_rules
    feed.send(
        topic, b'{"team": "vision", "rules": [{"name": "x", "kind": "bogus"}], "version": 99999999999999}', b"vision"
    )
    nlp = ar.encode(ruleset([], "nlp", []))
    feed.send(topic, nlp.replace(b'"version":0', b'"version":99999999999999'), b"vision")
    deadline = time.monotonic() + 30
    while worker.log_text().count("alert rules refused") < 2:
        assert time.monotonic() < deadline, worker.log_text()[-3000:]
        time.sleep(0.2)
    # The rules in force are still the good ones.
    job = Job(feed, "after", "p")
    job.start()
    job.metric("loss", [math.inf])
    wait_rows(alert_settings, 1)
    settle(alert_settings)
    feed.close()
    assert alert_rows(alert_settings) == [("vision", "after", "nan", "loss", "fired", "sent")]


def test_failing_and_hanging_webhooks_end_as_dead_letters(
    alert_settings: Settings,
    secrets: None,
    webhooks: WebhookReceiver,
    worker_factory: Callable[[Settings], WorkerProcess],
) -> None:
    hooks = [
        *WEBHOOKS,
        {"name": "fail", "url_secret": "FAIL_URL"},
        {"name": "hang", "url_secret": "HANG_URL"},
        {"name": "unset", "url_secret": "NOT_SET"},
    ]
    apply(
        alert_settings,
        ruleset(
            [
                {"name": "to-fail", "kind": "nan", "metric": "a", "notify": ["fail"]},
                {"name": "to-hang", "kind": "nan", "metric": "b", "notify": ["hang"]},
                {"name": "to-unset", "kind": "nan", "metric": "c", "notify": ["unset"]},
                {"name": "to-ok", "kind": "nan", "metric": "d", "notify": ["json"]},
            ],
            webhooks=hooks,
        ),
    )
    worker_factory(alert_settings)
    feed = Feed(alert_settings)
    job = Job(feed, "hostile", "p")
    job.start()
    for key in "abcd":
        job.metric(key, [float("nan")])
    job.metric("loss", [1.0] * 100, first_step=1)
    settle(alert_settings)
    feed.close()
    assert sorted(alert_rows(alert_settings)) == sorted(
        [
            ("vision", "hostile", "to-fail", "a", "fired", "failed"),
            ("vision", "hostile", "to-hang", "b", "fired", "failed"),
            ("vision", "hostile", "to-unset", "c", "fired", "failed"),
            ("vision", "hostile", "to-ok", "d", "fired", "sent"),
        ]
    )
    assert len(webhooks.on("/fail")) == 2  # tried worker_alert_webhook_tries times
    assert len(webhooks.on("/hang")) == 2
    assert [r.body["alert_id"] for r in webhooks.on("/ok/json")] == ["to-ok/d/1/fired"]
    letters = dead_letters(alert_settings, 3)
    reasons = sorted(headers(r)["reason"] for r in letters)
    assert all(headers(r)["source_topic"] == "alerts" for r in letters)
    assert "answered HTTP 500 (after 2 tries)" in reasons[0]
    assert "RUNSTREAM_TEAM_VISION_ALERT_NOT_SET is not set" in " ".join(reasons)
    assert any("Timeout" in reason for reason in reasons)
    assert all(webhooks.url not in reason for reason in reasons)  # never the secret URL
    client = connect(alert_settings)
    try:
        assert client.query("SELECT count() FROM metrics WHERE run_id = 'hostile'").result_rows == [(104,)]
    finally:
        client.close()


def test_a_worker_killed_before_its_webhook_answered_has_the_next_one_send_it_once(
    alert_settings: Settings,
    webhooks: WebhookReceiver,
    worker_factory: Callable[[Settings], WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = ar.secret_env("vision", "HOOK")
    hook = [{"name": "hook", "url_secret": "HOOK"}]
    apply(
        alert_settings,
        ruleset([{"name": "nan", "kind": "nan", "metric": "loss", "notify": ["hook"]}], webhooks=hook),
    )
    # The first worker's webhook holds the request; the worker is killed while it waits.
    monkeypatch.setenv(secret, webhooks.url + "/hang")
    first = worker_factory(alert_settings.model_copy(update={"worker_alert_webhook_timeout_s": 60.0}))
    feed = Feed(alert_settings)
    job = Job(feed, "killed", "p")
    job.start()
    job.metric("loss", [float("nan")])
    webhooks.wait_for("/hang", 1)
    assert wait_rows(alert_settings, 1) == [("vision", "killed", "nan", "loss", "fired", "pending")]
    first.kill()
    # The next worker sends what was stored but not sent, and does not evaluate the replayed records again.
    monkeypatch.setenv(secret, webhooks.url + "/ok/json")
    worker_factory(alert_settings)
    job.metric("loss", [1.0], first_step=1)
    wait_rows(alert_settings, 2)
    settle(alert_settings)
    feed.close()
    assert alert_rows(alert_settings) == [
        ("vision", "killed", "nan", "loss", "fired", "sent"),
        ("vision", "killed", "nan", "loss", "resolved", "sent"),
    ]
    assert sorted(r.body["alert_id"] for r in webhooks.on("/ok/json")) == ["nan/loss/1/fired", "nan/loss/1/resolved"]
    assert len(webhooks.on("/hang")) == 1


def test_a_rebalance_hands_the_runs_state_to_the_next_worker(
    alert_settings: Settings,
    secrets: None,
    webhooks: WebhookReceiver,
    worker_factory: Callable[[Settings], WorkerProcess],
) -> None:
    apply(
        alert_settings,
        ruleset([
            {"name": "avg", "kind": "threshold", "metric": "acc", "above": 5, "window": 3, "notify": ["json"]},
            {"name": "nan", "kind": "nan", "metric": "loss", "notify": ["json"]},
        ]),
    )  # fmt: skip
    first = worker_factory(alert_settings)
    feed = Feed(alert_settings)
    jobs = [Job(feed, f"moved-{i}", "p") for i in range(4)]  # spread over the partitions
    for job in jobs:
        job.start()
        job.metric("loss", [float("nan")])
        job.metric("acc", [9.0, 9.0])  # two of the window's three points
    wait_rows(alert_settings, len(jobs))
    settle(alert_settings)
    worker_factory(alert_settings)  # joins the group: partitions are split between the two
    assert first.stop() == 0  # and then all go to the second
    for job in jobs:
        job.metric("acc", [9.0], first_step=2)
        job.metric("loss", [float("nan")], first_step=1)  # the same episode: no new alert
    wait_rows(alert_settings, 2 * len(jobs))
    settle(alert_settings)
    feed.close()
    assert sorted(alert_rows(alert_settings)) == sorted(
        [("vision", job.info.run_id, "avg", "acc", "fired", "sent") for job in jobs]
        + [("vision", job.info.run_id, "nan", "loss", "fired", "sent") for job in jobs]
    )
    sent = sorted((r.body["run_id"], r.body["alert_id"]) for r in webhooks.on("/ok/json"))
    assert sent == sorted(
        [(job.info.run_id, "avg/acc/1/fired") for job in jobs] + [(job.info.run_id, "nan/loss/1/fired") for job in jobs]
    )


def test_points_read_before_their_runs_start_fire_the_teams_unscoped_rules(
    alert_settings: Settings,
    secrets: None,
    webhooks: WebhookReceiver,
    worker_factory: Callable[[Settings], WorkerProcess],
) -> None:
    """Points and lifecycle events travel on different topics: a take of points may hold runs whose
    start is not read yet. A rule without group or tags fires for them at once, with the timer ticking
    every 20 ms while the take's runs are read (a tick forgets the runs not seen yet), and the starts
    read later change nothing."""
    apply(
        alert_settings,
        ruleset(
            [{"name": "nan", "kind": "nan", "metric": "acc", "notify": ["mine"]}],
            "nlp",
            [{"name": "mine", "url_secret": "JSON_URL"}],
        ),
    )
    worker_factory(alert_settings.model_copy(update={"worker_alert_interval_s": 0.02}))
    feed = Feed(alert_settings)
    jobs = [Job(feed, f"early-{i}", "p-early", team="nlp") for i in range(40)]  # many runs met in one take
    for job in jobs:
        job.seq = 1  # the start, sent later, is the job's first record
        job.metric("acc", [float("nan"), 1.0])
    expected = [(job.info.run_id, e) for job in jobs for e in ("fired", "resolved")]
    wait_caught_up(alert_settings, timeout_s=60)  # every point handled: no start read yet
    assert sorted((r[1], r[4]) for r in alert_rows(alert_settings)) == sorted(expected)
    for job in jobs:
        job.seq = 0
        job.start()
        job.seq = 2
        job.end(RunStatus.FAILED)
    settle(alert_settings)
    feed.close()
    assert sorted(alert_rows(alert_settings)) == sorted(("nlp", r, "nan", "acc", e, "sent") for r, e in expected)
    assert sorted((r.body["run_id"], r.body["event"]) for r in webhooks.on("/ok/nlp")) == sorted(expected)
