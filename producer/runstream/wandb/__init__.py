"""W&B's API on runstream: ``import runstream.wandb as wandb`` and a typical W&B script runs unchanged.

>>> import runstream.wandb as wandb
>>> run = wandb.init(project="resnet", entity="vision", config={"lr": 3e-4})
>>> wandb.log({"loss": 0.31})
>>> wandb.finish()

Supported: ``init`` (``entity`` is the team), ``log`` with W&B's step and commit rules, ``config``,
``summary``, ``define_metric``, ``alert`` (stored as the run's ``alert:<title>`` tag), ``finish``,
``run``, ``login``, modes ``online``/``offline``/``disabled``. Everything goes through runstream's SDK
(Kafka, the spool, exactly once). Media (``wandb.Image``...), tables, artifacts, sweeps, ``watch`` and
files warn once and do nothing. The ``wandb`` package is not needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from runstream.wandb import _state
from runstream.wandb._config import Config
from runstream.wandb._init import init, require_run
from runstream.wandb._metrics import MetricDefinition
from runstream.wandb._run import AlertLevel, WandbRun
from runstream.wandb._unsupported import (
    Artifact,
    Audio,
    Histogram,
    Html,
    Image,
    Molecule,
    Object3D,
    Table,
    Video,
    agent,
    log_artifact,
    log_model,
    plot,
    restore,
    save,
    sweep,
    unwatch,
    use_artifact,
    watch,
)

__all__ = [
    "AlertLevel",
    "Artifact",
    "Audio",
    "Config",
    "Histogram",
    "Html",
    "Image",
    "Molecule",
    "Object3D",
    "Settings",
    "Table",
    "Video",
    "WandbRun",
    "agent",
    "alert",
    "define_metric",
    "finish",
    "init",
    "log",
    "log_artifact",
    "log_model",
    "login",
    "plot",
    "restore",
    "save",
    "sweep",
    "unwatch",
    "use_artifact",
    "watch",
]


class Settings:
    """``wandb.Settings(...)``: tunes W&B's own process; accepted and ignored."""

    def __init__(self, **kwargs: Any) -> None:
        self.values = kwargs


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None, sync: Any = None) -> None:
    """``wandb.run.log``."""
    require_run("wandb.log").log(data, step=step, commit=commit)


def define_metric(
    name: str,
    step_metric: str | None = None,
    step_sync: bool | None = None,
    hidden: bool | None = None,
    summary: str | None = None,
    goal: str | None = None,
    overwrite: bool | None = None,
) -> MetricDefinition:
    """``wandb.run.define_metric``."""
    return require_run("wandb.define_metric").define_metric(name, step_metric, step_sync, hidden, summary, goal)


def alert(
    title: str, text: str, level: str | AlertLevel | None = None, wait_duration: float | timedelta | None = None
) -> None:
    """``wandb.run.alert``."""
    require_run("wandb.alert").alert(title, text, level, wait_duration)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish ``wandb.run`` (nothing to do without one)."""
    run = _state.current()
    if run is not None:
        run.finish(exit_code)


def login(*args: Any, **kwargs: Any) -> bool:
    """Nothing to sign in to: runstream sends to its own Kafka. Returns True, as W&B does once signed in."""
    return True


def __getattr__(name: str) -> Any:
    """``wandb.run`` (None before ``init()``), ``wandb.config`` (before ``init()``, the values the next
    run starts with) and ``wandb.summary``."""
    run = _state.current()
    if name == "run":
        return run
    if name == "config":
        return run.config if run is not None else _state.preinit_config
    if name == "summary":
        return require_run("wandb.summary").summary
    raise AttributeError(f"module 'runstream.wandb' has no attribute {name!r}")
