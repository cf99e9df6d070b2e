"""``runstream.init()`` and the ``Run`` a training job logs to."""

from __future__ import annotations

import atexit
import dataclasses
import datetime
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict, Unpack

import msgspec

from runstream import _environment, _runstate, _signals
from runstream._distributed import MAX_WORLD_SIZE, Distributed, detect, shared_run_id
from runstream._entries import SummaryValue, check_params, check_summary, check_tags
from runstream._flatten import flatten, param_text
from runstream._kafka import RecordSender, kafka_sender
from runstream._private import private_dir
from runstream._transport import DeliveryReport, Identity, Transport
from runstream.settings import Mode, Settings
from runstream_core.errors import UsageError
from runstream_core.events import (
    MAX_EPOCH_MS,
    MAX_NAME_LEN,
    MAX_STEP,
    RUN_ID_PATTERN,
    AlertLevel,
    HardwareBatch,
    Heartbeat,
    RunAlert,
    RunEnd,
    RunInfo,
    RunStart,
    RunStatus,
    RunUpdate,
    control_character,
)
from runstream_core.log import WarnOnce, get_logger
from runstream_core.team_names import team_name

log = get_logger("runstream.run")

_RUN_ID = re.compile(RUN_ID_PATTERN)
# Values log() hands to the sender thread as they are; anything else is converted in the caller.
_PLAIN = frozenset((float, int))


