"""The embedded engine over HTTP, reached with clickhouse-connect's HTTP client as a server would be."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from runstream.settings import Settings
from runstream_schemas.events import MetricBatch, encode_event
from runstream_worker.batch import SourceRecord, decode_batch
from runstream_worker.chdb_http import ChdbHttpServer
from runstream_worker.clickhouse import connect
from runstream_worker.migrate import load_migrations, migrate, pending
from runstream_worker.sink import ClickHouseSink


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Settings]:
    server = ChdbHttpServer(str(tmp_path / "db"), port=0).start()
    try:
        yield Settings(_env_file=None, clickhouse_url=f"http://127.0.0.1:{server.port}")  # type: ignore[call-arg]
    finally:
        server.stop()


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
        assert sink.stored_records({("p1", 1), ("p1", 2)}, {("t", "p", "r1")}) == {("p1", 1)}
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


def test_plain_http_clients_get_ping_compressed_inserts_and_error_codes(served: Settings) -> None:
    base = served.clickhouse_url
    with urllib.request.urlopen(f"{base}/ping", timeout=10) as response:
        assert response.read() == b"Ok.\n"
    query = urllib.parse.quote("CREATE TABLE t (a UInt32, b String) ENGINE = MergeTree ORDER BY a")
    urllib.request.urlopen(urllib.request.Request(f"{base}/?query={query}", data=b""), timeout=10).close()
    insert = urllib.parse.quote("INSERT INTO t FORMAT TabSeparated")
    request = urllib.request.Request(
        f"{base}/?query={insert}", data=gzip.compress(b"1\tone\n2\ttwo\n"), headers={"Content-Encoding": "gzip"}
    )
    urllib.request.urlopen(request, timeout=10).close()
    with urllib.request.urlopen(urllib.request.Request(base, data=b"SELECT a, b FROM t ORDER BY a"), timeout=10) as r:
        assert r.read() == b"1\tone\n2\ttwo\n"
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(urllib.request.Request(base, data=b"SELEC 1"), timeout=10)
    assert failure.value.code == 500
    assert failure.value.headers["X-ClickHouse-Exception-Code"] == "62"
    assert failure.value.read().startswith(b"Code: 62. DB::Exception: Syntax error")


def _post(base: str, sql: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> bytes:
    url = f"{base}/?{urllib.parse.urlencode(params or {})}"
    with urllib.request.urlopen(urllib.request.Request(url, data=sql.encode(), headers=headers or {}), timeout=10) as r:
        body: bytes = r.read()
        if r.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return body


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
def served_readonly(tmp_path: Path) -> Iterator[str]:
    """A migrated store with two points, served read-only."""
    path = str(tmp_path / "db")
    writable = ChdbHttpServer(path, port=0).start()
    settings = Settings(_env_file=None, clickhouse_url=f"http://127.0.0.1:{writable.port}")  # type: ignore[call-arg]
    migrate(settings)
    batch = MetricBatch(
        producer_id="p1", seq=1, run_id="r1", team="t", project="p",
        keys=["loss", "loss"], steps=[0, 1], ts_ms=[1_700_000_000_000] * 2, values=[0.5, 0.25],
    )  # fmt: skip
    sink = ClickHouseSink(settings)
    sink.write(decode_batch([SourceRecord("runstream.metrics", 0, 1, encode_event(batch))], "runstream.").rows, "a")
    sink.close()
    writable.stop()
    server = ChdbHttpServer(path, port=0, readonly=True).start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def test_formats_grafana_and_clients_ask_for(served_readonly: str) -> None:
    sql = "SELECT step, key FROM runstream.metrics ORDER BY step"
    # RowBinaryWithNamesAndTypes: column count, names, types, then rows (Int64 little endian, String).
    body = _post(served_readonly, sql, {"default_format": "RowBinaryWithNamesAndTypes"})
    count, at = _leb128(body, 0)
    names, at = _strings(body, count, at)
    types, at = _strings(body, count, at)
    assert (names, types) == (["step", "key"], ["Int64", "LowCardinality(String)"])
    assert body[at : at + 8] == (0).to_bytes(8, "little") and body[at + 8 : at + 13] == b"\x04loss"
    # JSON (a FORMAT clause wins over default_format), with a bound query parameter.
    body = _post(
        served_readonly,
        "SELECT step, value FROM runstream.metrics WHERE step >= {s:Int64} ORDER BY step FORMAT JSON",
        {"default_format": "Native", "param_s": "1"},
    )
    assert json.loads(body)["data"] == [{"step": 1, "value": 0.25}]
    # Native, as Grafana's plugin (clickhouse-go) requests it: 2 columns, 2 rows, then named columns.
    body = _post(served_readonly, sql, {"default_format": "Native", "database": "runstream"})
    assert body[:2] == b"\x02\x02" and body[2:7] == b"\x04step"
    # Compressed reply when the client enables it.
    assert _post(
        served_readonly, "SELECT count() FROM runstream.metrics",
        {"enable_http_compression": "1"}, {"Accept-Encoding": "gzip"},
    ) == b"2\n"  # fmt: skip


def test_a_read_only_server_refuses_writes_ddl_and_lifting_readonly(served_readonly: str) -> None:
    for sql in (
        "INSERT INTO runstream.metrics (run_id) VALUES ('x')",
        "DROP TABLE runstream.metrics",
        "CREATE TABLE runstream.x (a UInt8) ENGINE = Memory",
        "SELECT 1 SETTINGS readonly = 0",
    ):
        with pytest.raises(urllib.error.HTTPError) as failure:
            _post(served_readonly, sql)
        assert failure.value.headers["X-ClickHouse-Exception-Code"] == "164", sql
    with pytest.raises(urllib.error.HTTPError) as failure:
        _post(served_readonly, "", {"query": "INSERT INTO runstream.metrics (run_id) FORMAT TabSeparated"})
    assert failure.value.code == 500
    # Reads, and settings other than readonly, still work.
    assert _post(served_readonly, "SELECT count() FROM runstream.metrics SETTINGS max_threads = 1") == b"2\n"
    client = connect(Settings(_env_file=None, clickhouse_url=served_readonly))  # type: ignore[call-arg]
    try:
        assert client.query("SELECT sum(value) FROM metrics").result_rows == [(0.75,)]
    finally:
        client.close()
