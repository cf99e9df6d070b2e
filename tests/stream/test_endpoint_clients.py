"""Clients nobody here wrote, against the endpoint: clickhouse-go (configured as Grafana's ClickHouse
plugin configures it), @clickhouse/client (Node) and clickhouse-connect with each of its compressions.

The store is the multi-team seed; every value a client decodes is compared with what the engine
itself returns for the same query.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runstream_core.clickhouse import connect
from tests.fixtures.clients import Client
from tests.fixtures.endpoint import Endpoint
from tests.fixtures.seed import SeedFacts, seed

# Every column type of runstream's tables, and the shapes dashboards read.
TYPED_QUERY = """
SELECT r.team AS team, r.run_id AS run_id, r.status AS status, r.tags AS tags, r.started_at AS started_at,
       r.world_size AS world_size, m.step AS step, m.value AS value, m.key AS key, [m.step, m.step + 1] AS steps,
       toNullable(if(m.step % 2 = 0, NULL, m.value)) AS maybe, toDecimal64(m.value, 4) AS decimal
FROM runs AS r FINAL
INNER JOIN metrics AS m ON m.run_id = r.run_id AND m.team = r.team
WHERE r.team = 'vision' AND m.key = 'loss' AND m.step < 3
ORDER BY r.run_id, m.step
LIMIT 12
"""


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SeedFacts]:
    from runstream_worker.endpoint.config import EndpointConfig
    from runstream_worker.endpoint.server import EndpointServer
    from tests.fixtures.endpoint import client_settings
    from tests.fixtures.pipeline import ENDPOINT_PASSWORD
    from tests.fixtures.settings import StackSettings as Settings

    tmp = tmp_path_factory.mktemp("clients")
    settings = Settings(_env_file=None, state_dir=tmp / "state", http_password=ENDPOINT_PASSWORD)  # type: ignore[call-arg]
    config = EndpointConfig.from_settings(settings, path=str(tmp / "db"), host="127.0.0.1", port=0, writable=True)
    server = EndpointServer(config).start()
    try:
        facts = seed(client_settings(server.url, tmp / "state"))
    finally:
        server.stop()
    return tmp / "db", facts


@pytest.fixture
def endpoint(endpoint_factory: Callable[..., Endpoint], seeded_store: tuple[Path, SeedFacts]) -> Endpoint:
    return endpoint_factory(seeded_store[0])


def engine_rows(endpoint: Endpoint, sql: str) -> list[tuple[Any, ...]]:
    client = connect(endpoint.settings)
    try:
        return [tuple(row) for row in client.query(sql).result_rows]
    finally:
        client.close()


def engine_types(endpoint: Endpoint, sql: str) -> list[str]:
    client = connect(endpoint.settings)
    try:
        return [t.name for t in client.query(sql).column_types]
    finally:
        client.close()


def go_request(endpoint: Endpoint, queries: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "addr": f"127.0.0.1:{endpoint.port}",
        "user": endpoint.user,
        "password": endpoint.password,
        "database": "runstream",
        "queries": [{"name": name, "sql": sql} for name, sql in queries.items()],
        **extra,
    }


def test_clickhouse_go_as_grafanas_plugin_reads_every_type(endpoint: Endpoint, go_client: Client) -> None:
    reply = go_client(
        go_request(
            endpoint,
            {
                "typed": TYPED_QUERY,
                "databases": "SHOW DATABASES",
                "tables": "SHOW TABLES FROM runstream",
                "columns": "SELECT name, type FROM system.columns WHERE database = 'runstream' AND table = 'runs'",
                "describe": 'DESC TABLE "runstream"."metrics"',
                "empty": "SELECT run_id FROM runs WHERE run_id = 'none'",
                "version": "SELECT version()",
            },
        )
    )
    assert reply["ping"] == "", reply["ping"]
    results = {r["name"]: r for r in reply["results"]}
    for result in results.values():
        assert "error" not in result, result
    typed = results["typed"]
    expected = engine_rows(endpoint, TYPED_QUERY)
    assert len(typed["rows"]) == len(expected) == 12
    assert typed["types"] == engine_types(endpoint, TYPED_QUERY)
    assert "Map(LowCardinality(String), String)" in typed["types"] and "Nullable(Float64)" in typed["types"]
    for got, want in zip(typed["rows"], expected, strict=True):
        team, run_id, status, tags, started_at, world_size, step, value, key, steps, maybe, decimal = got
        assert (team, run_id, status, tags, world_size, step, key) == (
            want[0], want[1], want[2], want[3], want[5], want[6], want[8]
        )  # fmt: skip
        assert started_at.startswith(want[4].strftime("%Y-%m-%dT%H:%M:%S"))
        assert value == pytest.approx(want[7]) and steps == [want[6], want[6] + 1]
        assert (maybe is None) == (want[10] is None)
        assert float(decimal) == pytest.approx(float(want[11]), abs=1e-4)
    assert [row[0] for row in results["databases"]["rows"]] == [
        "INFORMATION_SCHEMA",
        "default",
        "information_schema",
        "runstream",
        "system",
    ]
    assert ["metrics"] in results["tables"]["rows"] and ["run_table"] in results["tables"]["rows"]
    assert ["tags", "Map(LowCardinality(String), String)"] in results["columns"]["rows"]
    assert results["describe"]["rows"][0][:2] == ["team", "LowCardinality(String)"]
    assert results["empty"]["rows"] == []


def test_clickhouse_go_gets_refusals_and_the_plugins_row_limit(endpoint: Endpoint, go_client: Client) -> None:
    reply = go_client(
        go_request(
            endpoint,
            {
                "limited": "SELECT number FROM numbers(10)",
                "refused": "SELECT name, path FROM system.disks",
                "dropped": "DROP TABLE runstream.metrics",
            },
            settings={"limit": 3},  # the plugin's row limit, sent as a URL setting
        )
    )
    results = {r["name"]: r for r in reply["results"]}
    assert results["limited"]["rows"] == [[0], [1], [2]]
    assert "code: 497" in results["refused"]["error"]
    assert "code: 164" in results["dropped"]["error"]
    wrong = go_client({**go_request(endpoint, {"one": "SELECT 1"}), "password": "wrong"})
    assert "code: 516" in wrong["ping"]
    assert engine_rows(endpoint, "SELECT count() FROM runstream.metrics")[0][0] > 0


def test_node_client_json_parameters_streaming_compression_and_errors(
    endpoint: Endpoint, node_client: Client, seeded_store: tuple[Path, SeedFacts]
) -> None:
    facts = seeded_store[1]
    run = next(r for r in facts.runs if r.team == "vision")
    reply = node_client(
        {
            "url": endpoint.url,
            "user": endpoint.user,
            "password": endpoint.password,
            "database": "runstream",
            "queries": [
                {
                    "name": "points",
                    "sql": "SELECT step, value FROM metrics WHERE run_id = {run:String} AND key = 'loss' "
                    "ORDER BY step LIMIT 5",
                    "params": {"run": run.run_id},
                },
                {
                    "name": "streamed",
                    "sql": "SELECT run_id, count() AS n FROM metrics WHERE team = {team:String} "
                    "GROUP BY run_id ORDER BY run_id",
                    "params": {"team": "nlp"},
                    "stream": True,
                },
                {"name": "refused", "sql": "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')"},
            ],
        }
    )
    assert reply["ping"] is True
    results = {r["name"]: r for r in reply["results"]}
    expected = engine_rows(
        endpoint,
        f"SELECT step, value FROM metrics WHERE run_id = '{run.run_id}' AND key = 'loss' ORDER BY step LIMIT 5",
    )
    assert [(int(r["step"]), r["value"]) for r in results["points"]["rows"]] == expected
    nlp = [r for r in facts.runs if r.team == "nlp"]
    assert results["streamed"]["streamed"] is True
    assert {r["run_id"]: int(r["n"]) for r in results["streamed"]["rows"]} == {r.run_id: facts.steps * 2 for r in nlp}
    assert results["refused"]["error"]["code"] == "497"


@pytest.mark.parametrize("compress", [False, True, "lz4", "zstd", "gzip"])
def test_clickhouse_connect_with_each_compression(
    endpoint_factory: Callable[..., Endpoint], compress: bool | str, tmp_path: Path
) -> None:
    import clickhouse_connect

    endpoint = endpoint_factory(tmp_path / "db", writable=True)
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=endpoint.port, username=endpoint.user, password=endpoint.password,
        compress=compress,
    )  # fmt: skip
    try:
        client.command("CREATE TABLE t (a UInt32, b String, c Float64) ENGINE = MergeTree ORDER BY a")
        rows = [(i, f"row {i}" * (i % 7), math.sqrt(i)) for i in range(20_000)]
        client.insert("t", rows, column_names=["a", "b", "c"])
        assert client.query("SELECT a, b, c FROM t ORDER BY a").result_rows == rows
        assert client.query("SELECT count() FROM t WHERE a < {n:UInt32}", parameters={"n": 10}).result_rows == [(10,)]
        with pytest.raises(Exception, match="497"):
            client.query("SELECT * FROM file('/etc/hostname', 'LineAsString')")
    finally:
        client.close()
