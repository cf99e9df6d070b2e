"""A job that forks children as a fork-based DataLoader does, while its run is going.

Child 1 logs, then waits until the parent terminates it with SIGTERM; child 2 logs, finishes the
run and exits through sys.exit (atexit runs). The parent logs steps 0-99 before the children and
100-199 after, then finishes and prints one JSON line: the children's exit codes, the run's state
file as each child left it, and the report's figures. Settings come from RUNSTREAM_* variables;
the run id is argv[1].
"""

import json
import os
import signal
import sys
import time

import runstream

run = runstream.init(project="fork", team="vision", run_id=sys.argv[1], config={"workers": 2})
for step in range(100):
    run.log({"parent": float(step)}, step=step)

ready_r, ready_w = os.pipe()
child = os.fork()
if child == 0:  # a worker that is terminated
    run.log({"child": 1.0}, step=1000)
    runstream.log({"child": 2.0})
    run.summary["from_child"] = 1.0
    os.write(ready_w, b"x")
    time.sleep(60)
    os._exit(7)  # not reached: SIGTERM ends it
os.read(ready_r, 1)
os.kill(child, signal.SIGTERM)
_, status = os.waitpid(child, 0)
terminated = os.waitstatus_to_exitcode(status)
state_file = run.dir / "run.json"
after_terminated = json.loads(state_file.read_text())["status"]

child = os.fork()
if child == 0:  # a worker that ends normally
    run.log({"child": 3.0})
    run.finish()
    sys.exit(0)
_, status = os.waitpid(child, 0)
exited = os.waitstatus_to_exitcode(status)
after_exited = json.loads(state_file.read_text())["status"]

for step in range(100, 200):
    run.log({"parent": float(step)}, step=step)
report = run.finish()
print(
    json.dumps(
        {
            "terminated": terminated,
            "exited": exited,
            "after_terminated": after_terminated,
            "after_exited": after_exited,
            "complete": report.complete,
            "pending_records": report.pending_records,
            "rejected_points": report.rejected_points,
            "spool": report.spool_path,
        }
    ),
    flush=True,
)
