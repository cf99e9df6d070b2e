# MLflow tracking written as MLflow's docs write it (quickstart, log_batch, autologging), with only
# the tracking URI changed.
import time

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LinearRegression

mlflow.set_tracking_uri("runstream://")
mlflow.set_experiment("mlflow-quickstart")

with mlflow.start_run(run_name="baseline") as run:
    mlflow.log_param("learning_rate", 0.01)
    mlflow.log_params({"epochs": 3, "optimizer": "adam"})
    mlflow.set_tag("stage", "dev")
    mlflow.set_tags({"owner": "ml-team", "dataset": "iris"})
    for epoch in range(3):
        mlflow.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
        mlflow.log_metrics({"acc": 0.5 + 0.1 * epoch, "lr": 0.01}, step=epoch)
    # MLflow's steps are per key: a metric may start again from step 0
    for epoch in range(3):
        mlflow.log_metric("val_loss", 2.0 / (epoch + 1), step=epoch)
    client = MlflowClient()
    client.log_batch(
        run.info.run_id,
        metrics=[Metric("batch_metric", 7.0, int(time.time() * 1000), 5)],
        params=[Param("batch_param", "x")],
        tags=[RunTag("batch_tag", "y")],
    )
    try:
        mlflow.log_param("learning_rate", 0.02)
    except MlflowException as exc:
        print("PARAM-REFUSED", exc.error_code)
    assert mlflow.get_run(run.info.run_id).data.params["optimizer"] == "adam"
print("RUN", run.info.run_id)

try:
    with mlflow.start_run(run_name="fails") as failed:
        mlflow.log_metric("loss", 9.0)
        mlflow.set_tag("mlflow.runName", "fails-renamed")
        raise RuntimeError("boom")
except RuntimeError:
    print("FAILED", failed.info.run_id)

mlflow.set_experiment("mlflow-autolog")
mlflow.sklearn.autolog(log_models=False, log_datasets=False, log_input_examples=False, log_model_signatures=False)
X = np.array([[1, 1], [1, 2], [2, 2], [2, 3]])
y = np.dot(X, np.array([1, 2])) + 3
with mlflow.start_run(run_name="autolog") as auto:
    LinearRegression().fit(X, y)
print("AUTOLOG", auto.info.run_id)
