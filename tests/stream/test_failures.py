"""ClickHouse failures told apart by error code: the codes are the engine's own, read from it."""

from __future__ import annotations

import struct

import chdb
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

from runstream_worker.failures import DETERMINISTIC_CODES, TRANSIENT_CODES, classify, error_code


def test_every_named_code_is_the_engines() -> None:
    codes = {**DETERMINISTIC_CODES, **TRANSIENT_CODES}
    assert not DETERMINISTIC_CODES.keys() & TRANSIENT_CODES.keys()
    listed = ", ".join(str(code) for code in sorted(codes))
    names = chdb.query(f"SELECT groupArray(errorCodeToName(c)) FROM (SELECT arrayJoin([{listed}]) AS c)", "CSV")
    assert str(names).strip() == '"[' + ",".join(f"'{codes[c]}'" for c in sorted(codes)) + ']"'


@pytest.mark.parametrize(
    ("exc", "deterministic", "code"),
    [
        # clickhouse-connect's exceptions carry the server's code ...
        (DatabaseError("Value out of range", code=321), True, 321),
        (DatabaseError("Too many parts (300)", code=252), False, 252),
        (DatabaseError("Memory limit (total) exceeded", code=241), False, 241),
        (DatabaseError("Timeout exceeded: elapsed 30 s", code=159), False, 159),
        # ... chDB's messages start with it.
        (DatabaseError("Code: 27. DB::Exception: Cannot parse input"), True, 27),
        (DatabaseError("Code: 6. DB::Exception: Cannot parse string 'x' as Int64"), True, 6),
        (DatabaseError("Code: 69. DB::Exception: Argument out of bound"), True, 69),
        (DatabaseError("Code: 469. DB::Exception: Constraint `c` is violated"), True, 469),
        (DatabaseError("Code: 209. DB::Exception: Timeout: socket"), False, 209),
        (DatabaseError("Code: 60. DB::Exception: Unknown table"), False, 60),  # not migrated yet: wait
        # No code: the network is transient; the client refusing a value is the data's fault.
        (OperationalError("Error HTTPConnectionPool: Connection refused"), False, None),
        (ConnectionResetError("reset by peer"), False, None),
        (TimeoutError("timed out"), False, None),
        (DataError("Unable to create native array for column `step`: error"), True, None),
        (struct.error("argument out of range"), True, None),
        (ValueError("year 287396 is out of range"), True, None),
        (RuntimeError("something else"), False, None),
    ],
)
def test_failures_are_classified_by_code(exc: Exception, deterministic: bool, code: int | None) -> None:
    failure = classify(exc)
    assert (failure.deterministic, failure.code, error_code(exc)) == (deterministic, code, code)


def test_the_reason_names_the_code_once() -> None:
    failure = classify(DatabaseError("Code: 321. DB::Exception: Value 2 is out of range. (VALUE_OUT)"))
    assert failure.reason() == (
        "clickhouse refused the record: Code: 321 (VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE): "
        "DB::Exception: Value 2 is out of range. (VALUE_OUT)"
    )
    assert classify(ValueError("bad")).reason() == "clickhouse refused the record: bad"
