"""chDB's revision-0 Native output rewritten for a client's protocol revision, checked byte for byte.

The expected bytes never come from the rewriter's own walk over the data: each column of a result is
asked of the engine alone (same rows, same blocks), and what follows that one-column block's header
is the column's data. The expected block is then BlockInfo, the block's dimensions, and per column
its name, type, the custom-serialization byte (0) and that data.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import chdb
import pytest

from runstream_worker.endpoint.native import NativeRewriter, UnsupportedNativeType
from runstream_worker.migrate import load_migrations

REVISION = 54460  # what clickhouse-go sends as client_protocol_version
BLOCK_INFO = bytes.fromhex("01 00 02 ff ff ff ff 00")
BLOCK_INFO_WITH_BUCKETS = bytes.fromhex("01 00 02 ff ff ff ff 03 00 00")
MARKER = b"\x00"


def varuint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varuint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def read_string(data: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = read_varuint(data, pos)
    return data[pos : pos + length], pos + length


def binary(value: bytes) -> bytes:
    return varuint(len(value)) + value


def literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass
class Result:
    blocks: list[bytes]  # what chDB wrote, a block per streamed chunk
    expected: list[bytes]  # each block as ClickHouse's server writes it for the revision

    @property
    def raw(self) -> bytes:
        return b"".join(self.blocks)


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    conn = chdb.connect(":memory:")
    conn.query("SET allow_suspicious_low_cardinality_types = 1")
    yield conn
    conn.close()  # chDB opens one path per process: release it for the tests that follow


def native_blocks(engine: Any, sql: str) -> list[bytes]:
    return [bytes(chunk.bytes()) for chunk in engine.send_query(sql, "Native")]


def column_blocks(engine: Any, sql: str) -> list[tuple[int, bytes, bytes, bytes]]:
    """Each block of a one-column result as (rows, name, type, data): the header taken off."""
    found = []
    for block in native_blocks(engine, sql):
        columns, pos = read_varuint(block, 0)
        assert columns == 1
        rows, pos = read_varuint(block, pos)
        name, pos = read_string(block, pos)
        type_name, pos = read_string(block, pos)
        found.append((rows, name, type_name, block[pos:]))
    return found


def result(
    engine: Any, source: str, block_size: int = 65409, *, block_info: bytes = BLOCK_INFO, marker: bytes = MARKER
) -> Result:
    """``SELECT * FROM (source)``: chDB's blocks, and the same blocks put together column by column."""
    # One thread: blocks come in the same order for every query.
    settings = f"SETTINGS max_threads = 1, max_block_size = {block_size}"
    described = engine.query(f"DESCRIBE ({source})", "JSONEachRow").bytes().decode().splitlines()
    names = [json.loads(line)["name"] for line in described]
    columns = [column_blocks(engine, f"SELECT {identifier(name)} FROM ({source}) {settings}") for name in names]
    blocks = native_blocks(engine, f"SELECT * FROM ({source}) {settings}")
    assert [len(column) for column in columns] == [len(blocks)] * len(names)
    expected = []
    for i in range(len(blocks)):
        rows = columns[0][i][0]
        parts = [block_info, varuint(len(names)), varuint(rows)]
        for name, column in zip(names, columns, strict=True):
            column_rows, column_name, type_name, data = column[i]
            assert column_rows == rows and column_name == name.encode()
            parts += [binary(column_name), binary(type_name), marker, data]
        expected.append(b"".join(parts))
    return Result(blocks, expected)


def rewrite(pieces: list[bytes], revision: int = REVISION) -> bytes:
    rewriter = NativeRewriter(revision)
    out = b"".join(rewriter.feed(piece) for piece in pieces)
    rewriter.finish()
    return out


def assert_rewritten(res: Result, revision: int = REVISION) -> None:
    expected = b"".join(res.expected)
    assert rewrite([res.raw], revision) == expected  # all at once
    assert rewrite(res.blocks, revision) == expected  # as chDB streams it


def random_table(engine: Any, name: str, structure: str, rows: int, block: int, longest: int = 12) -> str:
    """A Memory table of generateRandom rows (seeded), kept in blocks of ``block`` rows."""
    engine.query(f"DROP TABLE IF EXISTS {name}")
    engine.query(
        f"CREATE TABLE {name} ENGINE = Memory AS SELECT * FROM generateRandom({literal(structure)}, 7, {longest}, 4)"
        f" LIMIT {rows} SETTINGS max_block_size = {block}"
    )
    return f"SELECT * FROM {name}"


