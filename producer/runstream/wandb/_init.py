"""``wandb.init()``: W&B's arguments (and ``WANDB_*`` variables) mapped onto ``runstream.init()``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runstream import _runstate
from runstream.run import Run
from runstream.settings import Mode, Settings
from runstream.wandb import _state
from runstream.wandb._config import Config, config_items
from runstream.wandb._run import WandbRun, _one_line
from runstream_core.events import MAX_LABEL_LEN
from runstream_core.log import WarnOnce, get_logger

log = get_logger("runstream.wandb")
_warn_once = WarnOnce(log)

DEFAULT_PROJECT = "uncategorized"
"""W&B's project when none is given."""

_MODES: dict[str, Mode] = {
    "online": "online",
    "run": "online",
    "shared": "online",
    "offline": "offline",
    "dryrun": "offline",
    "disabled": "disabled",
}
_RESUME_VALUES = (None, True, False, "allow", "must", "never", "auto")
# Arguments W&B takes that only tune W&B's own process or features runstream does not have.
_IGNORED = frozenset({"anonymous", "force", "save_code", "allow_val_change", "magic", "monitor_gym"})
_UNSUPPORTED = frozenset({"resume_from", "fork_from", "tensorboard", "sync_tensorboard"})


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _mode(given: str | None, settings: Settings) -> Mode:
    wanted = given if given is not None else _env("WANDB_MODE")
    if wanted is None:
        return settings.mode
    if wanted not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}, got {wanted!r}")
    return _MODES[wanted]


def _resume(resume: bool | str | None, run_id: str | None, settings: Settings) -> bool:
    """W&B's ``resume`` as runstream's: continue ``run_id`` when asked to and (except ``"must"``) when this
    machine holds its state; ``"auto"`` without an id starts a new run."""
    if resume not in _RESUME_VALUES:
        raise ValueError(f"resume must be one of {_RESUME_VALUES}, got {resume!r}")
    if resume in (None, False, "never"):
        return False
    if run_id is None:
        if resume == "must":
            raise ValueError("resume='must' needs the id of the run to continue")
        _warn_once("resume-auto", "resume without an id: runstream starts a new run (give id= to continue one)")
        return False
    return resume == "must" or _runstate.load(settings.runs_dir / run_id) is not None


def _tags(tags: Sequence[str] | None, job_type: str | None, notes: str | None) -> dict[str, str]:
    """W&B's tags are labels; ``job_type`` and ``notes`` are stored as the tags of those names."""
    pairs = {str(tag): "" for tag in (tags or ())}
    if job_type:
        pairs["job_type"] = _one_line(job_type, MAX_LABEL_LEN)
    if notes:
        pairs["notes"] = _one_line(notes, MAX_LABEL_LEN)
    return pairs


def _reinit(reinit: bool | str | None) -> str | None:
    """What to do with a run still active: W&B's ``reinit`` (``False``: return it, ``True``: finish it)."""
    if reinit is None or reinit == "default" or reinit is True:
        return "finish_previous"
    if reinit is False:
        return "return_previous"
    if reinit in ("finish_previous", "return_previous", "create_new"):
        return reinit
    raise ValueError(
        f"reinit must be a bool or 'default', 'return_previous', 'finish_previous', 'create_new'; got {reinit!r}"
    )


def init(
    entity: str | None = None,
    project: str | None = None,
    dir: str | os.PathLike[str] | None = None,  # W&B's name
    id: str | None = None,  # W&B's name
    name: str | None = None,
    notes: str | None = None,
    tags: Sequence[str] | None = None,
    config: Any = None,
    config_exclude_keys: Sequence[str] | None = None,
    config_include_keys: Sequence[str] | None = None,
    group: str | None = None,
    job_type: str | None = None,
    mode: str | None = None,
    reinit: bool | str | None = None,
    resume: bool | str | None = None,
    settings: Any = None,
    **kwargs: Any,
) -> WandbRun:
    """Start a run, as ``wandb.init`` does, and make it ``wandb.run``.

    ``entity`` is the team (default: ``WANDB_ENTITY``, then ``RUNSTREAM_TEAM``); ``project`` defaults to
    ``WANDB_PROJECT``, then ``"uncategorized"``; ``name``, ``group``, ``id``, ``tags``, ``job_type``,
    ``notes``, ``mode`` and ``dir`` to their ``WANDB_*`` variables. ``settings`` may be a
    ``runstream.Settings`` (Kafka, spool...); a W&B settings object is ignored. ``dir`` holds the spool
    (``<dir>/runstream``). Arguments for features runstream lacks warn once and are ignored.
    """
    for key in sorted(set(kwargs) & _UNSUPPORTED):
        _warn_once(("init-arg", key), f"wandb.init({key}=...) is not supported yet; ignored")
    unknown = sorted(set(kwargs) - _UNSUPPORTED - _IGNORED)
    if unknown:
        _warn_once(
            ("init-args", *unknown), "wandb.init() arguments unknown to runstream.wandb are ignored", args=unknown
        )
    action = _reinit(reinit)
    previous = _state.current()
    if previous is not None:
        if action == "return_previous":
            return previous
        if action == "finish_previous":
            previous.finish()
    base = settings if isinstance(settings, Settings) else Settings()
    directory = dir if dir is not None else _env("WANDB_DIR")
    if directory is not None:
        base = base.model_copy(update={"runs_dir": Path(directory) / "runstream"})
    run_id = id if id is not None else _env("WANDB_RUN_ID")
    if resume is None and _env("WANDB_RESUME") is not None:
        resume = _env("WANDB_RESUME")
    env_tags = _env("WANDB_TAGS")
    values = {**config_items(_state.preinit_config.as_dict()), **config_items(config)}
    if config_include_keys is not None:
        values = {k: v for k, v in values.items() if k in set(config_include_keys)}
    if config_exclude_keys is not None:
        values = {k: v for k, v in values.items() if k not in set(config_exclude_keys)}
    team = entity or _env("WANDB_ENTITY") or base.team
    job_type = job_type or _env("WANDB_JOB_TYPE")
    notes = notes or _env("WANDB_NOTES")
    label_tags = tuple(tags) if tags is not None else tuple(t for t in (env_tags or "").split(",") if t)
    run = Run(
        project=project or _env("WANDB_PROJECT") or DEFAULT_PROJECT,
        team=team,
        name=name or _env("WANDB_NAME"),
        group=group or _env("WANDB_RUN_GROUP"),
        tags=_tags(label_tags, job_type, notes),
        config=values,
        run_id=run_id,
        resume=_resume(resume, run_id, base),
        mode=_mode(mode, base),
        settings=base,
    )
    wandb_config = Config()
    wandb_config._set(values, True)
    wandb_run = WandbRun(
        run, entity=run.info.team, job_type=job_type, notes=notes, tags=label_tags, config=wandb_config
    )
    _state.preinit_config.clear()
    _state.runs.append(wandb_run)
    return wandb_run


def require_run(what: str) -> WandbRun:
    run = _state.current()
    if run is None:
        raise RuntimeError(f"You must call wandb.init() before {what}()")
    return run