def _now_ms() -> int:
    """Now, in the range a lifecycle event's time may take (a clock set before 1970 or after 2299 is clamped)."""
    return min(max(time.time_ns() // 1_000_000, 0), MAX_EPOCH_MS)


class RunOptions(TypedDict, total=False):
    """What ``init()`` takes after ``project`` and ``team``, all keyword-only and optional; the
    defaults are ``Run``'s, the one place they are written."""

    name: str | None
    """Shown in dashboards; default: the first 8 characters of the run id (or the resumed run's name)."""
    group: str | None
    """Groups runs, e.g. a sweep."""
    tags: Sequence[str] | Mapping[str, str]
    """Labels (``["baseline"]``) or key/value pairs (``{"dataset": "imagenet"}``)."""
    config: Mapping[str, Any] | None
    """Hyperparameters, possibly nested; flattened to ``a.b`` keys and stored as the run's params."""
    run_id: str | None
    """The run's id; default: ``RUNSTREAM_RUN_ID``, the launcher's shared id, or a new one."""
    resume: bool
    """Continue the run ``run_id`` (steps go on from the last one logged on this machine)."""
    mode: Mode | None
    """``"online"``, ``"offline"`` (spool only; ``runstream sync`` later) or ``"disabled"`` (every
    call does nothing); default: ``settings.mode``."""
    settings: Settings | None
    """Default: ``Settings()``, read from the environment."""
    distributed: Distributed | None
    """Rank and world size; default: read from the launcher's environment (torchrun, Slurm, MPI)."""


def init(project: str, team: str, **options: Unpack[RunOptions]) -> Run:
    """Start a run and return it; use it as a context manager or call ``finish()``.

    ``init(project, team, *, name=None, group=None, tags=(), config=None, run_id=None, resume=False,
    mode=None, settings=None, distributed=None)``: the options are described in ``RunOptions``.
    In a distributed job every rank logs to one run; rank 0 owns its lifecycle (start, params, tags,
    summary, end). ``team`` is normalised (stripped, lowercased, spaces and dashes to underscores, with
    one warning when that changed it) and must then be a team name (``runstream_core.team_names``).
    Raises ``UsageError`` for bad arguments; nothing else raises.
    """
    run = Run(project=project, team=team, **options)
    _set_active(run)
    return run


class Summary(MutableMapping[str, SummaryValue]):
    """A run's summary values (numbers or text), e.g. ``run.summary["best_acc"] = 0.93``.

    Setting a key sends it; use ``update()`` to send several at once.
    """

    def __init__(self, send: Callable[[dict[Any, Any]], dict[str, SummaryValue]]) -> None:
        self._values: dict[str, SummaryValue] = {}
        self._send = send
        """Checks and sends entries; returns those it took."""

    def __getitem__(self, key: str) -> SummaryValue:
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        del self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        self._values.update(self._send(dict(other, **kwargs)))

    def __repr__(self) -> str:
        return f"Summary({self._values!r})"


def check_run_id(run_id: Any) -> str:
    """``run_id`` if it fits ``RUN_ID_PATTERN`` as a whole, else ``UsageError``: it names the run's directory
    under ``runs_dir``, so ``.``, ``..``, a slash or a line break would put the run's files elsewhere."""
    if not isinstance(run_id, str):
        raise UsageError(f"run_id must be a string, got {run_id!r}")
    if not _RUN_ID.fullmatch(run_id):
        raise UsageError(
            f"run_id {run_id!r} must be 1-128 characters of letters, digits, '_', '.' and '-', and neither '.' nor '..'"
        )
    return run_id


def _check_name(label: str, value: Any) -> None:
    """A name given to ``init()`` must fit the event schema, or every record of the run would be refused."""
    if not isinstance(value, str):
        raise UsageError(f"{label} must be a string, got {value!r}")
    if len(value) > MAX_NAME_LEN:
        raise UsageError(f"{label} is {len(value)} characters long; the limit is {MAX_NAME_LEN}")
    char = control_character(value)
    if char is not None:
        raise UsageError(f"{label} {value!r} holds control character U+{ord(char):04X}; names cannot hold any")


def _check_distributed(distributed: Distributed) -> Distributed:
    if not 0 <= distributed.rank < distributed.world_size <= MAX_WORLD_SIZE:
        raise UsageError(f"distributed: need 0 <= rank < world_size <= {MAX_WORLD_SIZE:,}, got {distributed}")
    return distributed


def _tag_pairs(tags: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {str(t): "" for t in tags}


def _init_tags(tags: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """The tags given to ``init()`` as a mapping; one the event schema would refuse is a ``UsageError``."""
    pairs = _tag_pairs(tags)
    for key, value in pairs.items():
        if control_character(key + value) is not None:
            raise UsageError(f"tag {key!r}: {value!r} holds a control character; tags cannot hold any")
    problems: list[str] = []
    check_tags(pairs.items(), {}, lambda _kind, message, **fields: problems.append(f"{message} ({fields['key']})"))
    if problems:
        raise UsageError(f"tags: {problems[0]}")
    return pairs


class Run:
    """One training run (or, in a distributed job, this process's part of it).

    ``log()`` only appends to memory; a background thread writes the spool and talks to Kafka.

    Step rule: ``log(..., step=None)`` uses the step after the last one logged (0 for the first call).
    An explicit step may repeat the current one (several keys at one step) but may not go back:
    points at a step lower than the last are rejected (counted as ``rejected_points``), with one warning.
    Steps run from 0 to ``MAX_STEP`` (2**63 - 1); points at any other step are rejected alike.
    ``log()`` is meant to be called from one thread; calls from several threads are safe but then
    share one step counter.
    """

    def __init__(
        self,
        *,
        project: str,
        team: str,
        name: str | None = None,
        group: str | None = None,
        tags: Sequence[str] | Mapping[str, str] = (),
        config: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        resume: bool = False,
        mode: Mode | None = None,
        settings: Settings | None = None,
        distributed: Distributed | None = None,
        sender_factory: Callable[[Settings], RecordSender] = kafka_sender,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(project, str) or not project.strip():
            raise UsageError(f"project must be a non-empty string, got {project!r}")
        for label, given in (("project", project), ("name", name), ("group", group)):
            if given is not None:
                _check_name(label, given)
        self._warn_once = WarnOnce(log)
        team = self._team(team)
        tag_map = _init_tags(tags)
        env = os.environ if environ is None else environ
        self.settings = settings = settings or Settings()
        self.mode: Mode = mode or settings.mode
        if self.mode not in ("online", "offline", "disabled"):
            raise UsageError(f"mode must be 'online', 'offline' or 'disabled', got {self.mode!r}")
        self.distributed = _check_distributed(distributed or detect(env))
        self.run_id = self._choose_run_id(run_id, resume, team, project, env)
        self.owns_lifecycle = self.distributed.rank == 0
        self.dir = settings.runs_dir / self.run_id
        state = _runstate.load(self.dir) if resume else None
        if resume and state is None:
            log.warning("resume: no local state for this run; steps start at 0", run_id=self.run_id)
        self.info = RunInfo(
            run_id=self.run_id,
            team=team,
            project=project,
            user=_environment.username(),
            name=name or (state.name if state else self.run_id[:8]),
            group=group or (state.group if state else ""),
            host=_environment.hostname(),
            git_commit=_environment.git_commit(),
            tags=tag_map,
            started_at_ms=state.started_at_ms if state else _now_ms(),
            world_size=self.distributed.world_size,
        )
        self._rejected_entries = 0
        self._alerted: dict[str, float] = {}
        """Per alert title, when it was last sent (monotonic), for ``wait_duration``."""
        self.params = self._params(config or {}, {})
        self.summary = Summary(self._send_summary)
        self._next_step = state.last_step + 1 if state else 0
        self._last_step = state.last_step if state else -1
        self._finish_lock = threading.Lock()
        self._finished = self.mode == "disabled"
        self._in_forked_child = False
        self._has_dir = False
        self.delivery: DeliveryReport | None = None
        self._transport: Transport | None = None
        self._sampler: Any = None
        if self.mode == "disabled":
            return
        self._transport = Transport(
            settings,
            Identity(self.run_id, team, project, self.distributed.rank),
            spool_dir=self._open_dir(),
            online=self.mode == "online",
            sender_factory=sender_factory,
            heartbeat=self._heartbeat,
        )
        self._offer_points = self._transport.offer_points
        if self.owns_lifecycle:
            self._save_state(RunStatus.RUNNING)
            resumed_at = _now_ms() if resume else 0
            self._transport.publish(RunStart(run=self.info, params=dict(self.params), resumed_at_ms=resumed_at))
        self._transport.start()
        self._start_sampler()
        _runs.add(self)
        atexit.register(self._finish_at_exit)
        _signals.install_excepthook()
        if settings.handle_sigterm:
            _signals.on_sigterm(self._on_sigterm)

    # -- identity ------------------------------------------------------------------------
    def _team(self, given: str) -> str:
        """The team's name by the one rule (``runstream_core.team_names``); a change is warned about once."""
        team = team_name(given)
        if team != given:
            self._warn_once(
                "team-normalised",
                "team name normalised: rows are stored and filtered under the normalised name",
                given=given,
                team=team,
            )
        return team

    def _choose_run_id(self, run_id: str | None, resume: bool, team: str, project: str, env: Mapping[str, str]) -> str:
        """The run's id: ``run_id``, else ``RUNSTREAM_RUN_ID`` (empty counts as unset), else the launcher's
        shared id, else a new one. Every id but a new one goes through ``check_run_id``."""
        chosen = run_id if run_id is not None else (self.settings.run_id or None)
        if chosen is None and self.distributed.is_distributed:
            chosen = shared_run_id(env, team, project)
            if chosen is None:
                log.warning(
                    "distributed job without a shared run id: each rank becomes its own run; "
                    "set RUNSTREAM_RUN_ID or pass run_id",
                    rank=self.distributed.rank,
                )
        if chosen is None:
            if resume:
                raise UsageError("resume=True needs the run_id of the run to continue (or RUNSTREAM_RUN_ID)")
            return uuid.uuid4().hex
        return check_run_id(chosen)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def id(self) -> str:
        return self.run_id

    @property
    def step(self) -> int:
        """The last step logged, -1 before the first ``log()``."""
        return self._last_step

    @property
    def spool_path(self) -> Path | None:
        """This process's spool directory (None when disabled)."""
        return self._transport.spool_path if self._transport is not None else None

    # -- logging -------------------------------------------------------------------------
    def log(self, metrics: Mapping[str, Any], *, step: int | None = None) -> None:
        """Record scalar metrics at ``step`` (see the class docstring for the step rule).

        Nested dicts become ``a/b`` keys. Values may be int, float, bool or anything with
        ``__float__`` (numpy scalars, 0-d tensors); NaN and +/-inf are kept as such. A value that is
        not a number, or a key that is not a string, is rejected with one warning per key. Never
        raises on bad input and never waits on the network. Points rejected, and points refused
        because the buffer was full, are counted in the report ``finish()`` returns
        (``rejected_points``, ``overflow_points``).
        """
        if self._finished:
            self._ignored("log()")
            return
        try:
            values = tuple(metrics.values())
        except (AttributeError, TypeError):
            self._warn_once(
                "not-mapping", "log() takes a mapping of metric names to numbers", got=type(metrics).__name__
            )
            return
        if _PLAIN.issuperset(map(type, values)):
            keys = tuple(metrics)
        else:
            keys, values = self._convert(metrics)
        if step is None:
            step = self._next_step
        elif type(step) is not int:
            if not hasattr(step, "__index__") or isinstance(step, bool):
                self._warn_once("step-type", "step must be an int; points rejected", step=repr(step)[:64])
                self._reject_points(len(keys))
                return
            step = step.__index__()  # numpy integers
        if not self._last_step <= step <= MAX_STEP or step < 0:
            self._refuse_step(step, len(keys))
            return
        self._last_step = step
        self._next_step = step + 1
        self._offer_points(step, keys, values)

    def log_at(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Record metrics at ``step`` under MLflow's rule rather than the run's step rule: each key's
        steps are its own, in any order, and a step may be logged again. ``run.step`` becomes the
        highest step seen; a later ``log()`` without a step goes on from there. Values and keys are
        checked as in ``log()``; steps outside 0 to ``MAX_STEP`` are rejected."""
        if self._finished:
            self._ignored("log_at()")
            return
        keys, values = self._convert(metrics)
        if isinstance(step, bool) or not hasattr(step, "__index__") or not 0 <= step.__index__() <= MAX_STEP:
            self._warn_once("step-range", f"step must be 0 to {MAX_STEP}; points rejected", step=repr(step)[:64])
            self._reject_points(len(keys))
            return
        step = step.__index__()
        if step > self._last_step:
            self._last_step = step
            self._next_step = step + 1
        self._offer_points(step, keys, values)

    def _refuse_step(self, step: int, n: int) -> None:
        if 0 <= step <= MAX_STEP:
            self._warn_once(
                "step-back", "step went backwards; such points are rejected", step=step, last_step=self._last_step
            )
        else:
            self._warn_once("step-range", f"step must be 0 to {MAX_STEP}; points rejected", step=step)
        self._reject_points(n)

    def _reject_points(self, n: int) -> None:
        assert self._transport is not None
        self._transport.reject_points(n)

    def _convert(self, metrics: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        """Slow path of ``log()``: flatten nested dicts and check the points now, in the caller
        (a tensor or array could change after ``log()`` returns)."""
        assert self._transport is not None
        pairs = tuple(flatten(metrics, "/", keep_bad_keys=True))
        return self._transport.check_points([k for k, _ in pairs], [v for _, v in pairs])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Add or change params (nested dicts become ``a.b`` keys; values stored as text)."""
        if not self._lifecycle_call("log_params"):
            return
        if not isinstance(params, Mapping):
            self._warn_once("params-type", "log_params() takes a mapping", got=type(params).__name__)
            return
        new = self._params(params, self.params)
        if new:
            self.params.update(new)
            self._publish_update(params=new)

    def set_tags(self, tags: Sequence[str] | Mapping[str, str]) -> None:
        """Add tags: labels (``["best"]``) or key/value pairs (``{"stage": "finetune"}``)."""
        if not self._lifecycle_call("set_tags"):
            return
        new, refused = check_tags(_tag_pairs(tags).items(), self.info.tags, self._warn_once)
        self._rejected_entries += refused
        if new:
            self.info = msgspec.structs.replace(self.info, tags={**self.info.tags, **new})
            self._publish_update()

    def rename(self, name: str) -> None:
        """Change the run's name (dashboards and SQL show the newest). A name the event schema would refuse
        is a ``UsageError``, as in ``init()``."""
        _check_name("name", name)
        if not name or not self._lifecycle_call("rename"):
            return
        if name != self.info.name:
            self.info = msgspec.structs.replace(self.info, name=name)
            self._publish_update()

    def alert(
        self,
        title: str,
        text: str = "",
        level: AlertLevel | str = AlertLevel.INFO,
        wait_duration: float | datetime.timedelta = 60.0,
    ) -> bool:
        """Raise an alert (W&B's ``run.alert``): stored in ``alerts`` and sent to the webhooks of the
        team's ``run_alert`` rules. An alert of the same title within ``wait_duration`` (seconds or a
        timedelta) of the last one sent is dropped here. Returns whether it was sent; bad arguments
        are warned about once and nothing is sent (an alert must never stop training)."""
        if self._finished or self._transport is None:
            self._ignored("alert")
            return False
        try:
            wait_s = (
                wait_duration.total_seconds() if isinstance(wait_duration, datetime.timedelta) else float(wait_duration)
            )
            event = RunAlert(
                run=self.info,
                ts_ms=_now_ms(),
                title=title,
                text=text,
                level=AlertLevel(level.upper() if isinstance(level, str) else level),
            )
            event = msgspec.convert(msgspec.to_builtins(event), RunAlert)  # the schema's bounds, here
        except (ValueError, TypeError, msgspec.ValidationError) as exc:
            self._warn_once("alert-invalid", "alert() arguments refused; nothing sent", error=str(exc)[:300])
            return False
        now = time.monotonic()
        with self._finish_lock:
            last = self._alerted.get(title)
            if last is not None and now - last < wait_s:
                return False
            self._alerted[title] = now
        self._transport.publish(event)
        return True

    def _params(self, config: Mapping[str, Any], held: Mapping[str, str]) -> dict[str, str]:
        """Flattened params as text, those the event schema would refuse left out (counted, warned once per kind)."""
        entries = ((key, param_text(value)) for key, value in flatten(config, "."))
        params, refused = check_params(entries, held, self._warn_once)
        self._rejected_entries += refused
        return params

    def _send_summary(self, values: dict[Any, Any]) -> dict[str, SummaryValue]:
        if not self._lifecycle_call("summary"):
            return {}
        kept, refused = check_summary(values.items(), self.summary, self._warn_once)
        self._rejected_entries += refused
        if kept:
            self._publish_update(summary=kept)
        return kept

    def _ignored(self, what: str) -> None:
        """Warn once that ``what`` does nothing: the run is finished, or this process is a fork of its own."""
        if self._in_forked_child:
            self._warn_once(
                "forked",
                "this process is a fork of the one that started the run (e.g. a DataLoader worker): the run is "
                "off here and its calls do nothing; call runstream.init() in this process for a run of its own",
                run_id=self.run_id,
                pid=os.getpid(),
            )
        elif self.mode != "disabled":
            self._warn_once(f"{what}-finished", f"{what} after finish() is ignored", run_id=self.run_id)

    def _lifecycle_call(self, what: str) -> bool:
        if self._finished:
            self._ignored(what)
            return False
        if not self.owns_lifecycle:
            self._warn_once(
                f"{what}-rank", f"{what} is ignored on rank {self.distributed.rank}: rank 0 owns the run's record"
            )
            return False
        return True

    def _publish_update(
        self, params: dict[str, str] | None = None, summary: dict[str, SummaryValue] | None = None
    ) -> None:
        assert self._transport is not None
        self._transport.publish(RunUpdate(run=self.info, ts_ms=_now_ms(), params=params or {}, summary=summary or {}))

    # -- ending --------------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything logged so far is in the spool and, online, delivered to Kafka."""
        if self._transport is None or self._finished:
            return self._transport is None or (self.delivery is not None and self.delivery.complete)
        return self._transport.flush(timeout)

    def finish(self, status: RunStatus | str = RunStatus.FINISHED, timeout: float | None = None) -> DeliveryReport:
        """End the run, send everything buffered (waiting at most ``timeout`` seconds) and report
        what is still undelivered (it stays in the spool for ``runstream sync``). Calling it again
        returns the first report."""
        with _signals.Busy(), self._finish_lock:
            if self.delivery is not None:
                return self.delivery
            self._finished = True
            if self._transport is None:  # disabled
                self.delivery = DeliveryReport(pending_records=0, overflow_points=0, rejected_points=0, failed_sends=0)
                return self.delivery
            try:
                final = RunStatus(status)
            except ValueError:
                log.warning("unknown run status; recorded as failed", status=str(status), run_id=self.run_id)
                final = RunStatus.FAILED
            self._stop_sampler()
            if self.owns_lifecycle:
                self._transport.publish(
                    RunEnd(run=self.info, status=final, ended_at_ms=_now_ms(), step=self._last_step)
                )
                self._save_state(final)
            report = self._transport.close(self.settings.finish_timeout_s if timeout is None else timeout)
            self.delivery = report = dataclasses.replace(report, rejected_entries=self._rejected_entries)
            if self.mode == "offline":
                log.info("offline run saved; send it with `runstream sync`", run_id=self.run_id, path=str(self.dir))
            elif report.pending_records:
                log.warning(
                    "run finished with undelivered records; send them with `runstream sync`",
                    run_id=self.run_id,
                    pending_records=report.pending_records,
                    spool=report.spool_path,
                )
            if report.overflow_points:
                log.warning("points were refused: the buffer was full", overflow_points=report.overflow_points)
            if report.dropped_records:
                log.warning(
                    "records were lost: the spool could not be written and Kafka did not take them in time",
                    run_id=self.run_id,
                    dropped_records=report.dropped_records,
                    spool_errors=report.spool_errors,
                )
            atexit.unregister(self._finish_at_exit)
            _signals.forget(self._on_sigterm)
            _clear_active(self)
            return report

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
    def _after_fork_in_child(self) -> None:
        """This process was forked from the run's (a DataLoader worker, say): the run is the parent's. Here it
        is off: its calls do nothing (one warning), no thread sends for it, and neither the child's SIGTERM nor
        its exit ends it. The parent's run is unaffected."""
        self._in_forked_child = True
        self._finished = True
        self._warn_once = WarnOnce(log)  # its lock may have been held by a thread the fork left behind
        self._finish_lock = threading.Lock()
        self._sampler = None
        if self.delivery is None:
            self.delivery = DeliveryReport(pending_records=0, overflow_points=0, rejected_points=0, failed_sends=0)
        atexit.unregister(self._finish_at_exit)

    def _finish_at_exit(self) -> None:
        self.finish(RunStatus.FAILED if _signals.uncaught_exception_seen() else RunStatus.FINISHED)

    def _on_sigterm(self) -> None:
        log.warning("SIGTERM: marking the run killed and flushing", run_id=self.run_id)
        self.finish(RunStatus.KILLED)

    def _heartbeat(self) -> Heartbeat:
        if self.owns_lifecycle:
            self._save_state(RunStatus.RUNNING)
        return Heartbeat(rank=self.distributed.rank, run=self.info, ts_ms=_now_ms(), step=self._last_step)

    def _open_dir(self) -> Path | None:
        """Create (or tighten) the runs directory, the run's and its spool's, each 0700; returns the spool's.

        None, with one warning, when they cannot be created: the run then keeps its records in memory only.
        """
        spool = self.dir / "spool"
        try:
            private = [private_dir(path) for path in (self.settings.runs_dir, self.dir, spool)]
        except OSError as exc:
            self._warn_once(
                "run-dir",
                "cannot create the run's directory: records are kept in memory only, no state file is written",
                error=repr(exc),
                path=str(self.dir),
            )
            return None
        self._has_dir = True
        if not all(private):
            self._warn_once(
                "run-dir-mode",
                "the run's directory belongs to another user and could not be made private",
                path=str(self.dir),
            )
        return spool

    def _save_state(self, status: RunStatus) -> None:
        if not self._has_dir:
            return
        info = self.info
        try:
            _runstate.save(
                self.dir,
                _runstate.RunState(
                    run_id=info.run_id,
                    team=info.team,
                    project=info.project,
                    name=info.name,
                    group=info.group,
                    started_at_ms=info.started_at_ms,
                    last_step=self._last_step,
                    status=str(status),
                ),
            )
        except OSError as exc:
            self._warn_once("state", "cannot write the run's state file", error=repr(exc), path=str(self.dir))

    def _start_sampler(self) -> None:
        interval = self.settings.hardware_interval_s
        if interval <= 0:
            return
        try:
            from runstream.hardware import HardwareSampler

            self._sampler = HardwareSampler(
                interval,
                self._emit_hardware,
                system=self.distributed.local_rank == 0,  # one node-wide reader per node
                process=True,
                all_gpus=self.settings.hardware_all_gpus,
            )
            self._sampler.start()
        except Exception as exc:
            self._warn_once("sampler", "hardware sampler not started", error=repr(exc))
            self._sampler = None

    def _stop_sampler(self) -> None:
        if self._sampler is not None:
            try:
                self._sampler.stop()
            except Exception as exc:
                self._warn_once("sampler-stop", "hardware sampler did not stop cleanly", error=repr(exc))

    def _emit_hardware(self, sample: Any) -> None:
        if self._transport is None or not sample.keys:
            return
        if not 0 <= sample.ts_ms <= MAX_EPOCH_MS:
            self._warn_once("hardware-clock", "the clock is out of range; hardware sample dropped", ts_ms=sample.ts_ms)
            return
        info, rank = self.info, self.distributed.rank
        n = len(sample.keys)
        self._transport.publish(
            HardwareBatch(
                rank=rank,
                run_id=info.run_id,
                team=info.team,
                project=info.project,
                host=info.host,
                user=info.user,
                interval_ms=sample.interval_ms,
                ts_ms=[sample.ts_ms] * n,
                keys=list(sample.keys),
                devices=list(sample.devices),
                values=list(sample.values),
            )
        )


# -- forked children: every run of the parent is off in the child --------------------------------
_runs: weakref.WeakSet[Run] = weakref.WeakSet()
"""Runs with a transport (not disabled), finished or not."""


def _after_fork_in_child() -> None:
    for run in list(_runs):
        run._after_fork_in_child()
    _signals.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)

# -- the active run, for the module-level shortcuts -------------------------------------------
_active: list[Run] = []


def _set_active(run: Run) -> None:
    _active.append(run)


def _clear_active(run: Run) -> None:
    if run in _active:
        _active.remove(run)


def active_run() -> Run | None:
    """The most recent run started with ``init()`` and not yet finished."""
    return _active[-1] if _active else None


def _require_active(what: str) -> Run:
    run = active_run()
    if run is None:
        raise UsageError(f"runstream.{what}() needs a run: call runstream.init() first")
    return run


def log_metrics(metrics: Mapping[str, Any], *, step: int | None = None) -> None:
    """``log()`` on the active run."""
    _require_active("log").log(metrics, step=step)


def log_params(params: Mapping[str, Any]) -> None:
    """``log_params()`` on the active run."""
    _require_active("log_params").log_params(params)


def set_tags(tags: Sequence[str] | Mapping[str, str]) -> None:
    """``set_tags()`` on the active run."""
    _require_active("set_tags").set_tags(tags)


def alert(
    title: str,
    text: str = "",
    level: AlertLevel | str = AlertLevel.INFO,
    wait_duration: float | datetime.timedelta = 60.0,
) -> bool:
    """``Run.alert`` on the active run."""
    return _require_active("alert").alert(title, text, level, wait_duration)


def finish(status: RunStatus | str = RunStatus.FINISHED, timeout: float | None = None) -> DeliveryReport:
    """``finish()`` on the active run."""
    return _require_active("finish").finish(status, timeout)


__all__ = ["RecordSender", "Run", "RunOptions", "Summary", "active_run", "init"]
