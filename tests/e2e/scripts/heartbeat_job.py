"""A job that logs ten steps, then keeps its heartbeats going without new steps until killed.

Settings come from RUNSTREAM_* variables; argv[1] is the run id.
"""

import sys
import time

import runstream

run = runstream.init(project="liveness", team="vision", run_id=sys.argv[1])
for step in range(10):
    run.log({"loss": 1.0 / (step + 1)}, step=step)
assert run.flush(60)
print("ready", flush=True)
time.sleep(300)
