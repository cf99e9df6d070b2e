"""A team's alert rules as code: the typed schema, its bounds, and validation with errors that name
the rule and the field.

A rules file holds one team's rules and webhooks (``deploy/alerts.example.yaml``). ``runstream
alerts check`` validates it, ``runstream alerts apply`` validates it and publishes it, versioned,
on the compacted ``<prefix>alert-rules`` topic (one record per team); the worker reads that topic
and swaps the team's rules in without a restart. A rule set the worker cannot validate is refused
and the team's previous rules stay in force.

Kinds: metric values (``nan``, ``threshold``, ``change``, ``zscore``), runs (``stalled``,
``no_heartbeat``, ``failed``), hardware (``gpu_idle``), and ``run_alert``, which routes the alerts
a job raises itself (``run.alert()``). Every name pattern is a glob (``fnmatch``), never a regular
expression: a glob cannot backtrack without bound on a hostile key.
"""

from __future__ import annotations

import enum
import fnmatch
import functools
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

import msgspec

from runstream_core.errors import UsageError
from runstream_core.events import MAX_KEY_LEN, NO_CONTROL_PATTERN, TEAM_NAME_WIRE_PATTERN, AlertLevel

RULES_VERSION: Final = 1
MAX_RULES: Final = 200
MAX_WEBHOOKS: Final = 20
MAX_WINDOW: Final = 1_000
"""Points a window may hold: the worker keeps them per run, rule and key."""
MAX_DURATION_S: Final = 7 * 86_400
MAX_WAIT_S: Final = 30 * 86_400
MAX_TAGS: Final = 32
MAX_RULE_SET_BYTES: Final = 512 * 1024
"""A published rule set fits one Kafka record with room to spare."""

RULE_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_.\-]{0,63}$(?!\n)"
SECRET_NAME_PATTERN: Final = r"^[A-Z][A-Z0-9_]{0,63}$(?!\n)"  # noqa: S105 - a name, not a secret

RuleName = Annotated[str, msgspec.Meta(pattern=RULE_NAME_PATTERN)]
SecretName = Annotated[str, msgspec.Meta(pattern=SECRET_NAME_PATTERN)]
Glob = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KEY_LEN, pattern=NO_CONTROL_PATTERN)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KEY_LEN, pattern=NO_CONTROL_PATTERN)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_DURATION_S)]
WaitSeconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_WAIT_S)]
Window = Annotated[int, msgspec.Meta(ge=1, le=MAX_WINDOW)]
Text = Annotated[str, msgspec.Meta(max_length=1024)]


class RulesError(UsageError):
    """A rules file that cannot be used; the message names the rule and the field."""


Level = AlertLevel
LEVEL_RANK: Final = {Level.INFO: 0, Level.WARN: 1, Level.ERROR: 2}


class WebhookFormat(enum.StrEnum):
    JSON = "json"
    SLACK = "slack"
    DISCORD = "discord"


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Webhook(_Strict, frozen=True, kw_only=True):
    """Where alerts go. The URL (and an optional bearer token) are secrets: the file names them, the
    worker reads them from its environment as ``RUNSTREAM_TEAM_<TEAM>_ALERT_<NAME>``."""

    name: RuleName
    format: WebhookFormat = WebhookFormat.JSON
    url_secret: SecretName
    token_secret: SecretName | None = None


class Scope(_Strict, frozen=True, kw_only=True):
    """Which of the team's runs a rule watches: project and group globs, and tags every run must carry."""

    project: Glob = "*"
    group: Glob | None = None
    tags: Annotated[tuple[Tag, ...], msgspec.Meta(max_length=MAX_TAGS)] = ()


class _Rule(_Strict, frozen=True, kw_only=True, tag_field="kind"):
    name: RuleName
    scope: Scope = Scope()
    level: Level = Level.WARN
    wait_duration_s: WaitSeconds = 300.0
    """A new episode of the same rule, run and key within this long of the last alert is not sent
    (W&B's ``wait_duration``); it is still stored."""
    notify: Annotated[tuple[RuleName, ...], msgspec.Meta(max_length=MAX_WEBHOOKS)] = ()
    text: Text = ""
    """Added to the alert's message."""


class NanRule(_Rule, frozen=True, kw_only=True, tag="nan"):
    """A metric whose value is NaN or +/-inf."""

    metric: Glob


