"""MLflow 3's logged models, kept by this process only: ``log_model`` (and autologging's model) saves
the model's files to a local folder and goes on, so a script that logs a model still runs and its
params and metrics still arrive. runstream does not store models yet."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

from mlflow.entities import LoggedModel, LoggedModelStatus, LoggedModelTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST
from mlflow.store.entities.paged_list import PagedList
from mlflow.utils.name_utils import _generate_random_name


class LocalModels:
    """The logged models of this process, their files under ``root/<model_id>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._models: dict[str, LoggedModel] = {}
        self._lock = threading.Lock()

    def create(
        self,
        experiment_id: str,
        name: str | None,
        source_run_id: str | None,
        tags: list[LoggedModelTag] | None,
        params: Any,
        model_type: str | None,
    ) -> LoggedModel:
        model_id = f"m-{uuid.uuid4().hex}"
        now = int(time.time() * 1000)
        model = LoggedModel(
            experiment_id=experiment_id,
            model_id=model_id,
            name=name or _generate_random_name(),
            artifact_location=(self.root / model_id).as_uri(),
            creation_timestamp=now,
            last_updated_timestamp=now,
            model_type=model_type,
            source_run_id=source_run_id,
            status=LoggedModelStatus.PENDING,
            tags={t.key: t.value for t in tags or ()},
            params={p.key: p.value for p in params or ()},
        )
        with self._lock:
            self._models[model_id] = model
        return model

    def get(self, model_id: str) -> LoggedModel:
        with self._lock:
            model = self._models.get(model_id)
        if model is None:
            raise MlflowException(
                f"Logged model {model_id!r} not found: models are kept by the process that logged them",
                error_code=RESOURCE_DOES_NOT_EXIST,
            )
        return model

    def finalize(self, model_id: str, status: LoggedModelStatus) -> LoggedModel:
        model = self.get(model_id)
        model.status = status
        model.last_updated_timestamp = int(time.time() * 1000)
        return model

    def set_tags(self, model_id: str, tags: list[LoggedModelTag]) -> None:
        model = self.get(model_id)
        model.tags.update({t.key: t.value for t in tags})

    def delete_tag(self, model_id: str, key: str) -> None:
        self.get(model_id).tags.pop(key, None)

    def search(self, experiment_ids: list[str], filter_string: str | None, max_results: int | None) -> PagedList[Any]:
        if filter_string:
            raise MlflowException(
                "search_logged_models takes no filter on the runstream store", error_code=INVALID_PARAMETER_VALUE
            )
        with self._lock:
            found = [m for m in self._models.values() if m.experiment_id in set(experiment_ids)]
        return PagedList(found[:max_results] if max_results else found, None)
