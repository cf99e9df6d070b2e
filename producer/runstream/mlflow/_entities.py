"""MLflow's entities (``Run``, ``Experiment``) from runstream's rows and from a run this process writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.entities import Experiment, LifecycleStage, Metric, Param, Run, RunData, RunInfo, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_USER

from runstream.run import Run as RunstreamRun

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
"""MLflow logs to experiment "0", named "Default", until ``set_experiment``: its runs go to project "Default"."""

STATUS = {"running": "RUNNING", "finished": "FINISHED", "failed": "FAILED", "crashed": "FAILED", "killed": "KILLED"}


def experiment_id(project: str) -> str:
    """An experiment's id is its project's name (the "Default" project is experiment "0")."""
    return DEFAULT_EXPERIMENT_ID if project == DEFAULT_EXPERIMENT_NAME else project


def project_of(experiment: str) -> str:
    return DEFAULT_EXPERIMENT_NAME if experiment == DEFAULT_EXPERIMENT_ID else experiment


def experiment(
    project: str, artifact_root: Path, created_ms: int | None = None, updated_ms: int | None = None
) -> Experiment:
    return Experiment(
        experiment_id=experiment_id(project),
        name=project,
        artifact_location=(artifact_root / experiment_id(project)).as_uri(),
        lifecycle_stage=LifecycleStage.ACTIVE,
        tags=[],
        creation_time=created_ms,
        last_update_time=updated_ms,
    )


def _tags(tags: Mapping[str, str], name: str, user: str) -> list[RunTag]:
    """The run's tags, with MLflow's own ``mlflow.runName`` and ``mlflow.user`` when they were not logged."""
    merged = {MLFLOW_RUN_NAME: name, MLFLOW_USER: user, **tags}
    return [RunTag(k, v) for k, v in merged.items()]


def run_from_row(row: Mapping[str, Any], artifact_root: Path) -> Run:
    """A row of ``_search.RUNS_SQL`` as MLflow's ``Run``."""
    run_id = row["run_id"]
    info = RunInfo(
        run_id=run_id,
        experiment_id=experiment_id(row["project"]),
        user_id=row["user"],
        status=row["status"],
        start_time=row["start_ms"],
        end_time=row["end_ms"],
        lifecycle_stage=LifecycleStage.ACTIVE,
        artifact_uri=(artifact_root / run_id).as_uri(),
        run_name=row["name"],
    )
    metrics = [
        Metric(key, value, row["metric_ms"][key], row["metric_steps"][key]) for key, value in row["metrics"].items()
    ]
    params = [Param(k, v) for k, v in row["params"].items()]
    data = RunData(metrics=metrics, params=params, tags=_tags(row["tags"] or {}, row["name"], row["user"]))
    return Run(info, data)


@dataclass
class LiveRun:
    """A run this process writes: its runstream ``Run`` and what MLflow's ``get_run`` shows of it."""

    run: RunstreamRun
    experiment_id: str
    artifact_uri: str
    metrics: dict[str, Metric] = field(default_factory=dict)
    status: str = "RUNNING"
    end_time: int | None = None

    def observe(self, metric: Metric) -> None:
        """MLflow's latest value: the highest (step, timestamp, value)."""
        held = self.metrics.get(metric.key)
        if held is None or (metric.step, metric.timestamp, metric.value) >= (held.step, held.timestamp, held.value):
            self.metrics[metric.key] = metric

    def info(self) -> RunInfo:
        run = self.run
        return RunInfo(
            run_id=run.run_id,
            experiment_id=self.experiment_id,
            user_id=run.info.user,
            status=self.status,
            start_time=run.info.started_at_ms,
            end_time=self.end_time,
            lifecycle_stage=LifecycleStage.ACTIVE,
            artifact_uri=self.artifact_uri,
            run_name=run.name,
        )

    def entity(self) -> Run:
        run = self.run
        params = [Param(k, v) for k, v in run.params.items()]
        data = RunData(
            metrics=list(self.metrics.values()), params=params, tags=_tags(run.info.tags, run.name, run.info.user)
        )
        return Run(self.info(), data)