RANDOM_TYPES = [
    "UInt8",
    "UInt16",
    "UInt32",
    "UInt64",
    "UInt128",
    "UInt256",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "Int128",
    "Int256",
    "Float32",
    "Float64",
    "Bool",
    "Date",
    "Date32",
    "DateTime",
    "DateTime('UTC')",
    "DateTime64(3)",
    "DateTime64(9, 'Asia/Tokyo')",
    "UUID",
    "IPv4",
    "IPv6",
    "Decimal(9, 2)",
    "Decimal(18, 4)",
    "Decimal(38, 10)",
    "Decimal(76, 20)",
    "Decimal32(2)",
    "Decimal256(5)",
    "Enum8('a' = 1, 'b,)' = 2, 'it''s' = -3, 'q\\'(' = 4)",
    "Enum16('x' = 1000, 'y\\\\z' = -1000)",
    "String",
    "FixedString(5)",
    "Nullable(String)",
    "Nullable(UInt32)",
    "Nullable(Decimal(10, 2))",
    "Array(UInt16)",
    "Array(Nullable(String))",
    "Array(Array(Nullable(String)))",
    "Map(LowCardinality(String), Array(Float64))",
    "Map(String, Map(String, String))",
    "LowCardinality(String)",
    "LowCardinality(Nullable(String))",
    "LowCardinality(FixedString(3))",
    "LowCardinality(Nullable(Date))",
    "LowCardinality(UInt64)",
    "Array(LowCardinality(String))",
    "Array(LowCardinality(Nullable(String)))",
    "Array(Tuple(LowCardinality(String), Nullable(Int32)))",
    "Tuple(a UInt8, b String)",
    "Tuple(`x y` Nullable(String), `c,d` Array(UInt8), `e``f` LowCardinality(String))",
    "Tuple(UInt8, Float64)",
    "Nullable(Tuple(UInt8, String))",
    "Tuple()",
    "SimpleAggregateFunction(sum, UInt64)",
    "SimpleAggregateFunction(maxMap, Map(String, Tuple(DateTime64(3, 'UTC'), String)))",
    "Point",
    "Ring",
    "Polygon",
    "MultiPolygon",
    "LineString",
    "MultiLineString",
]


@pytest.mark.parametrize("type_name", RANDOM_TYPES)
def test_random_values_of_every_type(engine: Any, type_name: str) -> None:
    # Neighbours on both sides: a column that ends in the wrong place shows in the next one.
    source = random_table(engine, "t_random", f"before UInt8, c {type_name}, after String", rows=300, block=100)
    res = result(engine, source)
    assert len(res.blocks) == 3
    assert_rewritten(res)


def test_types_built_by_expressions(engine: Any) -> None:
    # Types generateRandom does not make, and spellings a table would not keep (Nested, Interval).
    source = """
        SELECT toBFloat16(number / 3) AS bf, CAST(number * 3671 AS Time) AS tm,
               CAST(number * 3671 AS Time64(3)) AS tm64, toIntervalDay(number) AS iv, toIntervalMonth(number) AS im,
               CAST(NULL AS Nullable(Nothing)) AS nothing,
               if(number % 2 = 0, [], [NULL, NULL]) AS nulls, [] AS no_elements, () AS empty_tuple,
               CAST([(number, toString(number))] AS Nested(a UInt64, b String)) AS nested,
               CAST((number, 'x') AS Tuple(n UInt64, s String)) AS named,
               CAST(if(number % 2 = 0, 'it''s', 'a,(b)') AS Enum8('it''s' = 1, 'a,(b)' = 2)) AS enum,
               CAST(number % 5 AS LowCardinality(UInt8)) AS lc_number
        FROM numbers(300)
    """
    res = result(engine, source, 100)
    assert len(res.blocks) == 3
    assert_rewritten(res)


EDGE_VALUES = """
    SELECT number AS n,
           arrayElement(['', 'a', repeat('b', 127), repeat('c', 128), repeat('d', 16384), repeat('e', 300000)],
                        number % 6 + 1) AS s,
           if(number % 3 = 0, NULL, toString(number)) AS nullable_string,
           if(number % 2 = 0, [], arrayMap(i -> if(i % 2 = 0, NULL, toString(i)), range(number % 5))) AS strings,
           CAST(if(number % 4 = 0, map(), map(toString(number % 3), [number / 2, 0.5]))
                AS Map(LowCardinality(String), Array(Float64))) AS tags,
           CAST(if(number % 5 = 0, NULL, toString(number % 4)) AS LowCardinality(Nullable(String))) AS lc_nullable,
           CAST(NULL AS LowCardinality(Nullable(String))) AS lc_all_null,
           CAST([] AS Array(LowCardinality(String))) AS lc_never,
           CAST(map() AS Map(LowCardinality(String), String)) AS empty_map,
           CAST((number, if(number % 2 = 0, '', 'x')) AS Tuple(a UInt64, b String)) AS tuple,
           if(number % 2 = 0, NULL, toDecimal64(number, 3)) AS nullable_decimal,
           [[], [''], [NULL]]::Array(Array(Nullable(String))) AS nested_empty,
           '' AS empty_string
    FROM numbers(24)
"""


