"""Evaluating the teams' alert rules as events arrive: a pure step over in-memory state.

``observe`` takes a take's events (in offset order) and returns the alert messages they cause and
the state entries they changed; ``tick`` does the same for the rules that depend on time passing
with no data (``stalled``, ``no_heartbeat``). The runner persists the changed entries
(``alert_state``) and the messages (``alerts``) before it stores the take, and loads a run's
entries from there the first time it meets the run (after a start or a rebalance, which clears
them). A record is evaluated once: each run keeps, per producer and topic, the highest sequence
number evaluated, so a replay after a restart changes nothing.

An *episode* is the time a rule's condition holds for one run and key: it fires one message when
it begins and one when it ends (its recovery). A new episode within the rule's ``wait_duration_s``
of the last one sent is stored but not sent (``suppressed``), as W&B spaces its alerts.
"""

from __future__ import annotations

import functools
import hashlib
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from runstream_core import alert_rules as ar
from runstream_core.columns import to_batch
from runstream_core.events import (
    COLUMN_EVENTS,
    Event,
    HardwareBatch,
    Heartbeat,
    MetricBatch,
    RunAlert,
    RunEnd,
    RunInfo,
    RunStart,
    RunUpdate,
)
from runstream_core.hardware_keys import GPU_UTILIZATION_PERCENT
from runstream_core.log import get_logger
from runstream_worker.alerts.state import RUN_ENTRY, EntryState, RunKey, RunState, entry_name
from runstream_worker.tables import alerts as table
from runstream_worker.tables.alerts import AlertMessage

log = get_logger("runstream.alerts")

MAX_DEFERRED = 32
"""Batches of points kept per run while its group and tags are unknown."""

FORGET_ENDED_MS = 600_000
"""An ended run is forgotten this long after its last record (its state stays in ``alert_state``)."""
FORGET_OPEN_MS = 7 * 86_400_000
"""A run that never ended is forgotten after a week of silence (its ``no_heartbeat`` alert long sent)."""

MAX_SUBJECTS = 64
"""Keys (metrics, GPUs) one rule watches per run; more are ignored, with one warning."""

Rules = Mapping[str, ar.RuleSet]
"""The rules in force, by team."""


@functools.lru_cache(maxsize=1024)
def fingerprint(rule: ar.Rule) -> str:
    """The rule's definition, hashed (cached: rules are frozen and looked up per point)."""
    return hashlib.sha1(ar.encode_rule(rule), usedforsecurity=False).hexdigest()[:16]


@dataclass
class Outcome:
    messages: list[AlertMessage] = field(default_factory=list)
    dirty: set[tuple[RunKey, str]] = field(default_factory=set)

    def add(self, other: Outcome) -> None:
        self.messages.extend(other.messages)
        self.dirty |= other.dirty


def _run_key(event: Event) -> RunKey:
    if isinstance(event, (MetricBatch, HardwareBatch, *COLUMN_EVENTS)):
        return (event.team, event.project, event.run_id)
    return (event.run.team, event.run.project, event.run.run_id)


def _topic(event: Event) -> str:
    return "m" if isinstance(event, MetricBatch) else "h" if isinstance(event, HardwareBatch) else "r"


def _describe(value: float) -> str:
    return f"{value:.6g}"


