"""The embedded engine over HTTP, reached with clickhouse-connect's HTTP client as a server would be."""

from __future__ import annotations

import gzip
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
