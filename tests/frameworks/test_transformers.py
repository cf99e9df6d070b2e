"""Hugging Face's RunstreamCallback: a Trainer really training a tiny model built here (nothing downloaded),
on the CPU, on the real broker and engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from runstream_cli.worker_process import WorkerProcess
from tests.fixtures.settings import StackSettings as Settings
from tests.frameworks.helpers import curves, params, run_row, stored

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from runstream.integrations.transformers import RunstreamCallback, metric_key  # noqa: E402

MAX_STEPS = 6


class Pairs(torch.utils.data.Dataset):  # type: ignore[misc]
    """Token ids and a label: a class of its own for each half of the vocabulary."""

    def __init__(self, size: int) -> None:
        generator = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, 32, (size, 8), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ids = self.ids[index]
        return {"input_ids": ids, "labels": int(ids[0] >= 16)}


def tiny_model() -> Any:
    config = transformers.BertConfig(
        vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=2
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


class Recorder(transformers.TrainerCallback):  # type: ignore[misc]
    """What the Trainer logged, as every reporting callback receives it."""

    def __init__(self) -> None:
        self.logged: list[tuple[int, dict[str, Any]]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.logged.append((state.global_step, dict(logs or {})))


def train(tmp_path: Path, report_to: str, callbacks: list[Any]) -> Recorder:
    recorder = Recorder()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        run_name="tiny-bert",
        max_steps=MAX_STEPS,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=3,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=1e-3,
        save_strategy="no",
        use_cpu=True,
        report_to=report_to,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=tiny_model(),
        args=args,
        train_dataset=Pairs(32),
        eval_dataset=Pairs(8),
        callbacks=[*callbacks, recorder],
    )
    trainer.train()
    return recorder


def expected_curves(recorder: Recorder) -> dict[str, list[tuple[int, float]]]:
    curves_seen: dict[str, list[tuple[int, float]]] = {}
    for step, logs in recorder.logged:
        if "train_runtime" in logs:
            curves_seen.setdefault("train/epoch", []).append((step, float(logs["epoch"])))
            continue
        for key, value in logs.items():
            if isinstance(value, int | float):
                curves_seen.setdefault(metric_key(key), []).append((step, float(value)))
    return curves_seen


def test_metric_keys_follow_the_split_prefixes() -> None:
    assert [metric_key(k) for k in ("loss", "eval_loss", "test_acc", "grad_norm", "eval/x")] == [
        "train/loss",
        "eval/loss",
        "test/acc",
        "train/grad_norm",
        "eval/x",
    ]


def test_trainer_logs_curves_params_summary_and_status(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    tmp_path: Path,
) -> None:
    worker = worker_factory(pipeline_settings)
    callback = RunstreamCallback(project="hf", team="nlp", settings=pipeline_settings)
    recorder = train(tmp_path, "none", [callback])
    assert callback.run is not None
    run_id = callback.run.run_id

    client = stored(pipeline_settings, worker, clickhouse_factory)
    expected = expected_curves(recorder)
    assert set(expected) >= {"train/loss", "eval/loss", "train/learning_rate"}
    assert curves(client, run_id) == expected
    assert run_row(client, run_id) == ("nlp", "hf", "tiny-bert", "finished")
    stored_params = params(client, run_id)
    assert stored_params["args.max_steps"] == str(MAX_STEPS)
    assert stored_params["args.learning_rate"] == "0.001"
    assert stored_params["model.hidden_size"] == "16"
    final = next(logs for _, logs in recorder.logged if "train_runtime" in logs)
    summary = dict(
        client.query(
            "SELECT key, value FROM summary FINAL WHERE run_id = {r:String}", parameters={"r": run_id}
        ).result_rows
    )
    assert summary["train_loss"] == final["train_loss"]


def test_report_to_runstream_adds_the_callback_with_settings_from_the_environment(
    pipeline_settings: Settings,
    worker_factory: Callable[[Settings], WorkerProcess],
    clickhouse_factory: Callable[[Settings], Client],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {**pipeline_settings.as_env(), "RUNSTREAM_PROJECT": "hf", "RUNSTREAM_TEAM": "nlp"}.items():
        monkeypatch.setenv(name, value)
    worker = worker_factory(pipeline_settings)
    recorder = train(tmp_path, "runstream", [])

    client = stored(pipeline_settings, worker, clickhouse_factory)
    (run_id,) = [row[0] for row in client.query("SELECT run_id FROM runs FINAL").result_rows]
    assert curves(client, run_id) == expected_curves(recorder)
    assert run_row(client, run_id) == ("nlp", "hf", "tiny-bert", "finished")


def test_without_a_project_or_team_the_error_says_which_settings_to_give(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNSTREAM_PROJECT", raising=False)
    monkeypatch.delenv("RUNSTREAM_TEAM", raising=False)
    from runstream.errors import UsageError

    callback = RunstreamCallback()
    state = transformers.TrainerState()
    with pytest.raises(UsageError, match="RUNSTREAM_PROJECT and RUNSTREAM_TEAM"):
        callback.on_train_begin(transformers.TrainingArguments(output_dir="unused", report_to="none"), state, None)
