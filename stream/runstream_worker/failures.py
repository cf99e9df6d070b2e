"""What a failed ClickHouse call means: worth retrying as it is, or refused for what it holds.

The verdict comes from ClickHouse's error code, never from the message text: clickhouse-connect's
exceptions carry it (``code``), and chDB's messages start with ``Code: N.``. An error raised by the
client while it serialises the rows (a value out of a column's range) holds no code and is a data
error too. Anything else (the network, a server away, a timeout, memory, too many parts, an
unknown code) is **transient**: retried with the same rows and token until it passes, so nothing is
lost. A **deterministic** failure would fail again with the same rows: the runner isolates the
records it comes from and sends them to the dead-letter topic instead of stalling the partition.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from clickhouse_connect.driver.exceptions import DataError, OperationalError

# Codes whose errors depend on the rows inserted (names as the engine's errorCodeToName gives them;
# tests/stream/test_failures.py checks each against the real engine).
DETERMINISTIC_CODES: dict[int, str] = {
    6: "CANNOT_PARSE_TEXT",
    25: "CANNOT_PARSE_ESCAPE_SEQUENCE",
    26: "CANNOT_PARSE_QUOTED_STRING",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    38: "CANNOT_PARSE_DATE",
    41: "CANNOT_PARSE_DATETIME",
    53: "TYPE_MISMATCH",
    69: "ARGUMENT_OUT_OF_BOUND",
    70: "CANNOT_CONVERT_TYPE",
    72: "CANNOT_PARSE_NUMBER",
    117: "INCORRECT_DATA",
    128: "TOO_LARGE_ARRAY_SIZE",
    131: "TOO_LARGE_STRING_SIZE",
    321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    376: "CANNOT_PARSE_UUID",
    395: "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO",
    407: "DECIMAL_OVERFLOW",
    467: "CANNOT_PARSE_BOOL",
    469: "VIOLATED_CONSTRAINT",
    565: "TOO_MANY_PARTITIONS",
}
"""Failures that the same rows would meet again. ``Too many partitions for single INSERT block`` is
reported as 252 (TOO_MANY_PARTS, transient) by the engine: the sink never sends more partitions
than the server allows in one insert, so it is not met."""

TRANSIENT_CODES: dict[int, str] = {
    159: "TIMEOUT_EXCEEDED",
    160: "TOO_SLOW",
    173: "CANNOT_ALLOCATE_MEMORY",
    202: "TOO_MANY_SIMULTANEOUS_QUERIES",
    209: "SOCKET_TIMEOUT",
    210: "NETWORK_ERROR",
    236: "ABORTED",
    241: "MEMORY_LIMIT_EXCEEDED",
    242: "TABLE_IS_READ_ONLY",
    243: "NOT_ENOUGH_SPACE",
    252: "TOO_MANY_PARTS",
    394: "QUERY_WAS_CANCELLED",
    745: "SERVER_OVERLOADED",
}
"""Failures that pass with time; listed to be named in logs. Every code not in
``DETERMINISTIC_CODES`` is treated the same way (a schema not migrated yet, access refused: waiting
loses nothing, a dead letter would)."""

_CODE = re.compile(r"\bCode:\s*(\d+)")
_LEADING_CODE = re.compile(r"^Code:\s*\d+\.\s*")


@dataclass(frozen=True)
class Failure:
    """A classified failure: whether the same rows would fail again, its code and what it said."""

    deterministic: bool
    code: int | None
    message: str

    @property
    def name(self) -> str:
        if self.code is None:
            return ""
        return DETERMINISTIC_CODES.get(self.code) or TRANSIENT_CODES.get(self.code) or f"code {self.code}"

    def reason(self) -> str:
        """The reason a dead letter carries: the code, its name and the message."""
        if self.code is None:
            return f"clickhouse refused the record: {self.message}"[:2000]
        message = _LEADING_CODE.sub("", self.message, count=1)
        return f"clickhouse refused the record: Code: {self.code} ({self.name}): {message}"[:2000]


def error_code(exc: BaseException) -> int | None:
    """ClickHouse's error code of ``exc``: clickhouse-connect's ``code``, else a ``Code: N.`` it quotes."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    found = _CODE.search(str(exc))
    return int(found.group(1)) if found else None


def classify(exc: BaseException) -> Failure:
    """Transient or deterministic, from ``exc`` alone."""
    code = error_code(exc)
    message = str(exc).strip() or type(exc).__name__
    if code is not None:
        return Failure(code in DETERMINISTIC_CODES, code, message)
    if isinstance(exc, OperationalError | OSError | TimeoutError):
        return Failure(False, None, message)
    # Raised by the client while it serialises rows into a column's type: the rows are at fault.
    data_error = isinstance(exc, DataError | ValueError | TypeError | OverflowError | struct.error)
    return Failure(data_error, None, message)
