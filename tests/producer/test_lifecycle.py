"""Run lifecycle: modes, resume, distributed ranks, run updates, shortcuts, signals and crashes."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import runstream
from runstream._distributed import Distributed, detect, shared_run_id
from runstream._spool import read_spool
from runstream.run import Run
from runstream.settings import Settings
from runstream_core.errors import UsageError
from runstream_core.events import Event, Heartbeat, MetricBatch, RunEnd, RunStart, RunUpdate
from tests.producer.fixtures import FakeSender, decoded, factory_for, unit_settings

SCRIPT = Path(__file__).parent / "scripts" / "sigterm_job.py"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return unit_settings(tmp_path, finish_timeout_s=5)


def make_run(settings: Settings, sender: FakeSender, **kwargs: Any) -> Run:
    return Run(project="p", team="t", settings=settings, sender_factory=factory_for(sender), **kwargs)


def spooled_events(runs_dir: Path, run_id: str) -> list[Event]:
    (spool,) = (runs_dir / run_id / "spool").iterdir()
    return [decoded(r.payload) for r in read_spool(spool)]


def test_disabled_mode_does_nothing_and_never_fails(settings: Settings) -> None:
    run = Run(project="p", team="t", settings=settings, mode="disabled", sender_factory=_never)
    run.log({"loss": 1.0})
    run.log_params({"lr": 0.1})
    run.summary["acc"] = 0.5
    report = run.finish()
    assert report.complete and run.spool_path is None
    assert not settings.runs_dir.exists()


def _never(_: Settings) -> FakeSender:
    raise AssertionError("no connection expected")


def test_params_tags_and_summary_are_sent_as_run_updates(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    sender = FakeSender()
    run = make_run(settings, sender, tags=["baseline"])
    run.log_params({"optim": {"lr": 0.01}, "layers": 4})
    run.set_tags({"stage": "finetune"})
    with caplog.at_level(logging.WARNING, logger="runstream"):
        run.summary["best_acc"] = 0.93
        run.summary.update({"note": "stable", "bad": object()})
    run.finish()
    updates = [e for e in sender.events() if isinstance(e, RunUpdate)]
    assert [u.params for u in updates] == [{"optim.lr": "0.01", "layers": "4"}, {}, {}, {}]
    assert updates[1].run.tags == {"baseline": "", "stage": "finetune"}
    assert [u.summary for u in updates[2:]] == [{"best_acc": 0.93}, {"note": "stable"}]
    assert dict(run.summary) == {"best_acc": 0.93, "note": "stable"}
    assert run.params == {"optim.lr": "0.01", "layers": "4"}
    assert sum("summary value must be" in r.getMessage() for r in caplog.records) == 1


def test_resume_continues_steps_and_keeps_the_start_time(settings: Settings) -> None:
    first_sender = FakeSender()
    first = make_run(settings, first_sender, run_id="long-run", name="pretrain")
    for step in range(10):
        first.log({"loss": float(step)})
    first.finish()
    sender = FakeSender()
    resumed = make_run(settings, sender, run_id="long-run", resume=True)
    resumed.log({"loss": 99.0})
    resumed.finish()
    start = sender.events()[0]
    assert isinstance(start, RunStart) and start.resumed_at_ms > 0
    assert start.run.name == "pretrain"
    assert start.run.started_at_ms == first.info.started_at_ms
    assert sender.points() == [("loss", 10, 99.0)]


def test_resume_needs_a_run_id(settings: Settings) -> None:
    with pytest.raises(UsageError, match="resume"):
        make_run(settings, FakeSender(), resume=True)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Distributed()),
        (
            {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "GROUP_RANK": "1"},
            Distributed(rank=3, local_rank=1, world_size=8, node_rank=1),
        ),
        (
            {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "6", "SLURM_NODEID": "2"},
            Distributed(rank=5, local_rank=1, world_size=6, node_rank=2),
        ),
        (
            {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"},
            Distributed(rank=1, local_rank=1, world_size=2),
        ),
        ({"RANK": "x", "WORLD_SIZE": "4"}, Distributed(rank=0, world_size=4)),
    ],
)
def test_launcher_environments_are_recognised(environ: dict[str, str], expected: Distributed) -> None:
    assert detect(environ) == expected


def test_shared_run_id_comes_from_the_job_id_only() -> None:
    elastic = {"TORCHELASTIC_RUN_ID": "job-1"}
    assert shared_run_id(elastic, "t", "p") == shared_run_id(dict(elastic), "t", "p")
    assert shared_run_id(elastic, "t", "p") != shared_run_id({"TORCHELASTIC_RUN_ID": "job-2"}, "t", "p")
    assert shared_run_id({"TORCHELASTIC_RUN_ID": "none"}, "t", "p") is None
    assert shared_run_id({"MASTER_ADDR": "n1", "MASTER_PORT": "29500"}, "t", "p") is None
    assert shared_run_id({"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0"}, "t", "p") is not None


def test_ranks_of_one_job_log_to_one_run_and_rank_zero_owns_the_lifecycle(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    senders = [FakeSender(), FakeSender()]
    runs = []
    for rank, sender in enumerate(senders):
        environ = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "abc"}
        runs.append(Run(project="p", team="t", settings=settings, sender_factory=factory_for(sender), environ=environ))
    assert runs[0].run_id == runs[1].run_id
    for rank, run in enumerate(runs):
        run.log({"loss": float(rank)}, step=0)
    with caplog.at_level(logging.WARNING, logger="runstream"):
        runs[1].log_params({"lr": 0.1})
    for run in runs:
        run.finish()
    zero, one = (sender.events() for sender in senders)
    assert [type(e) for e in zero if not isinstance(e, Heartbeat)] == [RunStart, MetricBatch, RunEnd]
    assert [type(e) for e in one if not isinstance(e, Heartbeat)] == [MetricBatch]
    assert zero[0].run.world_size == 2  # type: ignore[union-attr]
    assert [(e.rank, e.values) for e in one if isinstance(e, MetricBatch)] == [(1, [1.0])]
    assert any("ignored on rank 1" in r.getMessage() for r in caplog.records)


def test_module_level_shortcuts_act_on_the_active_run(settings: Settings) -> None:
    sender = FakeSender()
    run = make_run(settings, sender)
    runstream.run._set_active(run)  # what init() does
    assert runstream.active_run() is run
    runstream.log({"loss": 0.5})
    runstream.log_params({"lr": 0.1})
    runstream.set_tags(["best"])
    assert runstream.finish().complete
    assert runstream.active_run() is None
    assert sender.points() == [("loss", 0, 0.5)]
    with pytest.raises(UsageError, match=r"call runstream.init\(\) first"):
        runstream.log({"loss": 1.0})


def _start_job(tmp_path: Path, behaviour: str) -> subprocess.Popen[str]:
    job = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(tmp_path / "runs"), behaviour, str(tmp_path / "marker")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if behaviour != "crash":
        assert job.stdout is not None
        assert job.stdout.readline().strip() == "ready", job.stderr.read() if job.stderr else ""
    return job


def test_sigterm_marks_the_run_killed_flushes_and_dies_by_the_signal(tmp_path: Path) -> None:
    job = _start_job(tmp_path, "default")
    job.send_signal(signal.SIGTERM)
    assert job.wait(30) == -signal.SIGTERM  # the default action still ends the process
    events = spooled_events(tmp_path / "runs", "job")
    end = events[-1]
    assert isinstance(end, RunEnd) and end.status == "killed"
    assert sum(len(e.keys) for e in events if isinstance(e, MetricBatch)) == 100


def test_sigterm_chains_to_the_handler_installed_before(tmp_path: Path) -> None:
    job = _start_job(tmp_path, "chain")
    job.send_signal(signal.SIGTERM)
    assert job.wait(30) == 3
    assert (tmp_path / "marker").read_text() == f"previous handler got {int(signal.SIGTERM)}"
    end = spooled_events(tmp_path / "runs", "job")[-1]
    assert isinstance(end, RunEnd) and end.status == "killed"


def test_an_uncaught_exception_ends_the_run_failed(tmp_path: Path) -> None:
    job = _start_job(tmp_path, "crash")
    _, err = job.communicate(timeout=30)
    assert job.returncode == 1 and "RuntimeError: diverged" in err
    end = spooled_events(tmp_path / "runs", "job")[-1]
    assert isinstance(end, RunEnd) and end.status == "failed"


def test_sigkill_leaves_the_logged_points_in_the_spool_without_an_end(tmp_path: Path) -> None:
    job = _start_job(tmp_path, "default")
    job.kill()
    job.wait(30)
    events = spooled_events(tmp_path / "runs", "job")
    assert isinstance(events[0], RunStart) and not any(isinstance(e, RunEnd) for e in events)
    assert [s for e in events if isinstance(e, MetricBatch) for s in e.steps] == list(range(100))
