"""The expander turns dashboard SQL into what ClickHouse receives from Grafana and the plugin."""

from __future__ import annotations

import urllib.parse

import pytest

from runstream_grafana.dashboards import ALL, ALL_VALUE, option_value
from tests.grafana.emulator import MacroError, QueryContext, encode_uri_component_strict, expand

FROM_MS = 1_700_000_000_123
TO_MS = 1_700_003_600_456


def context(interval_s: int = 60, **values: str | list[str]) -> QueryContext:
    return QueryContext(time_from_ms=FROM_MS, time_to_ms=TO_MS, interval_s=interval_s, values=values)


def test_time_macros_expand_like_the_plugin_backend() -> None:
    sql = "SELECT $__timeInterval(ts) AS t FROM m WHERE $__timeFilter(ts) AND x < $__interval_s"
    assert expand(sql, context(interval_s=30)) == (
        "SELECT toStartOfInterval(toDateTime(ts), INTERVAL 30 second) AS t FROM m "
        "WHERE ts >= toDateTime(1700000000) AND ts <= toDateTime(1700003600) AND x < 30"
    )
    assert expand("$__fromTime, $__toTime", context()) == "toDateTime(1700000000), toDateTime(1700003600)"
    assert expand("$__fromTime_ms", context()) == "fromUnixTimestamp64Milli(1700000000123)"
    assert expand("$__timeFilter_ms(ts)", context()) == (
        "ts >= fromUnixTimestamp64Milli(1700000000123) AND ts <= fromUnixTimestamp64Milli(1700003600456)"
    )
    assert expand("$__from-$__to", context()) == "1700000000123-1700003600456"


def test_macro_arguments_may_hold_parentheses_and_macros() -> None:
    assert expand("$__timeFilter(toDateTime(intDiv(ms, 1000)))", context()) == (
        "toDateTime(intDiv(ms, 1000)) >= toDateTime(1700000000) AND toDateTime(intDiv(ms, 1000)) <= "
        "toDateTime(1700003600)"
    )
    assert expand("$__timeInterval(greatest(ts, $__fromTime))", context(interval_s=5)) == (
        "toStartOfInterval(toDateTime(greatest(ts, toDateTime(1700000000))), INTERVAL 5 second)"
    )


def test_variables_are_formatted_as_grafana_formats_them() -> None:
    ctx = context(team="vision", run=["a", "b'c"], metric="loss")
    assert expand("${team:percentencode}|${run:percentencode}", ctx) == "vision|%7Ba%2Cb%27c%7D"
    assert expand("team IN (${team:singlequote})", ctx) == "team IN ('vision')"
    assert expand("run IN (${run:singlequote})", ctx) == "run IN ('a','b\\'c')"
    assert expand("${run:sqlstring}", ctx) == "'a','b''c'"
    assert expand("${run:doublequote}", ctx) == '"a","b\'c"'
    assert expand("${run:csv}|${run:raw}", ctx) == "a,b'c|a,b'c"
    # No format: the plugin quotes lists and leaves one value as it is.
    assert expand("$metric ${metric} ${run}", ctx) == "loss loss 'a','b\\'c'"


def test_all_becomes_the_custom_all_value_percent_encoded_only_by_percentencode() -> None:
    for all_value in (ALL, [ALL]):
        ctx = context(team=all_value)
        assert expand("${team:percentencode}", ctx) == "%2A"
        assert expand("${team:singlequote}|${team}|${team:raw}", ctx) == f"{ALL_VALUE}|{ALL_VALUE}|{ALL_VALUE}"
        assert expand("${team:text}", ctx) == "All"


# JavaScript's encodeURIComponent leaves A-Za-z0-9 and -_.!~*'() alone; Grafana's strict variant
# escapes !'()* as well.
JS_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()")


def encode_uri_component_reference(value: str) -> str:
    """encodeURIComponent, byte by byte over UTF-8, then Grafana's replacement of !'()*."""
    encoded = "".join(c if c in JS_UNRESERVED else "".join(f"%{b:02X}" for b in c.encode()) for c in value)
    return "".join(f"%{ord(c):02X}" if c in "!'()*" else c for c in encoded)


HOSTILE = [
    "",
    "vision",
    "'",
    "\\",
    "\\'",
    "$$",
    "--",
    "/*",
    "{",
    "}",
    ",",
    "%",
    "%2C",
    "*",
    "!'()*~._-",
    "a b+c&d=e?f#g/h:i;j@k",
    "损失",
    "😀 emoji",
    "line\nbreak\ttab\x00nul\x7fdel\x85nel",
    "\\'), 1, 0) AS x, (SELECT groupArray(line) FROM file($$/etc/passwd$$,$$LineAsString$$)) AS leaked, --",
]


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_percentencode_is_grafanas_encode_uri_component_strict(value: str) -> None:
    assert encode_uri_component_strict(value) == encode_uri_component_reference(value)
    assert expand("${v:percentencode}", context(v=value)) == encode_uri_component_reference(value)
    assert expand("${v:percentencode}", context(v=[value, "x"])) == encode_uri_component_reference("{" + value + ",x}")
    assert option_value(value) == encode_uri_component_reference(value)
    assert urllib.parse.unquote(option_value(value)) == value
    assert set(expand("${v:percentencode}", context(v=[value]))) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~%"
    )


def test_a_query_without_variables_or_macros_is_unchanged() -> None:
    sql = "SELECT '$' AS dollar, match(s, '^a$') FROM t WHERE x = 1"
    assert expand(sql, context()) == sql


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("x = ${team}", r"variable \$team has no value"),
        ("x = $team", r"variable \$team has no value"),
        ("x IN (${metric:json})", r"unknown format 'json'"),
        ("x IN (${metric.path:raw})", r"field paths are not supported"),
        ("x = [[team]]", r"variable \$team has no value"),
        ("$__timeGroup(ts, 1m)", r"unknown macro \$__timeGroup"),
        ("$__timeFilter()", r"\$__timeFilter takes 1 argument\(s\), got 0"),
        ("$__timeFilter(a, b)", r"\$__timeFilter takes 1 argument\(s\), got 2"),
        ("$__fromTime(ts)", r"\$__fromTime takes 0 argument\(s\), got 1"),
        ("WHERE $__timeFilter(toDate(ts)", r"unbalanced parentheses"),
    ],
)
def test_unknown_or_misused_variables_and_macros_are_errors(sql: str, message: str) -> None:
    with pytest.raises(MacroError, match=message):
        expand(sql, context(metric="loss"))


def test_all_mixed_with_values_is_an_error() -> None:
    with pytest.raises(MacroError, match="cannot be combined"):
        expand("${run:singlequote}", context(run=[ALL, "a"]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"time_from_ms": TO_MS, "time_to_ms": FROM_MS}, "time range is empty"),
        ({"time_from_ms": FROM_MS, "time_to_ms": FROM_MS}, "time range is empty"),
        ({"time_from_ms": FROM_MS, "time_to_ms": TO_MS, "interval_s": 0}, "interval_s must be at least 1"),
        ({"time_from_ms": FROM_MS, "time_to_ms": TO_MS, "values": {"run": []}}, "variable 'run' has no value"),
    ],
)
def test_a_bad_context_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(MacroError, match=message):
        QueryContext(**kwargs)  # type: ignore[arg-type]
