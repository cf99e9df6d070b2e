"""MLflow as a front end to runstream: ``mlflow.set_tracking_uri("runstream://")``.

>>> import mlflow
>>> mlflow.set_tracking_uri("runstream://?team=vision")
>>> mlflow.set_experiment("resnet")
>>> with mlflow.start_run():
...     mlflow.log_param("lr", 3e-4)
...     mlflow.log_metric("loss", 0.31, step=1)

The store is found through the ``mlflow.tracking_store`` entry point (scheme ``runstream``) once the
``mlflow`` extra is installed. Kafka, ClickHouse and the default team come from runstream's settings
(``RUNSTREAM_*``); ``?team=`` picks another team. Runs are written through runstream's SDK and read
back from ClickHouse; experiments are projects. What is supported: ``RunstreamStore``.
"""

from __future__ import annotations

from runstream.mlflow._store import RunstreamStore

__all__ = ["RunstreamStore", "tracking_store"]


def tracking_store(store_uri: str, artifact_uri: str | None = None) -> RunstreamStore:
    """MLflow's store builder for ``runstream://`` URIs (the entry point)."""
    return RunstreamStore(store_uri, artifact_uri)
