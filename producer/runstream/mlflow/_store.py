"""``RunstreamStore``: MLflow's tracking store on runstream.

Writes go through runstream's SDK (Kafka, the spool, exactly once), so a run logged through MLflow is
in the dashboards, SQL and ``runstream.query`` like any other; reads (``search_runs``, ``get_run``,
``get_metric_history``, ``search_experiments``) come from ClickHouse. Experiments are projects.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlflow.entities import (
    Experiment,
    LoggedModel,
    LoggedModelStatus,
    LoggedModelTag,
    Metric,
    Param,
    Run,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.tracking import SEARCH_MAX_RESULTS_DEFAULT
from mlflow.store.tracking.abstract_store import AbstractStore
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from mlflow.utils.name_utils import _generate_random_name
from mlflow.utils.search_utils import SearchExperimentsUtils, SearchUtils

from runstream._flatten import param_text
from runstream.mlflow import _entities, _experiments
from runstream.mlflow._entities import LiveRun
from runstream.mlflow._models import LocalModels
from runstream.mlflow._search import search_sql
from runstream.mlflow._uri import team_from_uri
from runstream.run import Run as RunstreamRun
from runstream.settings import Settings
from runstream_core.errors import UsageError
from runstream_core.events import MAX_KEY_LEN, MAX_LABEL_LEN, control_character
from runstream_core.events import RunStatus as RunstreamStatus
from runstream_core.log import WarnOnce, get_logger

log = get_logger("runstream.mlflow")

_FINAL = {"FINISHED": RunstreamStatus.FINISHED, "FAILED": RunstreamStatus.FAILED, "KILLED": RunstreamStatus.KILLED}

METRIC_HISTORY_SQL = """
SELECT step, toUnixTimestamp64Milli(ts) AS ms, value
FROM metrics
WHERE team = {rs_team:String} AND run_id = {rs_run:String} AND key = {rs_key:String}
ORDER BY step, ts, value
LIMIT {rs_limit:UInt64} OFFSET {rs_offset:UInt64}
"""

EXPERIMENTS_SQL = """
SELECT project, toUnixTimestamp64Milli(min(started_at)) AS created, toUnixTimestamp64Milli(max(updated_at)) AS updated
FROM runs
WHERE team = {rs_team:String}
GROUP BY project
"""


def _invalid(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _one_line(text: str, limit: int) -> str:
    """Tags cannot hold control characters (MLflow's descriptions may): they become spaces."""
    return "".join(" " if control_character(c) is not None else c for c in text)[:limit]


class RunstreamStore(AbstractStore):
    """The store behind ``mlflow.set_tracking_uri("runstream://")`` (or ``runstream://?team=<team>``)."""

    def __init__(self, store_uri: str, artifact_uri: str | None = None, settings: Settings | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.settings = settings if settings is not None else Settings()
        try:
            self.team = team_from_uri(store_uri, self.settings.team)
        except UsageError as exc:
            raise _invalid(str(exc)) from exc
        self.artifact_root = (self.settings.runs_dir.expanduser().resolve().parent / "mlflow-artifacts").resolve()
        self._models = LocalModels(self.artifact_root / "models")
        self._live: dict[str, LiveRun] = {}
        self._created: dict[str, int] = {}
        self._lock = threading.Lock()
        self._warn_once = WarnOnce(log)

    # -- experiments (projects) ------------------------------------------------------------
    def create_experiment(self, name: str, artifact_location: str | None = None, tags: Any = None) -> str:
        _experiments.check_name(name)
        self._created.setdefault(name, int(time.time() * 1000))
        return _entities.experiment_id(name)

    def get_experiment(self, experiment_id: str) -> Experiment:
        return _entities.experiment(_entities.project_of(str(experiment_id)), self.artifact_root)

    def get_experiment_by_name(self, experiment_name: str) -> Experiment:
        """Every project exists: it is created by its first run (so setting an experiment needs no ClickHouse)."""
        _experiments.check_name(experiment_name)
        return _entities.experiment(experiment_name, self.artifact_root)

    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = SEARCH_MAX_RESULTS_DEFAULT,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Experiment]:
        """The team's projects that hold runs (and those created in this process), filtered and ordered in
        Python (a team has few): ``name`` and ``experiment_id`` with = != LIKE ILIKE, ``creation_time`` and
        ``last_update_time`` (first start, last update of its runs) with = != < <= > >=."""
        if view_type == ViewType.DELETED_ONLY:
            return PagedList([], None)
        found: dict[str, tuple[int | None, int | None]] = {name: (ms, ms) for name, ms in self._created.items()}
        for project, created, updated in self._rows(EXPERIMENTS_SQL, {"rs_team": self.team}):
            found[project] = (created, updated)
        experiments = [_entities.experiment(p, self.artifact_root, c, u) for p, (c, u) in found.items()]
        clauses = SearchExperimentsUtils.parse_search_filter(filter_string or "")
        chosen = [e for e in experiments if all(_experiments.matches(e, c) for c in clauses)]
        chosen = _experiments.sort(chosen, order_by)
        offset = SearchUtils.parse_start_offset_from_page_token(page_token)
        page = chosen[offset : offset + max_results]
        token = SearchUtils.create_page_token(offset + max_results) if len(chosen) > offset + max_results else None
        return PagedList(page, token)

    def delete_experiment(self, experiment_id: str) -> None:
        raise self._unsupported("delete_experiment")

    def restore_experiment(self, experiment_id: str) -> None:
        raise self._unsupported("restore_experiment")

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        raise self._unsupported("rename_experiment")

    def set_experiment_tag(self, experiment_id: str, tag: Any) -> None:
        self._ignored("experiment tags")

    # -- writing runs ------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        user_id: str,
        start_time: int | None,
        tags: Iterable[RunTag] | None,
        run_name: str | None,
    ) -> Run:
        project = _entities.project_of(str(experiment_id))
        _experiments.check_name(project)
        tag_map = {t.key: t.value for t in tags or ()}
        name = tag_map.get(MLFLOW_RUN_NAME) or run_name or _generate_random_name()
        tag_map[MLFLOW_RUN_NAME] = name
        run_id = uuid.uuid4().hex
        try:
            run = RunstreamRun(
                project=project,
                team=self.team,
                name=name,
                tags=self._tags(tag_map),
                run_id=run_id,
                settings=self.settings,
            )
        except UsageError as exc:
            raise _invalid(str(exc)) from exc
        live = LiveRun(run, _entities.experiment_id(project), (self.artifact_root / run_id).as_uri())
        with self._lock:
            self._live[run_id] = live
        return live.entity()

    def log_metric(self, run_id: str, metric: Metric) -> None:
        self.log_batch(run_id, [metric], [], [])

    def log_param(self, run_id: str, param: Param) -> None:
        self.log_batch(run_id, [], [param], [])

    def set_tag(self, run_id: str, tag: RunTag) -> None:
        self.log_batch(run_id, [], [], [tag])

    def log_batch(
        self, run_id: str, metrics: Sequence[Metric], params: Sequence[Param], tags: Sequence[RunTag]
    ) -> None:
        """Metrics at their own steps (MLflow's rule: each key's steps are independent), params (a value
        once logged cannot change, as in MLflow), tags."""
        live = self._writable(run_id)
        run = live.run
        if params:
            new: dict[str, str] = {}
            for param in params:
                value = param_text(param.value)
                held = run.params.get(param.key, new.get(param.key))
                if held is not None and held != value:
                    raise _invalid(
                        f"Changing param values is not allowed. Param with key='{param.key}' was already logged "
                        f"with value='{held}' for run ID='{run_id}'. Attempted logging new value '{value}'."
                    )
                new[param.key] = value
            run.log_params(new)
        if tags:
            pairs = {t.key: t.value for t in tags}
            if pairs.get(MLFLOW_RUN_NAME):
                self._rename(run, pairs[MLFLOW_RUN_NAME])
            run.set_tags(self._tags(pairs))
        step_points: dict[str, float] = {}
        step: int | None = None
        for metric in metrics:
            if step_points and (metric.step != step or metric.key in step_points):
                run.log_at(step, step_points)  # type: ignore[arg-type]
                step_points = {}
            step = metric.step
            step_points[metric.key] = metric.value
            live.observe(metric)
        if step_points:
            run.log_at(step, step_points)  # type: ignore[arg-type]

    def update_run_info(
        self, run_id: str, run_status: int | str, end_time: int | None, run_name: str | None
    ) -> RunInfo:
        """A final status (FINISHED, FAILED, KILLED) ends the runstream run: everything logged is sent
        (waiting up to ``RUNSTREAM_FINISH_TIMEOUT_S``; what is left stays in the spool for ``runstream sync``)."""
        live = self._writable(run_id)
        status = RunStatus.to_string(run_status) if isinstance(run_status, int) else str(run_status)
        if run_name and run_name != live.run.name:
            self.log_batch(run_id, [], [], [RunTag(MLFLOW_RUN_NAME, run_name)])
        if status in _FINAL:
            live.run.finish(_FINAL[status])
            live.status = status
            live.end_time = end_time if end_time is not None else int(time.time() * 1000)
        return live.info()

    def log_inputs(self, run_id: str, datasets: Any = None, models: Any = None) -> None:
        self._ignored("dataset and model inputs")

    def log_outputs(self, run_id: str, models: Any) -> None:
        self._ignored("model outputs")

    def link_traces_to_run(self, trace_ids: list[str], run_id: str) -> None:
        self._ignored("traces")

    # -- models: files in a local folder, known to this process only (``_models``) ---------------
    def create_logged_model(
        self,
        experiment_id: str,
        name: str | None = None,
        source_run_id: str | None = None,
        tags: list[LoggedModelTag] | None = None,
        params: Any = None,
        model_type: str | None = None,
    ) -> LoggedModel:
        self._ignored("models beyond this machine (their files stay in a local folder)")
        return self._models.create(str(experiment_id), name, source_run_id, tags, params, model_type)

    def get_logged_model(self, model_id: str, allow_deleted: bool = False) -> LoggedModel:
        return self._models.get(model_id)

    def finalize_logged_model(self, model_id: str, status: LoggedModelStatus) -> LoggedModel:
        return self._models.finalize(model_id, status)

    def set_logged_model_tags(self, model_id: str, tags: list[LoggedModelTag]) -> None:
        self._models.set_tags(model_id, tags)

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        self._models.delete_tag(model_id, key)

    def search_logged_models(
        self,
        experiment_ids: list[str],
        filter_string: str | None = None,
        datasets: Any = None,
        max_results: int | None = None,
        order_by: Any = None,
        page_token: str | None = None,
    ) -> PagedList[LoggedModel]:
        return self._models.search([str(e) for e in experiment_ids], filter_string, max_results)

    def record_logged_model(self, run_id: str, mlflow_model: Any) -> None:
        """MLflow 2's model record on the run: the files are in the run's local artifact folder already."""

    def delete_run(self, run_id: str) -> None:
        raise self._unsupported("delete_run")

    def restore_run(self, run_id: str) -> None:
        raise self._unsupported("restore_run")

    def delete_tag(self, run_id: str, key: str) -> None:
        raise self._unsupported("delete_tag")

    # -- reading -----------------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        """A run this process writes is shown as logged so far; any other is read from ClickHouse."""
        with self._lock:
            live = self._live.get(run_id)
        if live is not None:
            return live.entity()
        return self._stored_run(run_id)

    def _search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None,
        run_view_type: int,
        max_results: int,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> tuple[list[Run], str | None]:
        if run_view_type == ViewType.DELETED_ONLY or not experiment_ids:
            return [], None
        offset = SearchUtils.parse_start_offset_from_page_token(page_token)
        projects = [_entities.project_of(str(e)) for e in experiment_ids]
        sql, parameters = search_sql(self.team, projects, filter_string, order_by, max_results + 1, offset)
        rows = self._dicts(sql, parameters)
        token = SearchUtils.create_page_token(offset + max_results) if len(rows) > max_results else None
        return [_entities.run_from_row(row, self.artifact_root) for row in rows[:max_results]], token

    def get_metric_history(
        self, run_id: str, metric_key: str, max_results: int | None = None, page_token: str | None = None
    ) -> PagedList[Metric]:
        offset = SearchUtils.parse_start_offset_from_page_token(page_token)
        limit = max_results if max_results is not None else 2**62
        parameters = {
            "rs_team": self.team,
            "rs_run": run_id,
            "rs_key": metric_key,
            "rs_limit": limit + 1,
            "rs_offset": offset,
        }
        rows = self._rows(METRIC_HISTORY_SQL, parameters)
        token = SearchUtils.create_page_token(offset + limit) if len(rows) > limit else None
        history = [Metric(metric_key, value, ms, step, run_id=run_id) for step, ms, value in rows[:limit]]
        return PagedList(history, token)

    # -- internals -----------------------------------------------------------------------------
    def _stored_run(self, run_id: str) -> Run:
        sql, parameters = search_sql(self.team, None, None, None, 1, 0, run_id=run_id)
        rows = self._dicts(sql, parameters)
        if not rows:
            raise MlflowException(
                f"Run '{run_id}' not found in team {self.team!r} (runs appear once the worker has stored them)",
                error_code=RESOURCE_DOES_NOT_EXIST,
            )
        return _entities.run_from_row(rows[0], self.artifact_root)

    def _writable(self, run_id: str) -> LiveRun:
        """The run this process writes, or a stored run continued here (``mlflow.start_run(run_id=...)``)."""
        with self._lock:
            live = self._live.get(run_id)
        if live is not None:
            return live
        stored = self._stored_run(run_id)
        try:
            run = RunstreamRun(
                project=_entities.project_of(stored.info.experiment_id),
                team=self.team,
                name=stored.info.run_name,
                tags=self._tags(stored.data.tags),
                run_id=run_id,
                resume=True,
                settings=self.settings,
            )
        except UsageError as exc:
            raise _invalid(str(exc)) from exc
        run.params.update(stored.data.params)  # what was logged before: params cannot change
        live = LiveRun(run, stored.info.experiment_id, stored.info.artifact_uri or "")
        for metric in stored.data._metric_objs:
            live.observe(metric)
        with self._lock:
            return self._live.setdefault(run_id, live)

    @staticmethod
    def _rename(run: RunstreamRun, name: str) -> None:
        try:
            run.rename(name)
        except UsageError as exc:
            raise _invalid(str(exc)) from exc

    def _tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        kept = {}
        for key, value in tags.items():
            if len(key) > MAX_KEY_LEN or control_character(key) is not None:
                self._warn_once(("tag-key", key[:64]), "tag key too long or holding a control character; not stored")
                continue
            kept[key] = _one_line(str(value), MAX_LABEL_LEN)
        return kept

    def _client(self) -> Any:
        from runstream.query._connection import shared_client

        return shared_client(self.settings)

    def _rows(self, sql: str, parameters: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._client().query(sql, parameters=dict(parameters)).result_rows]

    def _dicts(self, sql: str, parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
        result = self._client().query(sql, parameters=dict(parameters))
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def _ignored(self, what: str) -> None:
        self._warn_once(("ignored", what), f"the runstream MLflow store does not keep {what} yet; ignored")

    def _unsupported(self, what: str) -> MlflowException:
        return MlflowException(f"{what} is not supported by the runstream tracking store")
