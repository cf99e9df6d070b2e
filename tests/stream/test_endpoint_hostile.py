"""The endpoint against an attacker: every probe is refused with ClickHouse's code and status, and
nothing is read, written or cancelled.

Each probe below was seen to work against the endpoint before it was closed (reading and writing
any file, requests from the server, shared session state, one query blocking all others, unbounded
bodies and connections). The store holds two known points; after the probes it holds exactly them.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import resource
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runstream_core.events import MetricBatch, encode_event
from runstream_worker.decode import SourceRecord, decode_batch
from runstream_worker.migrate import migrate
from runstream_worker.sink import ClickHouseSink
from tests.fixtures.endpoint import Endpoint, Reply

SECRET = "secret-file-content-7f3a"


@pytest.fixture
def store(endpoint_factory: Callable[..., Endpoint], tmp_path: Path) -> Path:
    """A migrated store with two points of run r1."""
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
    return path


@pytest.fixture
def endpoint(endpoint_factory: Callable[..., Endpoint], store: Path) -> Endpoint:
    return endpoint_factory(store)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET + "\n")
    return path


def assert_refused(reply: Reply, code: str, status: int, context: str = "") -> None:
    """Refused as a ClickHouse server refuses: its code in the header and the body, and its status."""
    assert (reply.code, reply.status) == (code, status), f"{context}: {reply.text}"
    assert reply.text.startswith(f"Code: {code}. DB::Exception: "), f"{context}: {reply.text}"
    assert SECRET not in reply.text


def test_file_and_network_access_is_refused(endpoint: Endpoint, secret_file: Path, tmp_path: Path) -> None:
    written = tmp_path / "written.csv"
    site_packages_pth = tmp_path / "evil.pth"
    probes = {
        # reading any file: table function, ordinary function, schema inference
        f"SELECT * FROM file('{secret_file}', 'LineAsString')": "497",
        f"SELECT file('{secret_file}')": "497",
        f"DESCRIBE TABLE file('{secret_file}', 'LineAsString')": "497",
        f"SELECT * FROM (SELECT 1) WHERE 1 IN (SELECT line FROM file('{secret_file}', 'LineAsString'))": "497",
        f"WITH x AS (SELECT * FROM file('{secret_file}', 'LineAsString')) SELECT * FROM x": "497",
        f"SELECT * FROM sqlite('{secret_file}', 't')": "497",
        # writing any file
        f"SELECT 'x' INTO OUTFILE '{site_packages_pth}' TRUNCATE": "164",
        f"SELECT 'x' INTO OUTFILE '{site_packages_pth}' APPEND": "164",
        f"INSERT INTO FUNCTION file('{written}', 'CSV') SELECT 1": "164",
        f"INSERT INTO runstream.metrics FROM INFILE '{secret_file}' FORMAT CSV": "164",
        # requests from the server, other servers, programs, the process's own memory
        "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')": "497",
        "SELECT * FROM remote('127.0.0.1', system.one)": "497",
        "SELECT * FROM executable('id', 'TSV', 'x String')": "497",
        "SELECT * FROM s3('http://127.0.0.1:9/b/k', 'CSV')": "497",
        "SELECT * FROM mysql('127.0.0.1:9', 'd', 't', 'u', 'p')": "497",
        "SELECT * FROM input('x String')": "497",
        "SELECT * FROM Python(x)": "497",
        "SELECT dictGet('d', 'a', 1)": "497",
        "SELECT joinGet('t', 'a', 1)": "497",
        "SELECT getServerSetting('path')": "497",
        # server internals and other clients' queries
        "SELECT name, path FROM system.disks": "497",
        "SELECT * FROM system.processes": "497",
        "SELECT 1 WHERE 1 IN system.processes": "497",
        "SELECT path FROM system.parts": "497",
        "SHOW PROCESSLIST": "164",
        "KILL QUERY WHERE 1": "164",
        "SYSTEM DROP DNS CACHE": "164",
        "SET max_result_rows = 1": "164",
        "USE system": "164",
        "CREATE USER evil IDENTIFIED BY 'x'": "164",
        "SELECT 1; SELECT 2": "62",
    }
    for sql, code in probes.items():
        reply = endpoint.request(sql)
        status = {"497": 403, "164": 500, "62": 400}[code]
        assert_refused(reply, code, status, sql)
    assert not written.exists() and not site_packages_pth.exists()
    assert endpoint.query("SELECT count() FROM runstream.metrics") == "2\n"


def test_no_credentials_wrong_ones_and_mixed_ones_are_refused(endpoint: Endpoint) -> None:
    none = endpoint.request("SELECT 1", auth=None)
    assert_refused(none, "194", 401)
    for auth in (("runstream", "wrong"), ("default", ""), ("nobody", endpoint.password), ("runstream", "")):
        reply = endpoint.request("SELECT 1", auth=auth)
        assert_refused(reply, "516", 403)
    # The three ways ClickHouse accepts work; using two at once does not.
    headers = {"X-ClickHouse-User": "runstream", "X-ClickHouse-Key": endpoint.password}
    assert endpoint.request("SELECT 1", headers=headers, auth=None).body == b"1\n"
    params = {"user": "runstream", "password": endpoint.password}
    assert endpoint.request("SELECT 1", params, auth=None).body == b"1\n"
    mixed = endpoint.request("SELECT 1", headers=headers)
    assert_refused(mixed, "516", 403)
    bearer = endpoint.request("SELECT 1", headers={"Authorization": "Bearer abc"}, auth=None)
    assert_refused(bearer, "516", 403)


def test_web_pages_cannot_reach_it(endpoint: Endpoint, tmp_path: Path) -> None:
    target = tmp_path / "from-a-page.csv"
    sql = f"INSERT INTO FUNCTION file('{target}', 'CSV') SELECT 1"
    # An <img src> or fetch() from a page: a foreign Origin, a cross-site fetch, a rebinding Host name.
    for headers in (
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
        {"Host": "evil.example:8123"},
        {"Host": "attacker.rebind.example"},
    ):
        for method in ("GET", "POST"):
            params = {"query": sql} if method == "GET" else None
            reply = endpoint.request(sql if method == "POST" else None, params, headers, method=method)
            assert_refused(reply, "497", 403, str(headers))
    # Without credentials a browser gets nothing, origin or not; GET never writes.
    get_write = endpoint.request(None, {"query": "CREATE TABLE runstream.x (a UInt8) ENGINE = Memory"}, method="GET")
    assert get_write.code == "164"
    assert not target.exists()
    assert endpoint.request("SELECT 1", headers={"Host": "localhost:8123"}).body == b"1\n"
    assert endpoint.request("SELECT 1", headers={"Host": "[::1]:8123"}).body == b"1\n"


def test_allowed_hosts_and_origins_are_configurable(endpoint_factory: Callable[..., Endpoint], store: Path) -> None:
    endpoint = endpoint_factory(
        store, http_allowed_hosts="worker.internal", http_allowed_origins="https://grafana.example"
    )
    assert endpoint.request("SELECT 1", headers={"Host": "worker.internal:8123"}).body == b"1\n"
    reply = endpoint.request("SELECT 1", headers={"Origin": "https://grafana.example"})
    assert (reply.body, reply.headers["access-control-allow-origin"]) == (b"1\n", "https://grafana.example")
    assert endpoint.request("SELECT 1", headers={"Host": "other.internal"}).code == "497"


def test_each_request_is_on_its_own(endpoint: Endpoint) -> None:
    """Settings and the database of one request never reach the next one."""
    # URL settings apply to their own request only.
    limited = endpoint.request(
        "SELECT number FROM numbers(5)", {"max_result_rows": "1", "result_overflow_mode": "throw"}
    )
    assert limited.code == "396", limited.text
    assert endpoint.query("SELECT count() FROM numbers(5)") == "5\n"
    assert endpoint.query("SELECT number FROM numbers(5)") == "0\n1\n2\n3\n4\n"
    # ?database= is this request's only.
    assert endpoint.query("SELECT currentDatabase()", database="runstream") == "runstream\n"
    assert endpoint.query("SELECT currentDatabase()") == "default\n"
    system = endpoint.request("SELECT * FROM disks", {"database": "system"})
    assert system.code == "497", system.text
    # Filters that would hide rows from everyone, and settings that lift limits, are refused.
    for name, value in (
        ("additional_table_filters", "{'runstream.metrics': 'step = 0'}"),
        ("additional_result_filter", "step = 0"),
        ("readonly", "0"),
        ("allow_ddl", "1"),
        ("max_execution_time", "0"),
        ("max_execution_time", "100000"),
        ("max_memory_usage", "0"),
        ("max_result_bytes", "99999999999999"),
        ("dialect", "kusto"),
        ("use_query_cache", "1"),
        ("format_schema", "/etc/passwd:Message"),
        ("allow_introspection_functions", "1"),
    ):
        reply = endpoint.request("SELECT count() FROM runstream.metrics", {name: value})
        assert reply.code in ("452", "36", "164"), (name, reply.text)
    assert endpoint.query("SELECT count() FROM runstream.metrics") == "2\n"


def test_url_settings_survive_a_trailing_comment(endpoint: Endpoint) -> None:
    """Grafana sends its row limit as a URL setting; a query ending in a comment must not drop it."""
    reply = endpoint.request(
        "SELECT number FROM numbers(5) -- a comment",
        {"max_result_rows": "1", "result_overflow_mode": "throw"},
    )
    assert reply.code == "396", reply.text
    limited = endpoint.request("SELECT number FROM numbers(5) -- top 2", {"limit": "2"})
    assert limited.body == b"0\n1\n"


def test_a_long_query_blocks_no_one_and_stops_at_the_limit(
    endpoint_factory: Callable[..., Endpoint], store: Path
) -> None:
    endpoint = endpoint_factory(store, http_max_execution_time=3)
    results: dict[str, object] = {}

    def endless() -> None:
        results["endless"] = endpoint.request("SELECT count() FROM system.numbers")

    thread = threading.Thread(target=endless)
    started = time.monotonic()
    thread.start()
    time.sleep(0.5)
    # Other clients are served while it runs.
    assert endpoint.query("SELECT count() FROM runstream.metrics") == "2\n"
    assert time.monotonic() - started < 2.5
    thread.join(30)
    reply = results["endless"]
    assert getattr(reply, "code", None) == "159", getattr(reply, "text", reply)  # TIMEOUT_EXCEEDED
    assert getattr(reply, "status", None) == 408
    raised = endpoint.request("SELECT count() FROM system.numbers", {"max_execution_time": "10"})
    assert raised.code == "452", raised.text


def test_stop_cancels_running_queries_within_a_bound(endpoint_factory: Callable[..., Endpoint], store: Path) -> None:
    endpoint = endpoint_factory(store, http_max_execution_time=600)
    replies: list[Reply] = []
    threads = [
        threading.Thread(target=lambda: replies.append(endpoint.request("SELECT count() FROM system.numbers")))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    started = time.monotonic()
    endpoint.stop()
    assert time.monotonic() - started < 10
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    # Each client is told its query was cancelled, as a server's KILL QUERY tells it.
    assert [(reply.code, reply.status) for reply in replies] == [("394", 500), ("394", 500)], replies


def test_bodies_are_capped_before_and_after_decompression(
    endpoint_factory: Callable[..., Endpoint], store: Path
) -> None:
    endpoint = endpoint_factory(store, http_max_query_size=4096, http_max_decompressed_bytes=1024 * 1024)
    bomb = gzip.compress(b"SELECT 1 -- " + b"x" * 50_000_000)
    assert len(bomb) < 100_000
    reply = endpoint.request(bomb, headers={"Content-Encoding": "gzip"})
    assert reply.code in ("229", "62"), reply.text
    long_query = endpoint.request("SELECT '" + "x" * 10_000 + "'")
    assert long_query.code == "62" and "Max query size exceeded" in long_query.text
    unknown = endpoint.request(b"SELECT 1", headers={"Content-Encoding": "br2"})
    assert unknown.code == "89"
    broken = endpoint.request(b"not gzip", headers={"Content-Encoding": "gzip"})
    assert broken.code == "271"
    block = endpoint.request("SELECT 1", {"compress": "1"})
    assert (block.code, block.status) == ("48", 501)


def _raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while piece := sock.recv(65536):
                chunks.append(piece)
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_malformed_requests_and_slow_clients_do_not_hold_threads(
    endpoint_factory: Callable[..., Endpoint], store: Path
) -> None:
    endpoint = endpoint_factory(store, http_headers_timeout=1, http_receive_timeout=1, http_max_connections=20)
    port = endpoint.port
    auth = base64.b64encode(f"runstream:{endpoint.password}".encode())
    negative = _raw(port, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic " + auth + b"\r\n"
                    b"Content-Length: -5\r\n\r\nSELECT 1")  # fmt: skip
    assert negative.startswith(b"HTTP/1.1 400") and b"Code: 36." in negative, negative
    # Half-sent requests: many more than the connection cap, each abandoned mid-headers or mid-body.
    sockets = []
    for i in range(60):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n" if i % 2 else
                     b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic " + auth +
                     b"\r\nContent-Length: 1000\r\n\r\nSELECT")  # fmt: skip
        sockets.append(sock)
    time.sleep(2.5)  # past the header and receive timeouts: every stuck connection is closed
    assert endpoint.query("SELECT count() FROM runstream.metrics") == "2\n"
    for sock in sockets:
        sock.close()
    assert threading.active_count() < 40


def test_too_many_connections_get_503_and_too_many_queries_get_202(
    endpoint_factory: Callable[..., Endpoint], store: Path
) -> None:
    endpoint = endpoint_factory(store, http_max_connections=2, http_max_concurrent_queries=1, http_headers_timeout=5)
    held = [socket.create_connection(("127.0.0.1", endpoint.port)) for _ in range(2)]
    time.sleep(0.3)
    refused = _raw(endpoint.port, b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout=3)
    assert refused.startswith(b"HTTP/1.1 503"), refused
    for sock in held:
        sock.close()
    time.sleep(0.3)
    busy: list[object] = []
    slow = threading.Thread(
        target=lambda: busy.append(endpoint.request("SELECT sleepEachRow(0.5) FROM numbers(4) FORMAT Null"))
    )
    slow.start()
    time.sleep(0.5)
    second = endpoint.request("SELECT 1")
    assert (second.code, second.status) == ("202", 500), second.text
    slow.join()
    assert [getattr(reply, "status", None) for reply in busy] == [200]
    # The slot is given back once the slow reply is written, which the client can see a moment earlier.
    deadline = time.monotonic() + 30
    while (after := endpoint.request("SELECT 1")).status != 200 and time.monotonic() < deadline:
        assert after.code == "202", after.text
        time.sleep(0.1)
    assert (after.status, after.text) == (200, "1\n")


def _stream_size(endpoint: Endpoint, sql: str) -> tuple[int, str | None]:
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=120)
    token = base64.b64encode(f"runstream:{endpoint.password}".encode()).decode()
    connection.request(
        "POST", "/?default_format=RowBinary", body=sql.encode(), headers={"Authorization": f"Basic {token}"}
    )
    response = connection.getresponse()
    total = 0
    while piece := response.read(1 << 20):
        total += len(piece)
    connection.close()
    return total, response.getheader("Transfer-Encoding")


def test_results_stream_without_being_held_whole(endpoint: Endpoint) -> None:
    """Results arrive in chunks and are never held whole: the endpoint runs in this process, and a
    result twenty times larger than a first one raises its peak memory by far less than its size."""
    small, encoding = _stream_size(endpoint, "SELECT repeat('x', 100) FROM numbers(1000000)")
    assert (small, encoding) == (1_000_000 * 101, "chunked")  # each row: a 1-byte length and 100 bytes
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    large, _ = _stream_size(endpoint, "SELECT repeat('x', 100) FROM numbers(20000000)")
    assert large == 20_000_000 * 101
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    assert grown < large / 10, f"peak memory grew by {grown / 1e6:.0f} MB for a {large / 1e6:.0f} MB result"
