"""The embedded engine over ClickHouse's HTTP interface, reached with clickhouse-connect and plain HTTP."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from runstream_core.clickhouse import connect
from runstream_core.events import MetricBatch, encode_event
from runstream_worker.decode import SourceRecord, decode_batch
from runstream_worker.migrate import load_migrations, migrate, pending
from runstream_worker.sink import ClickHouseSink
from tests.fixtures.endpoint import Endpoint
from tests.fixtures.settings import StackSettings as Settings


@pytest.fixture
def served(endpoint_factory: Callable[..., Endpoint]) -> Settings:
    """Client settings for a writable endpoint, as several workers would share it."""
    return endpoint_factory(writable=True).settings


def test_migrations_inserts_dedup_and_queries_work_over_http(served: Settings) -> None:
    assert len(migrate(served)) == len(load_migrations()) and pending(served) == []
    batch = MetricBatch(
        producer_id="p1", seq=1, run_id="r1", team="t", project="p",
        keys=["loss", "loss"], steps=[0, 1], ts_ms=[1_700_000_000_000] * 2, values=[0.5, float("inf")],
    )  # fmt: skip
    rows = decode_batch([SourceRecord("runstream.metrics", 0, 1, encode_event(batch))], "runstream.").rows
    sink = ClickHouseSink(served)
    try:
        sink.write(rows, token="a")
        sink.write(rows, token="a")  # retried: stored once
        found = sink.stored_records({("p1", 1), ("p1", 2)}, {("t", "p", "r1")})
        assert [(u.producer_id, u.seq, u.token, u.rows) for u in found] == [("p1", 1, "metrics:a", 2)]
    finally:
        sink.close()
    client = connect(served)
    try:
        assert client.query("SELECT step, value FROM metrics ORDER BY step").result_rows == [
            (0, 0.5),
            (1, float("inf")),
        ]
        bound = client.query("SELECT count() FROM metrics WHERE run_id = {r:String}", parameters={"r": "r1"})
        assert bound.result_rows == [(2,)]
        with pytest.raises(DatabaseError, match="Unknown expression identifier"):
            client.query("SELECT no_such_column FROM metrics")
    finally:
        client.close()


def test_plain_http_clients_get_ping_compressed_inserts_and_error_codes(
    endpoint_factory: Callable[..., Endpoint],
) -> None:
    endpoint = endpoint_factory(writable=True)
    ping = endpoint.request(method="GET", path="/ping", auth=None)
    assert (ping.status, ping.body) == (200, b"Ok.\n")
    endpoint.query("", query="CREATE TABLE t (a UInt32, b String) ENGINE = MergeTree ORDER BY a")
    inserted = endpoint.request(
        gzip.compress(b"1\tone\n2\ttwo\n"),
        {"query": "INSERT INTO t FORMAT TabSeparated"},
        {"Content-Encoding": "gzip"},
    )
    assert inserted.status == 200, inserted.text
    inline = endpoint.request(b"INSERT INTO t FORMAT TabSeparated\n3\tthree\n")  # statement and rows in the body
    assert inline.status == 200, inline.text
    assert endpoint.query("SELECT a, b FROM t ORDER BY a") == "1\tone\n2\ttwo\n3\tthree\n"
    failure = endpoint.request("SELEC 1")
    assert (failure.status, failure.code) == (400, "62")  # ClickHouse: SYNTAX_ERROR is a 400
    assert failure.body.startswith(b"Code: 62. DB::Exception: Syntax error")


def _leb128(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def _strings(data: bytes, count: int, at: int) -> tuple[list[str], int]:
    out = []
    for _ in range(count):
        size, at = _leb128(data, at)
        out.append(data[at : at + size].decode())
        at += size
    return out, at


@pytest.fixture
def readonly(endpoint_factory: Callable[..., Endpoint], tmp_path: Path) -> Endpoint:
    """A migrated store with two points, served read-only (the default)."""
    path = tmp_path / "store"
    writable = endpoint_factory(path, writable=True)
    migrate(writable.settings)
    batch = MetricBatch(
        producer_id="p1", seq=1, run_id="r1", team="t", project="p",
        keys=["loss", "loss"], steps=[0, 1], ts_ms=[1_700_000_000_000] * 2, values=[0.5, 0.25],
    )  # fmt: skip
    sink = ClickHouseSink(writable.settings)
    sink.write(decode_batch([SourceRecord("runstream.metrics", 0, 1, encode_event(batch))], "runstream.").rows, "a")
    sink.close()
    writable.stop()
    return endpoint_factory(path)


def test_formats_grafana_and_clients_ask_for(readonly: Endpoint) -> None:
    sql = "SELECT step, key FROM runstream.metrics ORDER BY step"
    # RowBinaryWithNamesAndTypes: column count, names, types, then rows (Int64 little endian, String).
    body = readonly.request(sql, {"default_format": "RowBinaryWithNamesAndTypes"}).body
    count, at = _leb128(body, 0)
    names, at = _strings(body, count, at)
    types, at = _strings(body, count, at)
    assert (names, types) == (["step", "key"], ["Int64", "LowCardinality(String)"])
    assert body[at : at + 8] == (0).to_bytes(8, "little") and body[at + 8 : at + 13] == b"\x04loss"
    # JSON (a FORMAT clause wins over default_format), with a bound query parameter.
    reply = readonly.request(
        "SELECT step, value FROM runstream.metrics WHERE step >= {s:Int64} ORDER BY step FORMAT JSON",
        {"default_format": "Native", "param_s": "1"},
    )
    assert reply.headers["x-clickhouse-format"] == "JSON"
    assert json.loads(reply.body)["data"] == [{"step": 1, "value": 0.25}]
    # Native as revision 0 clients (clickhouse-connect) read it: 2 columns, 2 rows, then named columns.
    body = readonly.request(sql, {"default_format": "Native", "database": "runstream"}).body
    assert body[:2] == b"\x02\x02" and body[2:7] == b"\x04step"
    # Compressed reply when the client enables it.
    reply = readonly.request(
        "SELECT count() FROM runstream.metrics", {"enable_http_compression": "1"}, {"Accept-Encoding": "gzip"}
    )
    assert (reply.headers["content-encoding"], reply.body) == ("gzip", b"2\n")


def test_a_read_only_endpoint_refuses_writes_ddl_and_settings_in_the_query(readonly: Endpoint) -> None:
    for sql in (
        "INSERT INTO runstream.metrics (run_id) VALUES ('x')",
        "DROP TABLE runstream.metrics",
        "CREATE TABLE runstream.x (a UInt8) ENGINE = Memory",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT 1 SETTINGS max_execution_time = 100000",
    ):
        reply = readonly.request(sql)
        assert (reply.status, reply.code) == (500, "164"), (sql, reply.text)
    reply = readonly.request(b"1\n", {"query": "INSERT INTO runstream.metrics (run_id) FORMAT TabSeparated"})
    assert reply.code == "164", reply.text
    assert readonly.query("SELECT count() FROM runstream.metrics", max_threads="1") == "2\n"
    client = connect(readonly.settings)
    try:
        assert client.query("SELECT sum(value) FROM metrics").result_rows == [(0.75,)]
    finally:
        client.close()