class AlertEngine:
    """The rules' state for the runs this worker owns now."""

    def __init__(self) -> None:
        self.runs: dict[RunKey, RunState] = {}
        self.entries: dict[RunKey, dict[str, EntryState]] = {}
        self._warned: set[tuple[RunKey, str]] = set()
        self.deferred: dict[RunKey, list[Event]] = {}
        """Points of runs whose group and tags are not known yet, for the rules scoped by them."""
        self._warned_deferred: set[RunKey] = set()

    # -- what to load -------------------------------------------------------------------
    @staticmethod
    def concerns(events: Iterable[Event], rules: Rules) -> set[RunKey]:
        """The runs of ``events`` that rules (or a job's own alert) may concern."""
        return {_run_key(e) for e in events if _run_key(e)[0] in rules or isinstance(e, RunAlert)}

    def unknown(self, keys: Iterable[RunKey]) -> set[RunKey]:
        return {k for k in keys if k not in self.runs}

    def without_info(self, keys: Iterable[RunKey]) -> set[RunKey]:
        return {k for k in keys if k in self.runs and not self.runs[k].info_known}

    def load(self, key: RunKey, run: RunState | None, entries: Mapping[str, EntryState]) -> None:
        """A run's state as stored (nothing stored: a run met for the first time); a run another
        take loaded meanwhile is kept as it is."""
        if key in self.runs:
            return
        self.runs[key] = run if run is not None else RunState()
        self.entries[key] = dict(entries)

    def set_info(self, key: RunKey, group: str, tags: Mapping[str, str], name: str, status: str) -> None:
        """Group, tags and name of a run from the ``runs`` table."""
        state = self.runs.get(key)
        if state is not None and not state.info_known:
            state.group, state.tags, state.name, state.info_known = group, dict(tags), name, True
            if status and status != "running":
                state.open = False

    def clear(self) -> None:
        """Forget every run (partitions were revoked: another worker may own them now)."""
        self.runs.clear()
        self.entries.clear()
        self.deferred.clear()

    # -- evaluation ----------------------------------------------------------------------
    def observe(self, events: Iterable[Event], rules: Rules, now_ms: int) -> Outcome:
        """Evaluate ``events`` (their runs loaded); each record once (see the module's docstring)."""
        out = Outcome()
        for received in events:
            key = _run_key(received)
            run = self.runs.get(key)
            if run is None:
                continue  # no rules for its team, nothing to keep
            # Wire format v2: its points as lists, for the runs some rule concerns only.
            event = to_batch(received) if isinstance(received, COLUMN_EVENTS) else received
            if event.producer_id:
                mark = f"{event.producer_id}/{_topic(event)}"
                if event.seq <= run.marks.get(mark, -1):
                    continue
                run.marks[mark] = event.seq
            out.dirty.add((key, RUN_ENTRY))
            ruleset = rules.get(key[0])
            self._observe_run(key, run, event, now_ms)
            if isinstance(event, RunAlert):
                out.messages.append(self._raised(key, run, event, ruleset, now_ms))
                continue
            if ruleset is None:
                continue
            self._catch_up(key, run, ruleset, now_ms, out)
            deferred = self._evaluate(key, run, event, ruleset.rules, now_ms, out)
            if deferred:
                self._defer(key, event)
            if isinstance(event, (Heartbeat, MetricBatch)) and run.open:
                out.add(self._timed(key, run, ruleset, now_ms))
            if isinstance(event, RunEnd):
                self._resolve_all(key, run, ruleset, now_ms, "the run ended", out)
        return out

    def _evaluate(
        self, key: RunKey, run: RunState, event: Event, rules: Iterable[ar.Rule], now_ms: int, out: Outcome
    ) -> bool:
        """Evaluate ``event`` with ``rules``; returns whether some rule needs the run's group and
        tags, not known yet (its points are kept until they are)."""
        deferred = False
        for rule in rules:
            if _needs_info(rule) and not run.info_known:
                deferred = deferred or isinstance(event, (MetricBatch, HardwareBatch))
                continue
            if not self._in_scope(key, run, rule):
                continue
            if isinstance(event, MetricBatch) and isinstance(rule, ar.METRIC_RULES):
                self._metric(key, run, rule, event, now_ms, out)
            elif isinstance(event, HardwareBatch) and isinstance(rule, ar.GpuIdleRule):
                self._gpu(key, run, rule, event, now_ms, out)
            elif isinstance(event, RunEnd) and isinstance(rule, ar.FailedRule) and event.status.value in rule.statuses:
                self._one_shot(key, run, rule, f"run ended {event.status.value}", event.step, now_ms, out)
        return deferred

    def _defer(self, key: RunKey, event: Event) -> None:
        """Keep a run's points for the rules scoped by group or tags until its start is read (its
        lifecycle events travel on another topic, read by another agent)."""
        held = self.deferred.setdefault(key, [])
        if len(held) < MAX_DEFERRED:
            held.append(event)
        elif key not in self._warned_deferred:
            self._warned_deferred.add(key)
            log.warning("run's group and tags still unknown; its later points skip rules scoped by them", run_id=key[2])

    def _catch_up(self, key: RunKey, run: RunState, ruleset: ar.RuleSet, now_ms: int, out: Outcome) -> None:
        """Evaluate the points kept for a run whose group and tags are known now."""
        if not run.info_known or key not in self.deferred:
            return
        scoped = [rule for rule in ruleset.rules if _needs_info(rule)]
        for event in self.deferred.pop(key):
            self._evaluate(key, run, event, scoped, now_ms, out)

    def tick(self, rules: Rules, now_ms: int) -> Outcome:
        """The time-based rules over every open run known (runs long quiet are forgotten first:
        their state is stored, and read again if they send anything)."""
        self._forget_quiet(now_ms)
        out = Outcome()
        for key, run in self.runs.items():
            ruleset = rules.get(key[0])
            if ruleset is not None and run.open:
                out.add(self._timed(key, run, ruleset, now_ms))
        return out

    def _forget_quiet(self, now_ms: int) -> None:
        quiet = [
            key
            for key, run in self.runs.items()
            if now_ms - run.last_seen_ms > (FORGET_ENDED_MS if not run.open else FORGET_OPEN_MS)
        ]
        for key in quiet:
            del self.runs[key]
            self.entries.pop(key, None)
            self.deferred.pop(key, None)

    def crashed(self, info: RunInfo, rules: Rules, now_ms: int) -> Outcome:
        """A run the liveness tracker marked crashed: ``failed`` rules that list ``crashed``."""
        out = Outcome()
        key = (info.team, info.project, info.run_id)
        run, ruleset = self.runs.get(key), rules.get(info.team)
        if run is None or ruleset is None:
            return out
        for rule in ruleset.rules:
            if isinstance(rule, ar.FailedRule) and "crashed" in rule.statuses and self._in_scope(key, run, rule):
                self._one_shot(key, run, rule, "run crashed: its heartbeats stopped", run.last_step, now_ms, out)
        return out

    def _observe_run(self, key: RunKey, run: RunState, event: Event, now_ms: int) -> None:
        if isinstance(event, (RunStart, RunUpdate, RunEnd, Heartbeat, RunAlert)):
            info = event.run
            run.group, run.tags, run.name, run.info_known = info.group, dict(info.tags), info.name, True
        if isinstance(event, RunStart):
            run.open = True
        elif isinstance(event, RunEnd):
            run.open = False
            return
        if not run.open:
            return
        run.last_seen_ms = max(run.last_seen_ms, now_ms)
        step = -1
        if isinstance(event, Heartbeat):
            step = event.step
        elif isinstance(event, MetricBatch) and event.steps:
            step = max(event.steps)
        if step > run.last_step:
            run.last_step, run.step_moved_ms = step, now_ms
        elif not run.step_moved_ms:
            run.step_moved_ms = now_ms

    def _in_scope(self, key: RunKey, run: RunState, rule: ar.Rule) -> bool:
        scope = rule.scope
        if not ar.matches(scope.project, key[1]):
            return False
        if scope.group is None and not scope.tags:
            return True
        if not run.info_known:
            return False
        if scope.group is not None and not ar.matches(scope.group, run.group):
            return False
        return all(tag in run.tags for tag in scope.tags)

    def _entry(self, key: RunKey, rule: ar.Rule, subject: str) -> EntryState | None:
        entries = self.entries.setdefault(key, {})
        name = entry_name(rule.name, subject)
        found = entries.get(name)
        mark = fingerprint(rule)
        if found is not None and found.fingerprint == mark:
            return found
        if found is None and sum(1 for n in entries if n.startswith(f"{rule.name}/")) >= MAX_SUBJECTS:
            if (key, rule.name) not in self._warned:
                self._warned.add((key, rule.name))
                log.warning(
                    "alert rule watches too many keys of one run; ignoring more", rule=rule.name, limit=MAX_SUBJECTS
                )
            return None
        entries[name] = EntryState(fingerprint=mark)
        return entries[name]

    def _metric(self, key: RunKey, run: RunState, rule: ar.Rule, batch: MetricBatch, now_ms: int, out: Outcome) -> None:
        pattern = rule.metric  # type: ignore[union-attr]
        for name, step, value in zip(batch.keys, batch.steps, batch.values, strict=True):
            if not ar.matches(pattern, name):
                continue
            entry = self._entry(key, rule, name)
            if entry is None:
                continue
            holds, detail = _condition(rule, entry, value)
            self._episode(key, run, rule, entry, name, holds, detail, value, step, now_ms, out)

    def _gpu(
        self, key: RunKey, run: RunState, rule: ar.GpuIdleRule, batch: HardwareBatch, now_ms: int, out: Outcome
    ) -> None:
        if not run.open:
            return
        for name, device, ts, value in zip(batch.keys, batch.devices, batch.ts_ms, batch.values, strict=True):
            if name != GPU_UTILIZATION_PERCENT or not ar.matches(rule.device, device):
                continue
            entry = self._entry(key, rule, device)
            if entry is None:
                continue
            if value < rule.below_percent:
                if entry.below_since_ms is None or ts < entry.below_since_ms:
                    entry.below_since_ms = ts
                holds = ts - entry.below_since_ms >= rule.for_s * 1000
            else:
                entry.below_since_ms, holds = None, False
            detail = (
                f"{device} utilization {_describe(value)} % "
                f"below {_describe(rule.below_percent)} % for {rule.for_s:g} s"
            )
            self._episode(key, run, rule, entry, device, holds, detail, value, run.last_step, now_ms, out)

    def _timed(self, key: RunKey, run: RunState, ruleset: ar.RuleSet | None, now_ms: int) -> Outcome:
        out = Outcome()
        if ruleset is None:
            return out
        for rule in ruleset.rules:
            if not isinstance(rule, ar.TIMED_RULES) or not self._in_scope(key, run, rule):
                continue
            after_ms = rule.after_s * 1000
            quiet_ms = now_ms - run.last_seen_ms
            if isinstance(rule, ar.NoHeartbeatRule):
                holds = run.last_seen_ms > 0 and quiet_ms >= after_ms
                detail = f"nothing received for {quiet_ms / 1000:.0f} s" if holds else "the run is sending again"
            else:
                still_ms = now_ms - run.step_moved_ms
                holds = run.step_moved_ms > 0 and still_ms >= after_ms and quiet_ms < after_ms
                detail = f"step {run.last_step} has not moved for {still_ms / 1000:.0f} s"
                if not holds:
                    detail = f"step moved to {run.last_step}" if still_ms < after_ms else "the run went quiet"
            entry = self._entry(key, rule, "")
            if entry is not None and holds != entry.firing:
                self._episode(key, run, rule, entry, "", holds, detail, None, run.last_step, now_ms, out)
        return out

    def _episode(
        self,
        key: RunKey,
        run: RunState,
        rule: ar.Rule,
        entry: EntryState,
        subject: str,
        holds: bool,
        detail: str,
        value: float | None,
        step: int,
        now_ms: int,
        out: Outcome,
    ) -> None:
        out.dirty.add((key, entry_name(rule.name, subject)))
        if holds == entry.firing:
            return
        if holds:
            entry.firing, entry.episode = True, entry.episode + 1
            entry.notified = bool(rule.notify) and (
                not entry.last_sent_ms or now_ms - entry.last_sent_ms >= rule.wait_duration_s * 1000
            )
            if entry.notified:
                entry.last_sent_ms = now_ms
            delivery = table.PENDING if entry.notified else (table.SUPPRESSED if rule.notify else table.NONE)
            out.messages.append(
                self._message(key, run, rule, entry, subject, table.FIRED, detail, value, step, now_ms, delivery)
            )
        else:
            entry.firing = False
            delivery = table.PENDING if entry.notified else (table.SUPPRESSED if rule.notify else table.NONE)
            text = f"recovered: {detail}" if detail else "recovered"
            out.messages.append(
                self._message(key, run, rule, entry, subject, table.RESOLVED, text, value, step, now_ms, delivery)
            )

    def _one_shot(
        self, key: RunKey, run: RunState, rule: ar.Rule, detail: str, step: int, now_ms: int, out: Outcome
    ) -> None:
        entry = self._entry(key, rule, "")
        if entry is None:
            return
        self._episode(key, run, rule, entry, "", True, detail, None, step, now_ms, out)
        entry.firing = False  # a run ends once: no recovery to wait for

    def _resolve_all(
        self, key: RunKey, run: RunState, ruleset: ar.RuleSet | None, now_ms: int, why: str, out: Outcome
    ) -> None:
        if ruleset is None:
            return
        by_name = {rule.name: rule for rule in ruleset.rules}
        for name, entry in self.entries.get(key, {}).items():
            rule = by_name.get(name.split("/", 1)[0])
            if rule is not None and entry.firing:
                subject = name.split("/", 1)[1]
                self._episode(key, run, rule, entry, subject, False, why, None, run.last_step, now_ms, out)

    def _message(
        self,
        key: RunKey,
        run: RunState,
        rule: ar.Rule,
        entry: EntryState,
        subject: str,
        event: str,
        detail: str,
        value: float | None,
        step: int,
        now_ms: int,
        delivery: str,
    ) -> AlertMessage:
        team, project, run_id = key
        kind = _kind(rule)
        what = f"{rule.name} [{kind}]" + (f" {subject}" if subject else "")
        title = (
            f"{'RESOLVED' if event == table.RESOLVED else rule.level.value}: {what} in {project}/{run.name or run_id}"
        )
        text = detail + (f"\n{rule.text}" if rule.text else "")
        return AlertMessage(
            team,
            project,
            run_id,
            f"{rule.name}/{subject}/{entry.episode}/{event}",
            rule.name,
            kind,
            subject,
            event,
            rule.level.value,
            title[:1024],
            text,
            value if value is None or math.isfinite(value) else None,
            step,
            now_ms,
            rule.notify if delivery == table.PENDING else (),
            delivery,
            run_name=run.name,
        )

    def _raised(
        self, key: RunKey, run: RunState, event: RunAlert, ruleset: ar.RuleSet | None, now_ms: int
    ) -> AlertMessage:
        hooks: list[str] = []
        for rule in ruleset.rules if ruleset is not None else ():
            if (
                isinstance(rule, ar.RunAlertRule)
                and ar.LEVEL_RANK[event.level] >= ar.LEVEL_RANK[rule.level]
                and ar.matches(rule.title, event.title)
                and self._in_scope(key, run, rule)
            ):
                hooks.extend(h for h in rule.notify if h not in hooks)
        ident = f"{event.producer_id}/{event.seq}" if event.producer_id else f"{event.ts_ms}/{event.title}"
        team, project, run_id = key
        return AlertMessage(
            team,
            project,
            run_id,
            f"run_alert/{ident}",
            "",
            "run_alert",
            "",
            table.RAISED,
            event.level.value,
            event.title,
            event.text,
            None,
            run.last_step,
            now_ms,
            tuple(hooks),
            table.PENDING if hooks else table.NONE,
            run_name=run.name,
        )


