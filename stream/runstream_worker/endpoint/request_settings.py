"""Settings a client may pass with a request (URL parameters), checked as ClickHouse's settings
constraints would check them.

Each request runs on a handle of its own: the accepted settings and the endpoint's limits are set
on that handle with ``SET`` before the query, then ``readonly = 1`` (for reads), so a ``SETTINGS``
clause in the query cannot change anything and a trailing comment cannot swallow a setting.

Closed by default: a setting is accepted only if it is known to change nothing but the query's own
output or cost. Limits (``max_execution_time``, ``max_memory_usage``, ``max_result_bytes``,
``max_result_rows``) may be lowered, never raised (``Code: 452``, as a ``<max>`` constraint gives);
settings that change how SQL is parsed, which rows a table shows, rights, caches shared between
users, or files read are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from runstream_worker.endpoint.errors import Code, EndpointError

# URL parameters of the HTTP protocol itself, not query settings.
PROTOCOL_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "session_id",
        "session_timeout",
        "session_check",
        "compress",
        "decompress",
        "query_id",
        "user",
        "password",
        "quota_key",
        "wait_end_of_query",
        "enable_http_compression",
        "http_zlib_compression_level",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "client_protocol_version",
        "buffer_size",
        "role",
        "http_response_buffer_size",
        "cancel_http_readonly_queries_on_client_close",
    }
)

ALLOWED = frozenset(
    {
        "limit",
        "offset",
        "max_threads",
        "max_block_size",
        "preferred_block_size_bytes",
        "extremes",
        "totals_mode",
        "totals_auto_threshold",
        "session_timezone",
        "use_client_time_zone",
        "join_use_nulls",
        "join_algorithm",
        "joined_subquery_requires_alias",
        "prefer_column_name_to_alias",
        "aggregate_functions_null_for_empty",
        "cast_keep_nullable",
        "cast_string_to_dynamic_use_inference",
        "final",
        "do_not_merge_across_partitions_select_final",
        "enable_analyzer",
        "allow_experimental_analyzer",
        "compile_expressions",
        "log_comment",
        "date_time_input_format",
        "date_time_output_format",
        "date_time_overflow_behavior",
        "precise_float_parsing",
        "low_cardinality_allow_in_native_format",
        "result_overflow_mode",
        "timeout_overflow_mode",
        "read_overflow_mode",
        "group_by_overflow_mode",
        "sort_overflow_mode",
        "join_overflow_mode",
        "set_overflow_mode",
        "distinct_overflow_mode",
        "max_rows_to_read",
        "max_bytes_to_read",
        "max_rows_to_group_by",
        "max_rows_to_sort",
        "max_bytes_to_sort",
        "max_rows_in_join",
        "max_bytes_in_join",
        "max_rows_in_set",
        "max_bytes_in_set",
        "max_rows_in_distinct",
        "max_bytes_in_distinct",
        "max_bytes_before_external_group_by",
        "max_bytes_before_external_sort",
        "max_bytes_ratio_before_external_group_by",
        "max_bytes_ratio_before_external_sort",
        "group_by_two_level_threshold",
        "distributed_aggregation_memory_efficient",
        "transform_null_in",
        "data_type_default_nullable",
        "mutations_sync",
    }
)
ALLOWED_PREFIXES = ("output_format_", "format_", "optimize_", "query_plan_")
# Settings under an allowed prefix that read files (format schemas, templates).
REFUSED_PREFIXES = ("format_schema", "format_template", "format_capn_proto", "format_protobuf")
# Only on a writable endpoint: what an inserting client (clickhouse-connect, a worker) sends.
WRITE_ALLOWED = frozenset(
    {
        "insert_deduplicate",
        "insert_deduplication_token",
        "async_insert",
        "wait_for_async_insert",
        "insert_quorum",
        "max_insert_block_size",
        "min_insert_block_size_rows",
        "min_insert_block_size_bytes",
        "max_partitions_per_insert_block",
        "throw_on_max_partitions_per_insert_block",
        "alter_sync",
        "materialized_views_ignore_errors",
        "parallel_view_processing",
        "deduplicate_blocks_in_dependent_materialized_views",
    }
)
WRITE_ALLOWED_PREFIXES = ("input_format_",)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_NUMBER = re.compile(r"^\s*\d+(\.\d+)?\s*$")


@dataclass(frozen=True)
class Limits:
    """The endpoint's ceilings, each a ClickHouse setting of the same name."""

    max_execution_time: float
    max_memory_usage: int
    max_result_bytes: int
    max_result_rows: int

    def as_settings(self) -> dict[str, str]:
        return {
            "max_execution_time": _number(self.max_execution_time),
            "max_memory_usage": str(self.max_memory_usage),
            "max_result_bytes": str(self.max_result_bytes),
            "max_result_rows": str(self.max_result_rows),
        }


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def request_settings(params: Mapping[str, str], limits: Limits, *, writable: bool) -> dict[str, str]:
    """The settings to apply for a request: the client's accepted ones, then the endpoint's limits.

    Raises ``EndpointError`` for a setting that is not accepted or would raise a limit.
    """
    chosen = limits.as_settings()
    ceilings = chosen.copy()
    for name, value in params.items():
        if name in PROTOCOL_PARAMS or name.startswith("param_"):
            continue
        if not _NAME.match(name):
            raise EndpointError(Code.UNKNOWN_SETTING, f"Unknown setting '{name[:64]}'")
        if name in ceilings:
            chosen[name] = _lowered(name, value, float(ceilings[name]))
        elif _accepted(name, writable=writable):
            chosen[name] = value
        elif name == "readonly":
            continue  # see requested_readonly
        else:
            raise EndpointError(
                Code.SETTING_CONSTRAINT_VIOLATION,
                f"Setting {name} should not be changed on this endpoint",
                "SETTING_CONSTRAINT_VIOLATION",
            )
    return chosen


def _accepted(name: str, *, writable: bool) -> bool:
    if name.startswith(REFUSED_PREFIXES):
        return False
    if name in ALLOWED or name.startswith(ALLOWED_PREFIXES):
        return True
    return writable and (name in WRITE_ALLOWED or name.startswith(WRITE_ALLOWED_PREFIXES))


def _lowered(name: str, value: str, ceiling: float) -> str:
    if not _NUMBER.match(value):
        raise EndpointError(Code.BAD_ARGUMENTS, f"Setting {name} takes a number, got '{value[:64]}'")
    number = float(value)
    # 0 means "no limit" to ClickHouse: here that would lift the ceiling.
    if number == 0 or number > ceiling:
        raise EndpointError(
            Code.SETTING_CONSTRAINT_VIOLATION,
            f"Setting {name} shouldn't be greater than {_number(ceiling)} (and 0, no limit, is not allowed)",
            "SETTING_CONSTRAINT_VIOLATION",
        )
    return value.strip()


def requested_readonly(params: Mapping[str, str]) -> int | None:
    """The ``readonly`` level a client asks for: 1 or 2 only restrict it further; 0 would lift it."""
    value = params.get("readonly")
    if value is None:
        return None
    if value.strip() in ("1", "2"):
        return int(value)
    raise EndpointError(Code.READONLY, "Cannot modify 'readonly' setting in readonly mode")
