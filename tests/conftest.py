import os
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.pipeline",
    "tests.fixtures.endpoint",
    "tests.fixtures.clients",
    "tests.fixtures.webhooks",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need the Kafka broker are marked ``kafka``: ``pytest -m "not kafka"`` runs the rest
    in about a minute (``make test-fast``); ``make test`` runs everything."""
    for item in items:
        if "kafka_broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(autouse=True, scope="session")
def private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """runstream's state (e.g. a generated endpoint password) goes to a temporary folder, never ~/.runstream."""
    previous = os.environ.get("RUNSTREAM_STATE_DIR")
    os.environ["RUNSTREAM_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    yield
    if previous is None:
        os.environ.pop("RUNSTREAM_STATE_DIR", None)
    else:
        os.environ["RUNSTREAM_STATE_DIR"] = previous