class ThresholdRule(_Rule, frozen=True, kw_only=True, tag="threshold"):
    """A metric's value (``window`` 1) or the average of its last ``window`` points above or below a bound."""

    metric: Glob
    above: float | None = None
    below: float | None = None
    window: Window = 1


class ChangeRule(_Rule, frozen=True, kw_only=True, tag="change"):
    """A metric's value off the average of its previous ``window`` points by more than ``max_relative``
    of that average (0.5: 50 %)."""

    metric: Glob
    window: Window = 10
    max_relative: Annotated[float, msgspec.Meta(gt=0)]


class ZScoreRule(_Rule, frozen=True, kw_only=True, tag="zscore"):
    """A metric's value more than ``max_z`` standard deviations from its previous ``window`` points."""

    metric: Glob
    window: Annotated[int, msgspec.Meta(ge=3, le=MAX_WINDOW)] = 30
    max_z: Annotated[float, msgspec.Meta(gt=0)] = 3.0


class StalledRule(_Rule, frozen=True, kw_only=True, tag="stalled"):
    """A running run whose step has not moved for ``after_s`` (the worker's clock)."""

    after_s: Seconds


class NoHeartbeatRule(_Rule, frozen=True, kw_only=True, tag="no_heartbeat"):
    """A run that has not ended and sent nothing for ``after_s`` (crashed, or its node is gone)."""

    after_s: Seconds


class FailedRule(_Rule, frozen=True, kw_only=True, tag="failed"):
    """A run that ended with one of ``statuses``."""

    statuses: Annotated[tuple[Literal["failed", "killed", "crashed"], ...], msgspec.Meta(min_length=1)] = ("failed",)


class GpuIdleRule(_Rule, frozen=True, kw_only=True, tag="gpu_idle"):
    """A GPU of a running run below ``below_percent`` utilization in every reading for ``for_s``
    (the readings' own times)."""

    below_percent: Annotated[float, msgspec.Meta(gt=0, le=100)] = 5.0
    for_s: Seconds
    device: Glob = "gpu*"


class RunAlertRule(_Rule, frozen=True, kw_only=True, tag="run_alert"):
    """Sends the alerts jobs raise with ``run.alert()`` at ``level`` or above (they are stored either way)."""

    title: Glob = "*"


Rule = (
    NanRule
    | ThresholdRule
    | ChangeRule
    | ZScoreRule
    | StalledRule
    | NoHeartbeatRule
    | FailedRule
    | GpuIdleRule
    | RunAlertRule
)
METRIC_RULES: Final = (NanRule, ThresholdRule, ChangeRule, ZScoreRule)
TIMED_RULES: Final = (StalledRule, NoHeartbeatRule)
KINDS: Final = ("nan", "threshold", "change", "zscore", "stalled", "no_heartbeat", "failed", "gpu_idle", "run_alert")


class RuleSet(_Strict, frozen=True, kw_only=True):
    """One team's rules and webhooks; ``version`` is set when applied (milliseconds since the epoch)."""

    team: Annotated[str, msgspec.Meta(pattern=TEAM_NAME_WIRE_PATTERN)]
    webhooks: Annotated[tuple[Webhook, ...], msgspec.Meta(max_length=MAX_WEBHOOKS)] = ()
    rules: Annotated[tuple[Rule, ...], msgspec.Meta(max_length=MAX_RULES)] = ()
    version: Annotated[int, msgspec.Meta(ge=0)] = 0
    schema: Literal[1] = RULES_VERSION

    def webhook(self, name: str) -> Webhook:
        return next(w for w in self.webhooks if w.name == name)


def secret_env(team: str, name: str) -> str:
    """The environment variable that holds a team's webhook secret ``name``."""
    return f"RUNSTREAM_TEAM_{team.upper()}_ALERT_{name}"


