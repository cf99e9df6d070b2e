"""The Keras 3 callback (on its torch backend), fitting a tiny model on the CPU, on the real broker and engine."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from runstream_cli.worker_process import WorkerProcess
from tests.fixtures.settings import StackSettings as Settings
from tests.frameworks.helpers import curves, params, run_row, stored

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras reads it at import; TensorFlow is not installed
pytest.importorskip("torch")
keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")

from runstream.integrations.keras import RunstreamCallback  # noqa: E402

SAMPLES, BATCH, EPOCHS = 32, 8, 2
BATCHES = SAMPLES // BATCH


class Recorder(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[dict[str, float]] = []
        self.epochs: list[dict[str, float]] = []

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.batches.append({key: float(value) for key, value in (logs or {}).items()})

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs.append({key: float(value) for key, value in (logs or {}).items()})


def test_batch_and_epoch_logs_arrive_at_their_steps(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
) -> None:
    worker = worker_factory(pipeline_settings)
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((SAMPLES, 3)).astype("float32")
    y = x @ np.array([[1.0], [2.0], [3.0]], dtype="float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse", metrics=["mae"])
    callback = RunstreamCallback(project="keras", team="vision", name="dense", settings=pipeline_settings)
    recorder = Recorder()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, validation_data=(x, y), callbacks=[callback, recorder], verbose=0)
    assert callback.run is not None and callback.run.delivery is not None and callback.run.delivery.complete
    run_id = callback.run.run_id

    client = stored(pipeline_settings, worker, clickhouse_factory)
    points = curves(client, run_id)
    steps = range(BATCHES * EPOCHS)
    assert points["train/loss"] == [(s, recorder.batches[s]["loss"]) for s in steps]
    assert points["train/mae"] == [(s, recorder.batches[s]["mae"]) for s in steps]
    epoch_ends = [(e + 1) * BATCHES - 1 for e in range(EPOCHS)]
    assert points["epoch/val_loss"] == [(s, recorder.epochs[e]["val_loss"]) for e, s in enumerate(epoch_ends)]
    assert points["epoch"] == [(s, float(e)) for e, s in enumerate(epoch_ends)]
    assert run_row(client, run_id) == ("vision", "keras", "dense", "finished")
    assert params(client, run_id)["optimizer.learning_rate"] == str(float(np.float32(0.1)))  # a float32 variable