def test_edge_values_nulls_empties_and_long_strings(engine: Any) -> None:
    res = result(engine, EDGE_VALUES)
    assert len(res.blocks) == 1
    assert_rewritten(res)


def test_several_blocks(engine: Any) -> None:
    source = """
        SELECT number AS n, toString(number) AS s, toLowCardinality(toString(number % 7)) AS lc,
               if(number % 3 = 0, NULL, number / 3) AS f, range(number % 4) AS a
        FROM numbers(5000)
    """
    res = result(engine, source, 1000)
    assert len(res.blocks) == 5
    assert_rewritten(res)


def test_low_cardinality_indexes_of_every_width(engine: Any) -> None:
    # Up to 256 keys index by UInt8, then UInt16, then (past 65536) UInt32.
    source = """
        SELECT toLowCardinality(toString(number % 200)) AS narrow, toLowCardinality(toString(number % 1000)) AS medium,
               toLowCardinality(toString(number)) AS wide
        FROM numbers(70000)
    """
    res = result(engine, source, 70000)
    assert len(res.blocks) == 1
    assert_rewritten(res)


def check_pieces(res: Result, cuts: list[int]) -> None:
    """Fed in pieces, each call returns exactly the blocks that its bytes complete."""
    raw = res.raw
    ends, total = [], 0
    for block in res.blocks:
        total += len(block)
        ends.append(total)
    rewriter = NativeRewriter(REVISION)
    out = b""
    for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        out += rewriter.feed(raw[start:end])
        done = sum(1 for block_end in ends if block_end <= end)
        assert out == b"".join(res.expected[:done]), f"after byte {end}"
    rewriter.finish()


def test_fed_one_byte_at_a_time(engine: Any) -> None:
    structure = (
        "s String, ls LowCardinality(Nullable(String)), m Map(LowCardinality(String), Array(Float64)), "
        "a Array(Nullable(String)), t Tuple(a UInt8, b Nullable(String)), d DateTime64(3, 'UTC'), n Nullable(Int64)"
    )
    # Strings up to 200 bytes: some lengths take two bytes, and are cut between them.
    res = result(engine, random_table(engine, "t_bytes", structure, rows=12, block=4, longest=200))
    assert len(res.blocks) == 3
    check_pieces(res, list(range(1, len(res.raw))))


