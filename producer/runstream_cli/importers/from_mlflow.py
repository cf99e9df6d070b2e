"""MLflow runs, through MLflow's own client: a file store (``./mlruns``), a database (``sqlite:///mlflow.db``,
``postgresql://...``) or a tracking server (``http://...``).

Brought: each active run of the chosen experiments (default: every active experiment) with its
params, its own tags, each metric's whole history (step, value, time), status, start and end. The
experiment's name is the project. MLflow's system tags give the run's user
(``mlflow.user``), git commit (``mlflow.source.git.commit``) and group (``mlflow.parentRunId``: the
runs of a parent run are grouped by its id); the other ``mlflow.*`` tags are skipped and counted.
Artifacts, models, datasets and traces stay in MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from runstream._history import HistoricRun, ImportReport
from runstream_core.errors import MissingExtraError, UsageError
from runstream_core.events import RunStatus

_STATUS = {
    "RUNNING": RunStatus.RUNNING,
    "SCHEDULED": RunStatus.RUNNING,
    "FINISHED": RunStatus.FINISHED,
    "FAILED": RunStatus.FAILED,
    "KILLED": RunStatus.KILLED,
}
_SYSTEM_TAG = "mlflow."
_PAGE = 1000


def _client(tracking_uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ModuleNotFoundError as exc:
        raise MissingExtraError("importers", exc.name or "mlflow") from exc
    parsed = urlparse(tracking_uri)
    local = parsed.scheme in ("", "file", "sqlite")
    if local:
        path = Path(parsed.path if parsed.scheme else tracking_uri)
        if parsed.scheme == "sqlite":
            path = Path(parsed.path[1:] if parsed.path.startswith("//") else parsed.path)
        if not path.exists():  # MLflow would create an empty store there
            raise UsageError(f"--tracking-uri {tracking_uri}: {path} does not exist")
    if parsed.scheme in ("", "file"):
        # MLflow 3 keeps file stores readable only on request; reading one to move off it is that request.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=tracking_uri)


def read_mlflow(
    tracking_uri: str, experiments: list[str], report: ImportReport, project: str | None = None
) -> Iterator[HistoricRun]:
    """Every active run of ``experiments`` (names; empty: all active experiments)."""
    from mlflow.entities import ViewType

    client = _client(tracking_uri)
    chosen = []
    for name in experiments:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise UsageError(f"no MLflow experiment named {name!r} at {tracking_uri}")
        chosen.append(experiment)
    if not experiments:
        token = None
        while True:
            page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=_PAGE, page_token=token)
            chosen.extend(page)
            token = page.token
            if not token:
                break
    for experiment in chosen:
        token = None
        while True:
            runs = client.search_runs(
                [experiment.experiment_id],
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=_PAGE,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            for run in runs:
                yield _run(client, run, project or experiment.name, report)
            token = runs.token
            if not token:
                break


def _run(client: Any, run: Any, project: str, report: ImportReport) -> HistoricRun:
    info, data = run.info, run.data
    tags = {key: value for key, value in data.tags.items() if not key.startswith(_SYSTEM_TAG)}
    system = {key: value for key, value in data.tags.items() if key.startswith(_SYSTEM_TAG)}
    mapped = {"mlflow.runName", "mlflow.user", "mlflow.source.git.commit", "mlflow.parentRunId"}
    report.skip("MLflow system tags (mlflow.*) not mapped to a run field", len(set(system) - mapped))
    metrics = {
        key: [(m.step, m.timestamp, m.value) for m in client.get_metric_history(info.run_id, key)]
        for key in data.metrics
    }
    status = _STATUS.get(info.status, RunStatus.FINISHED)
    first_point = min((ts for points in metrics.values() for _, ts, _ in points), default=0)
    return HistoricRun(
        source="mlflow",
        source_key=(info.run_id,),
        run_id=info.run_id,
        project=project,
        started_at_ms=info.start_time if info.start_time is not None else first_point,
        ended_at_ms=info.end_time if status is not RunStatus.RUNNING else None,
        status=status,
        name=info.run_name or system.get("mlflow.runName", ""),
        group=system.get("mlflow.parentRunId", ""),
        user=info.user_id or system.get("mlflow.user", ""),
        git_commit=system.get("mlflow.source.git.commit", ""),
        tags=tags,
        params=dict(data.params),
        summary={},
        metrics=metrics,
    )
