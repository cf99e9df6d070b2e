"""PyTorch Lightning's RunstreamLogger, training a tiny model on the CPU, on the real broker and engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from runstream_cli.worker_process import WorkerProcess
from tests.fixtures.settings import StackSettings as Settings
from tests.frameworks.helpers import curves, params, run_row, stored

pl = pytest.importorskip("lightning.pytorch")
torch = pytest.importorskip("torch")

from runstream.integrations.lightning import RunstreamLogger  # noqa: E402

BATCHES_PER_EPOCH = 4
EPOCHS = 3


class TinyRegression(pl.LightningModule):  # type: ignore[misc]
    """y = 2x + 1 with one linear layer; it records every loss it logs, to compare with the stored rows."""

    def __init__(self, lr: float = 0.05, fail_at_step: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(1, 1)
        self.seen: list[float] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        if self.hparams.fail_at_step is not None and self.global_step == self.hparams.fail_at_step:
            raise RuntimeError("loss diverged")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        self.seen.append(float(loss.detach()))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader() -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(BATCHES_PER_EPOCH * 8, 1, generator=generator)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, 2 * x + 1), batch_size=8)


def trainer(logger: RunstreamLogger, root: Path) -> pl.Trainer:
    return pl.Trainer(
        logger=logger,
        max_epochs=EPOCHS,
        log_every_n_steps=1,
        accelerator="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )


def test_every_logged_loss_params_and_status_arrive(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    tmp_path: Path,
) -> None:
    worker = worker_factory(pipeline_settings)
    logger = RunstreamLogger(project="lightning", team="Vision", name="tiny", settings=pipeline_settings)
    model = TinyRegression()
    trainer(logger, tmp_path).fit(model, loader())
    run_id = logger.version
    assert logger.run is not None and logger.run.delivery is not None and logger.run.delivery.complete

    client = stored(pipeline_settings, worker, clickhouse_factory)
    points = curves(client, run_id)
    steps = BATCHES_PER_EPOCH * EPOCHS
    assert len(model.seen) == steps
    assert [value for _, value in points["train_loss"]] == model.seen
    assert [step for step, _ in points["train_loss"]] == list(range(steps))
    # Lightning adds the epoch to every logged row.
    assert [value for _, value in points["epoch"]] == [float(s // BATCHES_PER_EPOCH) for s in range(steps)]
    assert params(client, run_id) == {"lr": "0.05", "fail_at_step": "null"}
    assert run_row(client, run_id) == ("vision", "lightning", "tiny", "finished")


def test_an_exception_in_training_marks_the_run_failed_and_keeps_what_was_logged(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    tmp_path: Path,
) -> None:
    worker = worker_factory(pipeline_settings)
    logger = RunstreamLogger(project="lightning", team="vision", settings=pipeline_settings)
    model = TinyRegression(fail_at_step=5)
    with pytest.raises(RuntimeError, match="loss diverged"):
        trainer(logger, tmp_path).fit(model, loader())

    client = stored(pipeline_settings, worker, clickhouse_factory)
    assert [value for _, value in curves(client, logger.version)["train_loss"]] == model.seen
    assert len(model.seen) == 5
    assert run_row(client, logger.version)[3] == "failed"


def test_test_after_fit_resumes_the_same_run(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    tmp_path: Path,
) -> None:
    class WithTest(TinyRegression):
        def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
            x, y = batch
            self.log("test_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    worker = worker_factory(pipeline_settings)
    logger = RunstreamLogger(project="lightning", team="vision", settings=pipeline_settings)
    model = WithTest()
    fitting = trainer(logger, tmp_path)
    fitting.fit(model, loader())
    results = fitting.test(model, loader(), verbose=False)

    client = stored(pipeline_settings, worker, clickhouse_factory)
    points = curves(client, logger.version)
    assert [value for _, value in points["test_loss"]] == [pytest.approx(results[0]["test_loss"], abs=0)]
    assert run_row(client, logger.version)[3] == "finished"
    assert client.query("SELECT count() FROM runs FINAL").result_rows == [(1,)]
