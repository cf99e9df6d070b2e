"""``runstream.init()`` and the ``Run`` a training job logs to."""

from __future__ import annotations

import atexit
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from runstream import _environment
from runstream._flatten import flatten, param_text
from runstream._log import get_logger
from runstream._transport import DeliveryReport, RecordSender, Transport, kafka_sender
from runstream.errors import UsageError
from runstream.settings import Settings
from runstream_schemas.events import MAX_KEY_LEN, RUN_ID_PATTERN, Heartbeat, RunEnd, RunInfo, RunStart, RunStatus

log = get_logger("runstream.run")

_RUN_ID = re.compile(RUN_ID_PATTERN)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def init(
    project: str,
    team: str,
    *,
    name: str | None = None,
    group: str | None = None,
    tags: Sequence[str] | Mapping[str, str] = (),
    config: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    settings: Settings | None = None,
) -> Run:
    """Start a run and return it; use it as a context manager or call ``finish()``.

    ``tags`` are labels (``["baseline"]``) or key/value pairs (``{"dataset": "imagenet"}``).
    ``config`` may be nested; it is flattened to ``a.b`` keys and stored as the run's params.
    Raises ``UsageError`` for an empty project/team or a malformed run id; nothing else raises.
    """
    return Run(
        project=project,
        team=team,
        name=name,
        group=group,
        tags=tags,
        config=config,
        run_id=run_id,
        settings=settings or Settings(),
    )


