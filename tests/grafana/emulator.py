"""A test-only emulator of Grafana and its ClickHouse plugin: expands a panel's SQL as they do.

Grafana first interpolates dashboard variables (``$team``, ``${run:percentencode}``) in the browser,
then the plugin's backend expands its macros (``$__timeFilter(ts)``, ``$__interval_s``). Only the
macros the dashboards use are supported; anything else is an error rather than SQL left half
expanded.

Variable values are given as Grafana stores them: a variable's value is the *value* of the option
chosen, which for the dashboards' query variables is ``encodeURLComponent(text)`` (see
``option_value``), and a multi-value variable's value is a list.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from grafana_foundation_sdk.models.dashboard import Dashboard

from runstream_core.errors import UsageError
from runstream_grafana.dashboards.catalog import DASHBOARDS
from runstream_grafana.dashboards.queries import queries_of, starting_values, variables_of
from runstream_grafana.dashboards.variables import ALL, ALL_VALUE

# Grafana's interpolation pattern (public/app/features/variables/utils.ts, variableRegex):
# $name, [[name:format]], ${name.fieldPath:format}.
_VARIABLE = re.compile(
    r"\$(?P<bare>\w+)|\[\[(?P<old>\w+?)(?::(?P<old_format>\w+))?\]\]"
    r"|\$\{(?P<braced>\w+)(?:\.(?P<path>[^:^}]+))?(?::(?P<format>[^}]+))?\}"
)
_MACRO = re.compile(r"\$__(?P<name>\w+)")


class MacroError(UsageError):
    """The SQL uses a variable, format or macro the expander does not know, or uses it wrongly."""


@dataclass(frozen=True)
class QueryContext:
    """What Grafana supplies when it runs a query: the time range, the interval, the variables.

    ``values``: each variable's value as Grafana stores it, a string (one value) or a list (the
    values of a multi-value variable; ``[ALL]`` or ``ALL`` for All).
    """

    time_from_ms: int
    time_to_ms: int
    interval_s: int = 60
    values: Mapping[str, str | Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.time_from_ms >= self.time_to_ms:
            raise MacroError(f"time range is empty: from {self.time_from_ms} ms is not before to {self.time_to_ms} ms")
        if self.interval_s < 1:
            raise MacroError(f"interval_s must be at least 1, got {self.interval_s}")
        for name, value in self.values.items():
            if not isinstance(value, str) and not value:
                raise MacroError(f"variable {name!r} has no value: give a string or a non-empty list")


def encode_uri_component_strict(value: str) -> str:
    """Grafana's ``encodeURIComponentStrict``: JavaScript's ``encodeURIComponent`` (UTF-8) that also
    escapes ``!'()*``, so that only ``A-Za-z0-9-_.~`` and ``%XX`` (upper-case hex) remain."""
    return urllib.parse.quote(value, safe="")


def _percentencode(value: str | list[str]) -> str:
    """Grafana's ``percentencode`` format: a list is wrapped in braces and joined by commas first."""
    if isinstance(value, list):
        return encode_uri_component_strict("{" + ",".join(value) + "}")
    return encode_uri_component_strict(value)


def _quote(value: str, quote: str) -> str:
    return quote + value.replace(quote, "\\" + quote) + quote


def _joined(fmt: Callable[[str], str]) -> Callable[[str | list[str]], str]:
    return lambda value: ",".join(fmt(v) for v in ([value] if isinstance(value, str) else value))


_FORMATS: dict[str, Callable[[str | list[str]], str]] = {
    # The plugin's own default: lists become a quoted, comma separated list; one value stays raw.
    "": lambda value: value if isinstance(value, str) else ",".join(_quote(v, "'") for v in value),
    "raw": _joined(str),
    "csv": _joined(str),
    "text": _joined(str),
    "singlequote": _joined(lambda v: _quote(v, "'")),
    "doublequote": _joined(lambda v: _quote(v, '"')),
    "sqlstring": _joined(lambda v: "'" + v.replace("'", "''") + "'"),
    "percentencode": _percentencode,
}


def _format_all(fmt: str) -> str:
    """A custom all value is inserted as it is, except in the text and percentencode formats
    (Grafana's CustomAllValue.formatter and templateSrv both percent-encode it)."""
    if fmt == "text":
        return "All"
    if fmt == "percentencode":
        return _percentencode(ALL_VALUE)
    return ALL_VALUE


def _format_variable(name: str, fmt: str, context: QueryContext) -> str:
    if name not in context.values:
        raise MacroError(f"variable ${name} has no value: pass it in the variables")
    if fmt not in _FORMATS:
        raise MacroError(
            f"unknown format {fmt!r} in ${{{name}:{fmt}}}; known: {', '.join(sorted(f for f in _FORMATS if f))}"
        )
    value = context.values[name]
    values = [value] if isinstance(value, str) else list(value)
    if values == [ALL]:
        return _format_all(fmt)
    if ALL in values:
        raise MacroError(f"variable ${name}: {ALL} (All) cannot be combined with other values")
    return _FORMATS[fmt](value if isinstance(value, str) else values)


