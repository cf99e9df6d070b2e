"""PyTorch Lightning: ``Trainer(logger=RunstreamLogger(project="resnet", team="vision"))``.

Only global rank zero logs (Lightning's ``rank_zero_only``); the run starts on first use, so a logger
built before the processes are spawned works too. ``finalize(status)`` ends the run: Lightning's
``"success"`` and ``"finished"`` become ``finished``, ``"failed"`` becomes ``failed``. If the trainer is used
again after that (``trainer.test()`` after ``fit()``), the same run resumes.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from runstream.integrations._runs import scalars, start_run
from runstream.run import Run, RunOptions
from runstream_core.events import RunStatus

_STATUS = {"success": RunStatus.FINISHED, "finished": RunStatus.FINISHED, "failed": RunStatus.FAILED}


class RunstreamLogger(Logger):  # type: ignore[misc,untyped-decorator,unused-ignore]  # Lightning ships no type stubs for its base class
    """A Lightning logger writing to a runstream run (``runstream.init()``'s options as keywords)."""

    def __init__(self, project: str | None = None, team: str | None = None, **options: Any) -> None:
        super().__init__()
        self._project = project
        self._team = team
        self._options: RunOptions = options  # type: ignore[assignment]
        self._run: Run | None = None
        self._finished = False

    @property
    @rank_zero_experiment  # type: ignore[misc,untyped-decorator,unused-ignore]
    def experiment(self) -> Run:
        """The runstream run (started on first use; resumed if it was finalized)."""
        if self._run is None:
            self._run = start_run(self._project, self._team, self._options)
        elif self._finished:
            resumed: RunOptions = {**self._options, "run_id": self._run.run_id, "resume": True}
            self._run = start_run(self._run.info.project, self._run.info.team, resumed)
            self._finished = False
        return self._run

    @property
    def run(self) -> Run | None:
        """The run as it is now (``None`` before first use), without starting or resuming it."""
        return self._run

    @property
    def name(self) -> str:
        return self._run.info.project if self._run is not None else (self._project or "")

    @property
    def version(self) -> str:
        return self._run.run_id if self._run is not None else ""

    @rank_zero_only  # type: ignore[misc,untyped-decorator,unused-ignore]
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        values = vars(params) if isinstance(params, Namespace) else dict(params)
        self.experiment.log_params(values)

    @rank_zero_only  # type: ignore[misc,untyped-decorator,unused-ignore]
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self.experiment.log(scalars(metrics), step=step)

    @rank_zero_only  # type: ignore[misc,untyped-decorator,unused-ignore]
    def finalize(self, status: str) -> None:
        if self._run is None or self._finished:
            return
        self._run.finish(_STATUS.get(status, RunStatus.FINISHED))
        self._finished = True