class Run:
    """One training run. ``log()`` only appends to memory; delivery happens on a background thread.

    Step rule: ``log(..., step=None)`` uses the step after the last one logged (0 for the first call).
    An explicit step may repeat the current one (several keys at one step) but may not go back:
    points at a step lower than the last are dropped and counted, with one warning.
    """

    def __init__(
        self,
        *,
        project: str,
        team: str,
        name: str | None,
        group: str | None,
        tags: Sequence[str] | Mapping[str, str],
        config: Mapping[str, Any] | None,
        run_id: str | None,
        settings: Settings,
        sender_factory: Callable[[Settings], RecordSender] = kafka_sender,
    ) -> None:
        for label, value in (("project", project), ("team", team)):
            if not isinstance(value, str) or not value.strip():
                raise UsageError(f"{label} must be a non-empty string, got {value!r}")
        if run_id is not None and not _RUN_ID.match(run_id):
            raise UsageError(f"run_id {run_id!r} must be 1-128 characters of letters, digits, '_', '.', '-'")
        self.settings = settings
        self.run_id = run_id or uuid.uuid4().hex
        self.info = RunInfo(
            run_id=self.run_id,
            team=team,
            project=project,
            user=_environment.username(),
            name=name or self.run_id[:8],
            group=group or "",
            host=_environment.hostname(),
            git_commit=_environment.git_commit(),
            tags=dict(tags) if isinstance(tags, Mapping) else {str(t): "" for t in tags},
            started_at_ms=_now_ms(),
        )
        self.params = {key: param_text(value) for key, value in flatten(config or {}, ".")}
        self._next_step = 0
        self._last_step = -1
        self._lock = threading.Lock()
        self._finished = False
        self._warned: set[str] = set()
        self.dropped_points = 0
        self.delivery: DeliveryReport | None = None
        self._transport = Transport(
            settings, self.run_id, team, project, sender_factory=sender_factory, heartbeat=self._heartbeat
        )
        self._transport.start()
        producer_id = self._transport.producer_id
        self._transport.publish(
            lambda seq: RunStart(producer_id=producer_id, seq=seq, run=self.info, params=self.params)
        )
        atexit.register(self._finish_at_exit)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def step(self) -> int:
        """The last step logged, -1 before the first ``log()``."""
        return self._last_step

    def log(self, metrics: Mapping[str, Any], *, step: int | None = None) -> None:
        """Record scalar metrics at ``step`` (see the class docstring for the step rule).

        Nested dicts become ``a/b`` keys. Values may be int, float, bool or anything with
        ``__float__`` (numpy scalars, 0-d tensors); NaN and +/-inf are kept as such. A value that is
        not a number is dropped with one warning per key. Never raises on bad metrics and never waits
        on the network.
        """
        if self._finished:
            self._warn_once("finished", "log() after finish() is ignored", run_id=self.run_id)
            return
        keys: list[str] = []
        values: list[float] = []
        if not isinstance(metrics, Mapping):
            self._warn_once(
                "not-mapping", "log() takes a mapping of metric names to numbers", got=type(metrics).__name__
            )
            return
        for key, value in flatten(metrics, "/"):
            number = self._as_number(key, value)
            if number is not None:
                keys.append(key)
                values.append(number)
        with self._lock:
            if step is None:
                step = self._next_step
            elif not isinstance(step, int) or isinstance(step, bool):
                self._warn_once("step-type", "step must be an int; points dropped", step=repr(step))
                self.dropped_points += len(keys)
                return
            if step < self._last_step:
                self._warn_once(
                    "step-back", "step went backwards; such points are dropped", step=step, last_step=self._last_step
                )
                self.dropped_points += len(keys)
                return
            self._last_step = step
            self._next_step = step + 1
        if keys:
            points = self._transport.points
            points.append(keys, step, _now_ms(), values)
            if len(points) >= self.settings.max_points_per_record:
                self._transport.nudge()  # a full record is waiting: send before the interval ends

    def finish(self, status: RunStatus | str = RunStatus.FINISHED, timeout: float | None = None) -> DeliveryReport:
        """End the run, send everything buffered (waiting at most ``timeout`` seconds) and report
        what could not be delivered. Calling it again returns the first report."""
        with self._lock:
            if self._finished:
                assert self.delivery is not None
                return self.delivery
            self._finished = True
        try:
            final = RunStatus(status)
        except ValueError:
            log.warning("unknown run status; recorded as failed", status=str(status), run_id=self.run_id)
            final = RunStatus.FAILED
        ended_at_ms = _now_ms()
        self._transport.publish(
            lambda seq: RunEnd(
                producer_id=self._transport.producer_id, seq=seq, run=self.info, status=final, ended_at_ms=ended_at_ms
            )
        )
        self.delivery = self._transport.close(self.settings.finish_timeout_s if timeout is None else timeout)
        if not self.delivery.complete:
            log.warning(
                "run finished with undelivered events",
                run_id=self.run_id,
                pending_records=self.delivery.pending_records,
                dropped_points=self.delivery.dropped_points,
            )
        atexit.unregister(self._finish_at_exit)
        return self.delivery

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.finish(RunStatus.FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish(RunStatus.KILLED)
        else:
            self.finish(RunStatus.FAILED)

    def __repr__(self) -> str:
        return f"Run(team={self.info.team!r}, project={self.info.project!r}, name={self.name!r}, id={self.run_id!r})"

    # -- internals -----------------------------------------------------------------------
    def _finish_at_exit(self) -> None:
        self.finish(RunStatus.FINISHED)

    def _heartbeat(self, seq: int) -> Heartbeat:
        return Heartbeat(
            producer_id=self._transport.producer_id,
            seq=seq,
            run=self.info,
            ts_ms=_now_ms(),
            step=self._last_step,
        )

    def _as_number(self, key: str, value: Any) -> float | None:
        if len(key) > MAX_KEY_LEN:
            self._warn_once(f"key-long:{key[:32]}", "metric key too long; dropped", key=key[:64], limit=MAX_KEY_LEN)
            return None
        if isinstance(value, float):
            return value
        if not isinstance(value, (str, bytes)) and value is not None:
            try:
                return float(value)
            except (TypeError, ValueError, OverflowError):
                pass
        self._warn_once(f"value:{key}", "metric value is not a number; dropped", key=key, value=repr(value)[:64])
        return None

    def _warn_once(self, kind: str, message: str, **fields: Any) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(message, **fields)


__all__ = ["RecordSender", "Run", "init"]