def expand_variables(sql: str, context: QueryContext) -> str:
    """Interpolates dashboard variables; names starting with ``__`` are left for the macros."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare") or match.group("old")
        if name.startswith("__"):
            return match.group(0)
        if match.group("path"):
            raise MacroError(f"field paths are not supported: {match.group(0)}")
        return _format_variable(name, match.group("format") or match.group("old_format") or "", context)

    return _VARIABLE.sub(replace, sql)


def _macro_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of the macro call whose ``(`` is at ``open_paren``, and the index after its ``)``."""
    depth, start, args = 0, open_paren + 1, []
    for i in range(open_paren, len(sql)):
        char = sql[i]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i].strip())
                return ([] if args == [""] else args), i + 1
        elif char == "," and depth == 1:
            args.append(sql[start:i].strip())
            start = i + 1
    raise MacroError(f"unbalanced parentheses after macro at: {sql[max(0, open_paren - 20) : open_paren + 40]!r}")


def _datetime(ms: int) -> str:
    return f"toDateTime({ms // 1000})"


def _datetime64(ms: int) -> str:
    return f"fromUnixTimestamp64Milli({ms})"


def _date(ms: int) -> str:
    return f"toDate(toDateTime({ms // 1000}))"


def _between(column: str, low: str, high: str) -> str:
    return f"{column} >= {low} AND {column} <= {high}"


# Macro name -> (number of arguments, expansion). Mirrors the plugin's backend (pkg/macros).
_MACROS: dict[str, tuple[int, Callable[[list[str], QueryContext], str]]] = {
    "timeFilter": (1, lambda a, c: _between(a[0], _datetime(c.time_from_ms), _datetime(c.time_to_ms))),
    "timeFilter_ms": (1, lambda a, c: _between(a[0], _datetime64(c.time_from_ms), _datetime64(c.time_to_ms))),
    "dateFilter": (1, lambda a, c: _between(a[0], _date(c.time_from_ms), _date(c.time_to_ms))),
    "timeInterval": (1, lambda a, c: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {c.interval_s} second)"),
    "interval_s": (0, lambda a, c: str(c.interval_s)),
    "fromTime": (0, lambda a, c: _datetime(c.time_from_ms)),
    "toTime": (0, lambda a, c: _datetime(c.time_to_ms)),
    "fromTime_ms": (0, lambda a, c: _datetime64(c.time_from_ms)),
    "toTime_ms": (0, lambda a, c: _datetime64(c.time_to_ms)),
    # Grafana's own time range variables, in epoch milliseconds.
    "from": (0, lambda a, c: str(c.time_from_ms)),
    "to": (0, lambda a, c: str(c.time_to_ms)),
}


def expand_macros(sql: str, context: QueryContext) -> str:
    """Expands the plugin's ``$__`` macros."""
    out, pos = [], 0
    for match in _MACRO.finditer(sql):
        if match.start() < pos:
            continue  # inside the arguments of a macro already expanded
        name = match.group("name")
        if name not in _MACROS:
            raise MacroError(f"unknown macro $__{name}; known: {', '.join('$__' + m for m in sorted(_MACROS))}")
        arity, render = _MACROS[name]
        end = match.end()
        args: list[str] = []
        if end < len(sql) and sql[end] == "(":
            args, end = _macro_args(sql, end)
            args = [expand_macros(a, context) for a in args]
        if len(args) != arity:
            raise MacroError(f"$__{name} takes {arity} argument(s), got {len(args)}: {sql[match.start() : end]!r}")
        out.append(sql[pos : match.start()])
        out.append(render(args, context))
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def expand(sql: str, context: QueryContext) -> str:
    """The SQL ClickHouse receives when Grafana runs ``sql`` in ``context``."""
    return expand_macros(expand_variables(sql, context), context)


def variable_values(model: Dashboard, values: Mapping[str, str | Sequence[str]]) -> dict[str, str | list[str]]:
    """The values Grafana interpolates in ``model``'s queries: ``values`` over the starting ones.

    Values are option values as Grafana stores them (``option_value(text)``). Grafana keeps the
    value of a multi-value variable as a list, so a single string given for one becomes a list of one.
    """
    multi = {v.name for v in variables_of(model) if v.multi}
    merged: dict[str, str | list[str]] = {}
    for name, value in {**starting_values(model), **values}.items():
        if isinstance(value, str):
            merged[name] = [value] if name in multi and value != ALL else value
        else:
            merged[name] = list(value)
    return merged


def all_queries(
    variables: Mapping[str, str | Sequence[str]],
    *,
    time_from_ms: int,
    time_to_ms: int,
    interval_s: int = 60,
) -> list[tuple[str, str, str]]:
    """``(dashboard_uid, panel_title, sql)`` for every query, expanded as Grafana would run it.

    ``variables`` sets dashboard variables by name to option values as Grafana stores them,
    ``option_value(text)`` (``{"team": option_value("vision"), "run": ["r1", "r2"]}``); the others
    keep the value they start with (All, or e.g. the metric ``loss``).
    """
    models = [spec.build() for spec in DASHBOARDS]
    declared = {name for model in models for name in starting_values(model)}
    unknown = sorted(set(variables) - declared)
    if unknown:
        raise UsageError(f"no dashboard has the variable(s) {unknown}; known: {sorted(declared)}")
    expanded = []
    for model in models:
        context = QueryContext(
            time_from_ms=time_from_ms,
            time_to_ms=time_to_ms,
            interval_s=interval_s,
            values=variable_values(model, variables),
        )
        expanded += [(q.dashboard_uid, q.title, expand(q.sql, context)) for q in queries_of(model)]
    return expanded
