"""Keras 3: ``model.fit(..., callbacks=[RunstreamCallback(project="mnist", team="vision")])``.

Batch-end logs go to ``train/<name>`` at a step counted over every batch of the fit; epoch-end logs
(which include ``val_*``) go to ``epoch/<name>`` at the step of the epoch's last batch, with
``epoch``. The run starts at ``on_train_begin`` (the optimizer's config as params) and finishes at
``on_train_end``; pass ``run=`` to log into a run you started yourself (it is then left open).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from runstream.integrations._runs import scalars, start_run
from runstream.run import Run, RunOptions


class RunstreamCallback(keras.callbacks.Callback):  # type: ignore[misc,unused-ignore]  # keras ships no type stubs
    def __init__(
        self, project: str | None = None, team: str | None = None, *, run: Run | None = None, **options: Any
    ) -> None:
        super().__init__()
        self._project = project
        self._team = team
        self._options: RunOptions = options  # type: ignore[assignment]
        self.run = run
        self._owns_run = run is None
        self._step = -1

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.run is None:
            options: RunOptions = dict(self._options)  # type: ignore[assignment]
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is not None and "config" not in options:
                options["config"] = {"optimizer": optimizer.get_config()}
            self.run = start_run(self._project, self._team, options)
        self._step = max(self._step, self.run.step)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._step += 1
        if self.run is not None and logs:
            self.run.log({f"train/{key}": value for key, value in scalars(logs).items()}, step=self._step)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self.run is not None:
            values = {f"epoch/{key}": value for key, value in scalars(logs or {}).items()}
            self.run.log({**values, "epoch": float(epoch)}, step=max(self._step, 0))

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.run is not None and self._owns_run:
            self.run.finish()
