"""``alerts`` (one row per alert message) and ``alert_state`` (what evaluating rules needs after a
restart): their columns, the rows the alert engine writes, and the queries that read state back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runstream_worker.tables._time import at_ms

COLUMNS = (
    "team",
    "project",
    "run_id",
    "alert_id",
    "rule",
    "kind",
    "subject",
    "event",
    "level",
    "title",
    "text",
    "value",
    "step",
    "ts",
    "webhooks",
    "delivery",
    "error",
    "updated_at",
)

STATE_COLUMNS = ("run_team", "project", "run_id", "entry", "state", "updated_at")

FIRED = "fired"
RESOLVED = "resolved"
RAISED = "raised"
"""An alert a job raised itself (``run.alert``)."""

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
SUPPRESSED = "suppressed"
NONE = "none"


@dataclass
class AlertMessage:
    """One alert message, as stored and as sent."""

    team: str
    project: str
    run_id: str
    alert_id: str
    rule: str
    kind: str
    subject: str
    event: str
    level: str
    title: str
    text: str
    value: float | None
    step: int
    ts_ms: int
    webhooks: tuple[str, ...] = ()
    delivery: str = NONE
    error: str = ""
    updated_ms: int = 0
    run_name: str = field(default="", compare=False)

    def row(self) -> list[Any]:
        return [
            self.team,
            self.project,
            self.run_id,
            self.alert_id,
            self.rule,
            self.kind,
            self.subject,
            self.event,
            self.level,
            self.title,
            self.text,
            self.value,
            self.step,
            at_ms(self.ts_ms),
            list(self.webhooks),
            self.delivery,
            self.error[:2000],
            at_ms(self.updated_ms or self.ts_ms),
        ]


def state_row(run: tuple[str, str, str], entry: str, blob: str, now_ms: int) -> list[Any]:
    return [*run, entry, blob, at_ms(now_ms)]


STATE_QUERY = """
SELECT run_team, project, run_id, entry, argMax(state, updated_at)
FROM alert_state
WHERE (run_team, project, run_id) IN {runs:Array(Tuple(String, String, String))}
GROUP BY run_team, project, run_id, entry
"""

OPEN_RUNS_QUERY = """
SELECT run_team, project, run_id
FROM alert_state
WHERE entry = '' AND updated_at >= fromUnixTimestamp64Milli({since:Int64})
GROUP BY run_team, project, run_id
"""

RUN_INFO_QUERY = """
SELECT team, project, run_id, run_group, tags, status, name
FROM runs FINAL
WHERE (team, project, run_id) IN {runs:Array(Tuple(String, String, String))}
"""

PENDING_QUERY = """
SELECT team, project, run_id, alert_id, rule, kind, subject, event, level, title, text, value, step,
       toUnixTimestamp64Milli(ts), webhooks
FROM alerts FINAL
WHERE delivery = 'pending' AND ts >= fromUnixTimestamp64Milli({since:Int64})
ORDER BY ts
"""


def pending_message(values: list[Any]) -> AlertMessage:
    """One row of ``PENDING_QUERY`` as the message it was stored from."""
    team, project, run_id, alert_id, rule, kind, subject, event, level, title, text, value, step, ts, hooks = values
    return AlertMessage(
        str(team),
        str(project),
        str(run_id),
        str(alert_id),
        str(rule),
        str(kind),
        str(subject),
        str(event),
        str(level),
        str(title),
        str(text),
        None if value is None else float(value),
        int(step),
        int(ts),
        tuple(str(h) for h in hooks),
        PENDING,
    )
