"""The run ``wandb.init()`` returns: W&B's step and commit rules over a runstream ``Run``."""

from __future__ import annotations

import atexit
import contextlib
import enum
from collections.abc import Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any

from runstream import _signals
from runstream._flatten import flatten
from runstream.run import Run
from runstream.wandb import _unsupported
from runstream.wandb._config import Config
from runstream.wandb._metrics import Definitions, MetricDefinition, WandbSummary, parse_summary
from runstream_core.events import RunStatus, control_character
from runstream_core.log import WarnOnce, get_logger

log = get_logger("runstream.wandb")

_PLAIN = frozenset((float, int))

"""Alerts are stored as the run's tags ``alert:<title>`` = ``"<LEVEL>: <text>"`` (the newest per title)."""


class AlertLevel(enum.StrEnum):
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


def _one_line(text: str, limit: int) -> str:
    """``text`` without control characters (tags cannot hold them), cut to ``limit`` characters."""
    return "".join(" " if control_character(c) is not None else c for c in text)[:limit]


class WandbRun:
    """``wandb.run``: ``log``, ``config``, ``summary``, ``define_metric``, ``alert``, ``finish``, and
    ``id``, ``name``, ``project``, ``entity``, ``group``, ``job_type``, ``tags``, ``notes``, ``step``.

    Steps follow W&B: ``log(d)`` writes one step and moves to the next; ``commit=False`` adds to the
    current step without moving on; ``log(d, step=s)`` with ``s`` ahead of the current step writes
    what was pending and moves to ``s`` (committing only with ``commit=True``, or when a later call
    moves on); ``s`` behind the current step is dropped with a warning.
    """

    def __init__(
        self, run: Run, *, entity: str, job_type: str | None, notes: str | None, tags: tuple[str, ...], config: Config
    ) -> None:
        self._run = run
        self.entity = entity
        self.job_type = job_type
        self.notes = notes
        self._tags = tags
        self.config = config
        self._warn_once = WarnOnce(log)
        self._definitions = Definitions()
        self.summary = WandbSummary(self._definitions, run.summary)
        self._step = max(run.step + 1, 0)
        self._pending: dict[Any, Any] = {}
        self._finished = False
        config._attach(run.log_params)  # the values it holds went with the run's start
        atexit.register(self._finish_at_exit)

    # -- identity ------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._run.run_id

    @property
    def name(self) -> str:
        return self._run.name

    @name.setter
    def name(self, name: str) -> None:
        """``run.name = "..."`` renames the run, as in W&B."""
        self._run.rename(name)

    @property
    def tags(self) -> tuple[str, ...]:
        return self._tags

    @tags.setter
    def tags(self, tags: tuple[str, ...] | list[str]) -> None:
        """``run.tags = run.tags + ("best",)`` adds labels, as in W&B; a label cannot be taken back."""
        added = [str(t) for t in tags if str(t) not in self._tags]
        dropped = [t for t in self._tags if t not in {str(t) for t in tags}]
        if dropped:
            self._warn_once("tags-removed", "tags cannot be removed from a run; kept", tags=dropped)
        if added:
            self._run.set_tags(added)
        self._tags = (*self._tags, *added)

    @property
    def project(self) -> str:
        return self._run.info.project

    @property
    def group(self) -> str:
        return self._run.info.group

    @property
    def step(self) -> int:
        """The step the next committed ``log()`` writes to."""
        return self._step

    @property
    def dir(self) -> str:
        return str(self._run.dir)

    @property
    def offline(self) -> bool:
        return self._run.mode == "offline"

    @property
    def disabled(self) -> bool:
        return self._run.mode == "disabled"

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    @property
    def url(self) -> None:
        """runstream has no run page of its own: the run is in the Grafana dashboards."""
        return None

    @property
    def runstream_run(self) -> Run:
        """The runstream ``Run`` underneath (for ``log_params``, ``set_tags``, the delivery report)."""
        return self._run

    # -- logging -------------------------------------------------------------------------
    def log(
        self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None, sync: Any = None
    ) -> None:
        if self._finished:
            self._warn_once("log-finished", "log() after finish() is ignored", run_id=self.id)
            return
        if not isinstance(data, Mapping):
            self._warn_once("log-type", "log() takes a dict of metric names to values", got=type(data).__name__)
            return
        if step is not None:
            if isinstance(step, bool) or not hasattr(step, "__index__"):
                self._warn_once("step-type", "step must be an int; this data is ignored", step=repr(step)[:64])
                return
            step = step.__index__()
            if step < self._step:
                self._warn_once(
                    ("step-back", step),
                    "Tried to log to a step that is less than the current step. Steps must be monotonically "
                    "increasing, so this data will be ignored",
                    step=step,
                    current_step=self._step,
                )
                return
            if step > self._step:
                self._commit(advance=False)
                self._step = step
            commit = bool(commit)
        elif commit is None:
            commit = True
        self._pending.update(self._prepare(data))
        if commit:
            self._commit(advance=True)

    def _prepare(self, data: Mapping[str, Any]) -> dict[Any, Any]:
        """Flatten nested dicts to ``a/b``, leave out media, and read tensors now (they may change before the
        step is committed)."""
        if _PLAIN.issuperset(map(type, data.values())):  # the common case: plain numbers
            return dict(data)
        kept: dict[Any, Any] = {}
        for key, value in flatten(data, "/", keep_bad_keys=True):
            if _unsupported.is_unsupported_value(value) or (
                isinstance(value, (list, tuple)) and value and all(map(_unsupported.is_unsupported_value, value))
            ):
                continue
            kept[key] = value
            if type(value) not in (float, int) and hasattr(value, "__float__") and not isinstance(value, str):
                with contextlib.suppress(TypeError, ValueError):  # log() warns about it
                    kept[key] = float(value)
        return kept

    def _commit(self, *, advance: bool) -> None:
        pending, self._pending = self._pending, {}
        if pending:
            if self._definitions.step_metrics:
                self._sync_step_metrics(pending)
            self.summary.observe(pending)
            self._run.log(pending, step=self._step)
        if advance or pending:
            self._step += 1

    def _sync_step_metrics(self, pending: dict[Any, Any]) -> None:
        """W&B's ``step_sync``: a metric whose ``step_metric`` is missing from the step gets its last value."""
        for key in list(pending):
            definition = self._definitions.find(key) if isinstance(key, str) else None
            if definition is None or definition.step_metric is None or not definition.step_sync:
                continue
            step_metric = definition.step_metric
            if step_metric not in pending:
                last = self.summary.last(step_metric)
                if last is not None:
                    pending[step_metric] = last

    def define_metric(
        self,
        name: str,
        step_metric: str | None = None,
        step_sync: bool | None = None,
        hidden: bool | None = None,
        summary: str | None = None,
        goal: str | None = None,
        overwrite: bool | None = None,
    ) -> MetricDefinition:
        """Set how ``name`` (or a glob such as ``"val/*"``) is summarised (``summary="min"``, ``"max"``,
        ``"mean"``, ``"first"``, ``"last"``, ``"best"`` with ``goal``, ``"none"``, or several: ``"min,max"``)
        and which metric is its x-axis (``step_metric``; it is logged with the metric's steps)."""
        if not isinstance(name, str) or not name:
            raise ValueError("define_metric() needs a metric name")
        if goal is not None and goal not in ("minimize", "maximize"):
            raise ValueError("goal must be 'minimize' or 'maximize'")
        definition = MetricDefinition(
            name=name,
            step_metric=step_metric,
            summary=parse_summary(summary),
            goal=goal,
            step_sync=True if step_sync is None else step_sync,
            hidden=bool(hidden),
        )
        self._definitions.add(definition)
        return definition

    # -- alerts --------------------------------------------------------------------------
    def alert(
        self,
        title: str,
        text: str,
        level: str | AlertLevel | None = None,
        wait_duration: float | timedelta | None = None,
    ) -> None:
        """Raise an alert, as ``runstream.Run.alert`` does: stored in the ``alerts`` table and sent to the
        webhooks of the team's ``run_alert`` rules. An alert with the same title within ``wait_duration``
        (default one minute, as W&B) is not sent. Bad arguments raise as in W&B."""
        level_name = (level.value if isinstance(level, AlertLevel) else level) or "INFO"
        if level_name not in AlertLevel.__members__:
            raise ValueError("level must be one of 'INFO', 'WARN', or 'ERROR'")
        if wait_duration is None:
            wait_s = 60.0
        elif isinstance(wait_duration, timedelta):
            wait_s = wait_duration.total_seconds()
        elif isinstance(wait_duration, (int, float)):
            wait_s = float(wait_duration)
        else:
            raise TypeError("wait_duration must be an int, float, or datetime.timedelta")
        if self._run.alert(str(title), str(text), level_name, wait_s):
            log.warning("alert", title=title, text=text, level=level_name, run_id=self.id)

    # -- ending --------------------------------------------------------------------------
    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Write the pending step and the summary, then end the run: finished for exit code 0 (or none),
        failed otherwise. Later calls do nothing."""
        if self._finished:
            return
        self._finished = True
        self._commit(advance=False)
        automatic = self.summary.pending()
        if automatic:
            self._run.summary.update(automatic)
        self._run.finish(RunStatus.FINISHED if not exit_code else RunStatus.FAILED)
        atexit.unregister(self._finish_at_exit)
        from runstream.wandb import _state

        _state.forget(self)

    def _finish_at_exit(self) -> None:
        """A script that never calls ``finish()``: its last step and summary are written at exit (this runs
        before the runstream run's own exit hook, registered earlier)."""
        self.finish(exit_code=1 if _signals.uncaught_exception_seen() else 0)

    def __enter__(self) -> WandbRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)

    # -- not supported yet -----------------------------------------------------------------
    def watch(self, *args: Any, **kwargs: Any) -> None:
        _unsupported.watch()

    def unwatch(self, *args: Any, **kwargs: Any) -> None:
        _unsupported.unwatch()

    def save(self, *args: Any, **kwargs: Any) -> bool:
        return _unsupported.save()

    def log_artifact(self, *args: Any, **kwargs: Any) -> Any:
        return _unsupported.log_artifact()

    def use_artifact(self, *args: Any, **kwargs: Any) -> Any:
        return _unsupported.use_artifact()

    def log_model(self, *args: Any, **kwargs: Any) -> None:
        _unsupported.log_model()

    def log_code(self, *args: Any, **kwargs: Any) -> None:
        _unsupported.unsupported("log_code (files)")

    def mark_preempting(self) -> None:
        """Nothing to do: a killed job's records stay in the spool for ``runstream sync``."""

    def __repr__(self) -> str:
        return f"<runstream.wandb run {self.path} name={self.name!r}>"
