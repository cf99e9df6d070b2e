import os
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.pipeline",
    "tests.fixtures.endpoint",
    "tests.fixtures.clients",
]


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