def _needs_info(rule: ar.Rule) -> bool:
    return rule.scope.group is not None or bool(rule.scope.tags)


def _kind(rule: ar.Rule) -> str:
    return type(rule).__struct_config__.tag  # type: ignore[return-value]


def _condition(rule: ar.Rule, entry: EntryState, value: float) -> tuple[bool, str]:
    """Whether a metric rule's condition holds with ``value`` as the newest point, and why; updates
    the rule's window."""
    if isinstance(rule, ar.NanRule):
        return not math.isfinite(value), f"value is {value}"
    if not math.isfinite(value):
        return entry.firing, ""  # not a number to compare: the episode stays as it is
    if isinstance(rule, ar.ThresholdRule):
        return _threshold(rule, entry.window, value)
    size = rule.window  # type: ignore[union-attr]
    previous = list(entry.window)
    entry.window.append(value)
    del entry.window[:-size]
    if len(previous) < size:
        return False, ""
    if isinstance(rule, ar.ChangeRule):
        return _change(rule, previous, value)
    assert isinstance(rule, ar.ZScoreRule)
    return _zscore(rule, previous, value)


def _threshold(rule: ar.ThresholdRule, window: list[float], value: float) -> tuple[bool, str]:
    window.append(value)
    del window[: -rule.window]
    if len(window) < rule.window:
        return False, ""
    seen = statistics.fmean(window) if rule.window > 1 else value
    what = f"average of the last {rule.window}" if rule.window > 1 else "value"
    if rule.above is not None:
        return seen > rule.above, f"{what} {_describe(seen)} above {_describe(rule.above)}"
    bound = rule.below if rule.below is not None else math.inf
    return seen < bound, f"{what} {_describe(seen)} below {_describe(bound)}"


def _change(rule: ar.ChangeRule, previous: list[float], value: float) -> tuple[bool, str]:
    mean = statistics.fmean(previous)
    change = abs(value - mean) / abs(mean) if mean else (math.inf if value != mean else 0.0)
    return change > rule.max_relative, (
        f"value {_describe(value)} is {change:.1%} off the average {_describe(mean)} of the previous {rule.window}"
    )


def _zscore(rule: ar.ZScoreRule, previous: list[float], value: float) -> tuple[bool, str]:
    mean = statistics.fmean(previous)
    spread = statistics.pstdev(previous, mean)
    z = abs(value - mean) / spread if spread else (math.inf if value != mean else 0.0)
    return z > rule.max_z, (
        f"value {_describe(value)} has z-score {z:.2f} over the previous {rule.window} (mean {_describe(mean)})"
    )
