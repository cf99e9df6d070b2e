"""One seeded embedded ClickHouse shared by the query tests (seeding takes a few seconds)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import matplotlib
import pytest

from runstream import query
from tests.fixtures.seed import SeedFacts, seed
from tests.fixtures.settings import StackSettings as Settings

matplotlib.use("Agg")  # no display in tests; plots are checked through their artists


@dataclass(frozen=True)
class Seeded:
    settings: Settings
    facts: SeedFacts


@pytest.fixture(scope="package")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    path = tmp_path_factory.mktemp("query") / "clickhouse"
    settings = Settings(clickhouse_url=f"chdb://{path}", _env_file=None)  # type: ignore[call-arg]
    facts = seed(settings)
    yield Seeded(settings, facts)
    query.close()  # chDB opens one path per process: release it for the tests that follow
