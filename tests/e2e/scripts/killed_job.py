"""A training job that is killed with SIGKILL by the test: it logs in two phases and reports each.

Phase 1 is delivered (flush waits for Kafka); then it says "phase1" and waits for "go" on stdin
(the test takes the broker down meanwhile); phase 2 can only reach the spool. It says "phase2"
and sleeps until killed. Settings come from RUNSTREAM_* variables.
"""

import sys
import time

import runstream

STEPS = int(sys.argv[1])
KEYS = ("loss", "acc", "lr", "grad_norm")

run = runstream.init(project="crash", team="vision", run_id="killed-run", config={"lr": 0.1})


def log_steps(first: int, last: int) -> None:
    for step in range(first, last):
        run.log({key: step + k * 0.25 for k, key in enumerate(KEYS)}, step=step)


log_steps(0, STEPS // 2)
assert run.flush(60), "phase 1 was not delivered"
print("phase1", flush=True)
sys.stdin.readline()
log_steps(STEPS // 2, STEPS)
run.flush(3)  # cannot be delivered (no broker) but is on disk after this
print("phase2", flush=True)
time.sleep(300)