@functools.lru_cache(maxsize=4096)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a compiled pattern (``fnmatch``'s translation, which runs in linear time)."""
    return re.compile(fnmatch.translate(pattern))


@functools.lru_cache(maxsize=65_536)
def matches(pattern: str, name: str) -> bool:
    """Whether ``name`` matches the glob ``pattern`` (cached: a run's keys repeat in every batch)."""
    return pattern == "*" or glob_regex(pattern).match(name) is not None


def _check_glob(where: str, field: str, pattern: str) -> None:
    # fnmatch takes a '[' without its ']' literally, which is never what was meant.
    for opened in re.finditer(r"\[", pattern):
        if "]" not in pattern[opened.start() + 2 :]:
            raise RulesError(f"{where}.{field}: glob {pattern!r} opens a '[' it does not close")


def _rule_name(raw: Any, index: int) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    return f"rules[{index}] ({name!r})" if isinstance(name, str) else f"rules[{index}]"


def _field_of(message: str) -> tuple[str, str]:
    """msgspec's ``"... - at `$.a[0].b`"`` split into the problem and the path after ``$``."""
    problem, _, path = message.partition(" - at `$")
    return problem, path.rstrip("`")


def validate(data: Any, source: str = "rules file") -> RuleSet:
    """A rule set from decoded YAML or JSON ``data``; :class:`RulesError` names ``source``, the rule
    (index and name) and the field."""
    if not isinstance(data, Mapping):
        raise RulesError(f"{source}: expected a mapping with 'team', 'webhooks' and 'rules' at the top level")
    rules = data.get("rules", [])
    if not isinstance(rules, list):
        raise RulesError(f"{source}: rules: expected a list")
    if len(rules) > MAX_RULES:
        raise RulesError(f"{source}: rules: {len(rules)} rules, at most {MAX_RULES}")
    for index, raw in enumerate(rules):
        where = f"{source}: {_rule_name(raw, index)}"
        if not isinstance(raw, Mapping):
            raise RulesError(f"{where}: expected a mapping")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise RulesError(f"{where}.kind: unknown kind {kind!r}; one of {', '.join(KINDS)}")
        try:
            msgspec.convert(raw, Rule, strict=False)
        except msgspec.ValidationError as exc:
            problem, path = _field_of(str(exc))
            raise RulesError(f"{where}{path}: {problem}") from None
    try:
        ruleset = msgspec.convert(dict(data), RuleSet, strict=False)
    except msgspec.ValidationError as exc:
        problem, path = _field_of(str(exc))
        raise RulesError(f"{source}: {path.lstrip('.') or '(top level)'}: {problem}") from None
    _check_references(ruleset, source)
    return ruleset


def _check_references(ruleset: RuleSet, source: str) -> None:
    seen: set[str] = set()
    for index, webhook in enumerate(ruleset.webhooks):
        if webhook.name in seen:
            raise RulesError(f"{source}: webhooks[{index}].name: duplicate webhook {webhook.name!r}")
        seen.add(webhook.name)
    names: set[str] = set()
    for index, rule in enumerate(ruleset.rules):
        where = f"{source}: rules[{index}] ({rule.name!r})"
        if rule.name in names:
            raise RulesError(f"{where}.name: duplicate rule name")
        names.add(rule.name)
        for target in rule.notify:
            if target not in seen:
                raise RulesError(f"{where}.notify: no webhook named {target!r} in this file")
        globs = {"scope.project": rule.scope.project, "scope.group": rule.scope.group}
        for field in ("metric", "device", "title"):
            globs[field] = getattr(rule, field, None)
        for field, pattern in globs.items():
            if pattern is not None:
                _check_glob(where, field, pattern)
        if isinstance(rule, ThresholdRule) and (rule.above is None) == (rule.below is None):
            raise RulesError(f"{where}: a threshold rule takes exactly one of 'above' and 'below'")
        for field in ("above", "below", "max_relative", "max_z"):
            value = getattr(rule, field, None)
            if value is not None and not math.isfinite(value):
                raise RulesError(f"{where}.{field}: must be a finite number")


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(RuleSet)


def encode(ruleset: RuleSet) -> bytes:
    """A rule set as the JSON the rules topic carries."""
    return _encoder.encode(ruleset)


def decode(payload: bytes, source: str = "alert-rules record") -> RuleSet:
    """A rule set read back from the rules topic, validated exactly as ``validate`` does."""
    if len(payload) > MAX_RULE_SET_BYTES:
        raise RulesError(f"{source}: {len(payload)} bytes, over the limit of {MAX_RULE_SET_BYTES}")
    try:
        data = msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise RulesError(f"{source}: not valid JSON: {exc}") from None
    return validate(data, source)


def encode_rule(rule: Rule) -> bytes:
    """One rule as JSON (its fingerprint is taken from this)."""
    return _encoder.encode(rule)
