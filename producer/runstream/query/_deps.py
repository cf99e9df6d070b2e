"""The ``notebook`` extra's libraries, imported on first use: ``import runstream`` stays light for
training jobs, and a missing extra fails with the command that installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from runstream_core.errors import MissingExtraError

EXTRA = "notebook"


def require(module: str) -> ModuleType:
    """Import ``module`` (e.g. ``"pandas"``) or raise :class:`MissingExtraError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".", 1)[0]
        if exc.name is not None and exc.name != top and not exc.name.startswith(top + "."):
            raise  # the library is there but one of its own dependencies is broken: show that
        raise MissingExtraError(EXTRA, module) from exc


def pandas() -> ModuleType:
    return require("pandas")


def pyplot() -> ModuleType:
    return require("matplotlib.pyplot")
