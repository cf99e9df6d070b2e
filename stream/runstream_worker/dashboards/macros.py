"""Expands a panel's SQL the way Grafana and the ClickHouse plugin do, so it can run outside Grafana.

Grafana first interpolates dashboard variables (``$team``, ``${run:singlequote}``) in the browser,
then the plugin's backend expands its macros (``$__timeFilter(ts)``, ``$__interval_s``). Only the
macros the dashboards use are supported; anything else is an error rather than SQL left half
expanded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from runstream.errors import UsageError

# Grafana's value for "All" in a multi-value variable.
ALL = "$__all"
# Every include-all variable carries this custom all value. Grafana inserts a custom all value
# unformatted, so it is a ready SQL literal, and filters read it as "no filter" (see variables.py):
# a dashboard never expands "All" into an IN list of every run.
ALL_VALUE_SQL = "'__all__'"

_VARIABLE = re.compile(r"\$\{(?P<braced>\w+)(?::(?P<format>\w+))?\}|\$(?P<bare>\w+)")
_MACRO = re.compile(r"\$__(?P<name>\w+)")


class MacroError(UsageError):
    """The SQL uses a variable, format or macro the expander does not know, or uses it wrongly."""


@dataclass(frozen=True)
class QueryContext:
    """What Grafana supplies when it runs a query: the time range, the interval, the variables."""

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


def _quote(value: str, quote: str) -> str:
    return quote + value.replace(quote, "\\" + quote) + quote


_FORMATS: dict[str, Callable[[list[str]], str]] = {
    # The plugin's own default: lists become a quoted, comma separated list; one value stays raw.
    "": lambda values: values[0] if len(values) == 1 else ",".join(_quote(v, "'") for v in values),
    "raw": ",".join,
    "csv": ",".join,
    "text": ",".join,
    "singlequote": lambda values: ",".join(_quote(v, "'") for v in values),
    "doublequote": lambda values: ",".join(_quote(v, '"') for v in values),
    "sqlstring": lambda values: ",".join("'" + v.replace("'", "''") + "'" for v in values),
}


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
        return ALL_VALUE_SQL
    if ALL in values:
        raise MacroError(f"variable ${name}: {ALL} (All) cannot be combined with other values")
    return _FORMATS[fmt](values)


def expand_variables(sql: str, context: QueryContext) -> str:
    """Interpolates dashboard variables; names starting with ``__`` are left for the macros."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        if name.startswith("__"):
            return match.group(0)
        return _format_variable(name, match.group("format") or "", context)

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
