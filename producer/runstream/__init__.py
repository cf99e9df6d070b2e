"""runstream: experiment and hardware tracking on Kafka and ClickHouse.

>>> import runstream
>>> with runstream.init(project="resnet", team="vision", config={"lr": 3e-4}) as run:
...     run.log({"loss": 0.31, "acc": 0.91}, step=1)

Module-level shortcuts act on the run most recently started with ``init()``:
``runstream.log``, ``runstream.log_params``, ``runstream.set_tags``, ``runstream.finish``,
``runstream.active_run``, ``runstream.alert``. Notebooks read runs back with ``runstream.query`` (the ``notebook``
extra), imported on first use so training jobs never load pandas.
"""

from __future__ import annotations

from types import ModuleType

from runstream._distributed import Distributed
from runstream._version import __version__
from runstream.run import Run, Summary, active_run, alert, finish, init, log_params, set_tags
from runstream.run import log_metrics as log
from runstream.settings import Settings
from runstream_core.events import AlertLevel

__all__ = [
    "AlertLevel",
    "Distributed",
    "Run",
    "Settings",
    "Summary",
    "__version__",
    "active_run",
    "alert",
    "finish",
    "init",
    "log",
    "log_params",
    "set_tags",
]


def __getattr__(name: str) -> ModuleType:
    if name == "query":
        import importlib

        return importlib.import_module("runstream.query")
    raise AttributeError(f"module 'runstream' has no attribute {name!r}")