def test_fed_in_random_pieces(engine: Any) -> None:
    structure = "id UInt64, s String, lc LowCardinality(String), m Map(LowCardinality(String), String), v Float64"
    res = result(engine, random_table(engine, "t_pieces", structure, rows=5000, block=1000, longest=40))
    assert len(res.blocks) == 5
    cuts = sorted(random.Random(3).sample(range(1, len(res.raw)), 400))
    check_pieces(res, cuts)
    check_pieces(res, [len(block) // 2 for block in res.blocks[:1]])  # one cut inside the first block


def test_runstream_tables(engine: Any) -> None:
    engine.query("CREATE DATABASE IF NOT EXISTS rs")
    engine.query("USE rs")
    try:
        for migration in load_migrations():
            for statement in migration.statements():
                engine.query(statement)
        columns = engine.query(
            "SELECT table, name, type FROM system.columns WHERE database = 'rs' AND table IN (SELECT name"
            " FROM system.tables WHERE database = 'rs' AND engine NOT LIKE '%View') ORDER BY table, position",
            "JSONEachRow",
        )
        tables: dict[str, list[str]] = {}
        for line in columns.bytes().decode().splitlines():
            column = json.loads(line)
            # AggregateFunction states are read through -Merge, which returns the plain type.
            if not column["type"].startswith("AggregateFunction"):
                tables.setdefault(column["table"], []).append(f"{identifier(column['name'])} {column['type']}")
    finally:
        engine.query("USE default")
    assert {"runs", "metrics", "hardware", "params", "summary", "run_latest", "metric_summary"} <= set(tables)
    for table, definitions in tables.items():
        res = result(engine, random_table(engine, f"t_{table}", ", ".join(definitions), rows=200, block=100))
        assert len(res.blocks) == 2
        assert_rewritten(res)


def test_revision_zero_passes_the_bytes_through(engine: Any) -> None:
    res = result(engine, EDGE_VALUES)
    rewriter = NativeRewriter(0)
    assert all(rewriter.feed(block) is block for block in res.blocks)
    rewriter.feed(res.raw[:5])
    rewriter.finish()  # nothing is held


def test_revisions_before_custom_serialization_get_block_info_only(engine: Any) -> None:
    for revision in (1, 54405, 54453):
        assert_rewritten(result(engine, EDGE_VALUES, marker=b""), revision)
    assert_rewritten(result(engine, EDGE_VALUES), 54454)


def test_revisions_with_out_of_order_buckets_get_the_third_block_info_field(engine: Any) -> None:
    assert_rewritten(result(engine, EDGE_VALUES), 54479)
    assert_rewritten(result(engine, EDGE_VALUES, block_info=BLOCK_INFO_WITH_BUCKETS), 54480)


def test_an_empty_result_stays_empty(engine: Any) -> None:
    # chDB writes no block at all for no rows (a server writes a header-only block first).
    raw = b"".join(native_blocks(engine, "SELECT number AS n, toString(number) AS s FROM numbers(10) WHERE n > 100"))
    assert raw == b""
    assert rewrite([raw]) == b""


def test_a_header_only_block_gets_no_data(engine: Any) -> None:
    columns = [(b"n", b"UInt64"), (b"s", b"String")]
    header = varuint(2) + varuint(0) + b"".join(binary(name) + binary(type_name) for name, type_name in columns)
    rewritten = BLOCK_INFO + varuint(2) + varuint(0)
    rewritten += b"".join(binary(name) + binary(type_name) + MARKER for name, type_name in columns)
    res = result(engine, "SELECT number AS n, toString(number) AS s FROM numbers(3)")
    raw = header + res.raw
    expected = rewritten + b"".join(res.expected)
    assert rewrite([raw]) == expected
    end = len(header)
    assert rewrite([raw[: end - 1], raw[end - 1 : end], raw[end:]]) == expected
    # A header needs no layout: types the rewriter cannot walk pass when there are no rows.
    state = varuint(1) + varuint(0) + binary(b"st") + binary(b"AggregateFunction(sum, UInt64)")
    assert rewrite([state]) == BLOCK_INFO + state + MARKER


@pytest.mark.parametrize(
    ("sql", "type_name"),
    [
        ("SELECT sumState(number) AS c FROM numbers(3)", "AggregateFunction(sum, UInt64)"),
        ("SELECT 1::Dynamic AS c", "Dynamic"),
        ("SELECT 1::Variant(UInt8, String) AS c", "Variant(String, UInt8)"),
        ("SELECT '{\"a\": 1}'::JSON AS c", "JSON"),
        ("SELECT [1::Dynamic] AS c", "Dynamic"),
        ("SELECT 1 AS a, map('k', 1::Dynamic) AS c", "Dynamic"),
    ],
)
def test_unknown_types_are_refused_by_name(engine: Any, sql: str, type_name: str) -> None:
    raw = b"".join(native_blocks(engine, sql))
    rewriter = NativeRewriter(REVISION)
    with pytest.raises(UnsupportedNativeType) as raised:
        rewriter.feed(raw)
    assert raised.value.type_name == type_name
    with pytest.raises(ValueError, match="failed"):
        rewriter.feed(raw)


def test_a_block_left_unfinished_is_an_error(engine: Any) -> None:
    res = result(engine, EDGE_VALUES)
    rewriter = NativeRewriter(REVISION)
    assert rewriter.feed(res.raw[:-1]) == b""
    with pytest.raises(ValueError, match="inside a block"):
        rewriter.finish()


def test_a_low_cardinality_version_it_does_not_know_is_an_error(engine: Any) -> None:
    raw = b"".join(native_blocks(engine, "SELECT toLowCardinality('x') AS l"))
    pos = read_varuint(raw, read_varuint(raw, 0)[1])[1]
    pos = read_string(raw, read_string(raw, pos)[1])[1]  # after the name and type: the version
    assert raw[pos : pos + 8] == (1).to_bytes(8, "little")
    with pytest.raises(ValueError, match="LowCardinality serialization version 2"):
        rewrite([raw[:pos] + (2).to_bytes(8, "little") + raw[pos + 8 :]])
