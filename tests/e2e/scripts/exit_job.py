"""A training job that leaves its run for the SDK to end: at interpreter exit, or on SIGTERM.

argv: run id, steps, case. Cases:
- ``unfinished``: logs every step and exits without ``finish()``;
- ``resumed``: logs the first half, ``finish()``es, resumes the same run in the same process, logs the
  second half and exits without ``finish()``;
- ``crashed``: logs every step and dies of an uncaught exception;
- ``sigterm`` and ``resumed-sigterm``: as the first two, but then says "ready" and waits for SIGTERM.
Each phase ends with a ``flush()`` that waits for Kafka, so the run's Kafka producer exists before the
process ends (a job that exits within a few milliseconds of ``init()`` never has one). Settings come from
RUNSTREAM_* variables.
"""

import sys
import time

import runstream

RUN_ID, STEPS, CASE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
KEYS = ("loss", "acc", "lr", "grad_norm")


def log_steps(run: runstream.Run, first: int, last: int) -> None:
    for step in range(first, last):
        run.log({key: step + k * 0.25 for k, key in enumerate(KEYS)}, step=step)
    assert run.flush(60), "not delivered"


run = runstream.init(project="exit", team="vision", run_id=RUN_ID, config={"lr": 0.1})
if CASE.startswith("resumed"):
    log_steps(run, 0, STEPS // 2)
    report = run.finish()
    assert report.complete, report
    run = runstream.init(project="exit", team="vision", run_id=RUN_ID, resume=True)
    log_steps(run, STEPS // 2, STEPS)
else:
    log_steps(run, 0, STEPS)
if CASE == "crashed":
    raise RuntimeError("training diverged")
if CASE.endswith("sigterm"):
    print("ready", flush=True)
    time.sleep(300)
