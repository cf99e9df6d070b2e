"""The process's current W&B run (``wandb.run``) and the config given before ``init()``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runstream.wandb._config import Config

if TYPE_CHECKING:
    from runstream.wandb._run import WandbRun

runs: list[WandbRun] = []
"""Unfinished runs, the current one last."""
preinit_config = Config()
"""``wandb.config`` before ``init()``: its values become the next run's config."""


def current() -> WandbRun | None:
    return runs[-1] if runs else None


def forget(run: WandbRun) -> None:
    if run in runs:
        runs.remove(run)
