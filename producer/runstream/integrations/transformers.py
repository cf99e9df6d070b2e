"""Hugging Face transformers: ``Trainer(..., callbacks=[RunstreamCallback(project="llm", team="nlp")])``.

Importing this module also registers the name ``"runstream"`` with transformers, so that
``TrainingArguments(report_to="runstream")`` adds the callback (project and team from RUNSTREAM_PROJECT
and RUNSTREAM_TEAM, as W&B's callback reads WANDB_PROJECT). Only the world's process zero logs.

Keys follow W&B's callback: ``eval_loss`` becomes ``eval/loss``, ``test_*`` ``test/*``, every other key
``train/*``; the totals logged once at the end (``train_runtime``...) go to the run's summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import integration_utils

from runstream.integrations._runs import scalars, start_run
from runstream.run import Run, RunOptions

_SPLITS = ("eval", "test")
# Logged once by the Trainer when training ends: totals, not curves.
_END_TOTALS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss"}


def metric_key(key: str) -> str:
    """W&B's naming: ``eval_loss`` -> ``eval/loss``, ``loss`` -> ``train/loss``."""
    for split in _SPLITS:
        if key.startswith(split + "_"):
            return f"{split}/{key[len(split) + 1 :]}"
    return key if "/" in key else f"train/{key}"


class RunstreamCallback(TrainerCallback):  # type: ignore[misc,unused-ignore]  # transformers ships no stubs for it
    """Logs a Trainer's ``on_log`` metrics at its global step; the run starts at ``on_train_begin`` with
    the training arguments (and the model's config under ``model.``) as params, and finishes at
    ``on_train_end``. A run that raises is marked failed by the SDK's exception hook."""

    def __init__(self, project: str | None = None, team: str | None = None, **options: Any) -> None:
        self._project = project
        self._team = team
        self._options: RunOptions = options  # type: ignore[assignment]
        self.run: Run | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: Any = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or self.run is not None:
            return
        config: dict[str, Any] = {"args": _plain(args.to_dict())}  # type: ignore[no-untyped-call,unused-ignore]
        model_config: Any = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "to_dict"):
            config["model"] = _plain(model_config.to_dict())
        options: RunOptions = {"config": config, **self._options}
        if args.run_name and "name" not in options:
            options["name"] = args.run_name
        self.run = start_run(self._project, self._team, options)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or self.run is None or not logs:
            return
        numbers = scalars(logs)
        totals = {key: value for key, value in numbers.items() if key in _END_TOTALS and "train_runtime" in numbers}
        if totals:
            self.run.summary.update(totals)
        curves = {metric_key(key): value for key, value in numbers.items() if key not in totals}
        if curves:
            self.run.log(curves, step=state.global_step)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.run is not None and state.is_world_process_zero:
            self.run.finish()


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Params as text-friendly values: enums by value, everything else as the SDK stores it."""
    return {key: getattr(value, "value", value) for key, value in values.items()}


integration_utils.INTEGRATION_TO_CALLBACK["runstream"] = RunstreamCallback
