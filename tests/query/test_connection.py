"""The notebook extra is loaded lazily, one client is shared per target, and connection problems
say what to do."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from runstream import query
from runstream.query._connection import open_client
from runstream_core.errors import MissingExtraError
from tests.query.conftest import Seeded

INSTALL = "pip install 'runstream\\[notebook\\]'"


def test_importing_runstream_loads_no_notebook_library() -> None:
    code = textwrap.dedent(
        """
        import sys
        import runstream
        before = "runstream.query" in sys.modules
        query = runstream.query  # an attribute of the package, imported on first use
        print(before, query.__name__, callable(query.runs))
        print(sorted(m for m in ("pandas", "matplotlib", "clickhouse_connect", "chdb") if m in sys.modules))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.split("\n")[:2] == ["False runstream.query True", "[]"]


def test_missing_pandas_names_the_extra(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    for call in (
        lambda: query.runs(settings=seeded.settings),
        lambda: query.curves(["vision-0-0"], "loss", settings=seeded.settings),
        lambda: query.hardware("vision-0-0", settings=seeded.settings),
        lambda: query.compare(["vision-0-0"], "loss", settings=seeded.settings),
    ):
        with pytest.raises(MissingExtraError, match=f"module 'pandas' is missing\\): {INSTALL}"):
            call()


def test_missing_matplotlib_names_the_extra(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    comparison = query.compare(["vision-0-0"], "loss", settings=seeded.settings)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(MissingExtraError, match=f"module 'matplotlib.pyplot' is missing\\): {INSTALL}"):
        comparison.plot()


def test_missing_clickhouse_connect_names_the_extra(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "clickhouse_connect", None)
    with pytest.raises(MissingExtraError, match=INSTALL):
        open_client(seeded.settings)


def test_one_client_per_target(seeded: Seeded) -> None:
    first = query.reader(seeded.settings).client
    assert query.reader(seeded.settings.model_copy()).client is first
    query.close()
    second = query.reader(seeded.settings).client
    assert second is not first
    assert query.sql("SELECT count() AS runs FROM run_table", settings=seeded.settings)["runs"].tolist() == [24]


def test_embedded_store_open_elsewhere_points_to_the_http_endpoint(seeded: Seeded) -> None:
    query.reader(seeded.settings)  # this process holds the path, as a worker would
    code = textwrap.dedent(
        f"""
        from runstream import query
        from runstream.settings import Settings
        try:
            query.runs(settings=Settings(clickhouse_url={seeded.settings.clickhouse_url!r}, _env_file=None))
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.startswith("CommError the embedded store ")
    assert "is open in another process" in result.stdout
    assert "RUNSTREAM_CLICKHOUSE_URL=http://127.0.0.1:8123" in result.stdout


def test_reader_with_its_own_client(seeded: Seeded) -> None:
    with query.Reader.connect(seeded.settings) as reader:
        table = reader.runs(team="speech", order_by="loss", limit=1)
        assert table["run_id"].tolist() == ["speech-0-0"]
        assert table["metric.loss"].tolist() == pytest.approx([0.3], abs=1e-12)
