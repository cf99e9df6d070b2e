"""A training job on a full disk: no file it writes may grow past argv[2] bytes.

RLIMIT_FSIZE with SIGXFSZ ignored makes a write past the limit fail with EFBIG, as a full disk's
fails with ENOSPC, without root and without filling a real disk. The job logs argv[3] steps of
four keys to run argv[1], checks that Kafka took them (flush), finishes and prints the report and
the seconds the flush took as one JSON line. Settings come from RUNSTREAM_* variables.
"""

import dataclasses
import json
import resource
import signal
import sys
import time

import runstream

run_id, limit, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

run = runstream.init(project="faults", team="vision", run_id=run_id, config={"lr": 0.1})
for step in range(steps):
    run.log({"loss": step * 0.5, "acc": step * 0.25, "lr": 0.1, "grad_norm": step * 2.0}, step=step)
started = time.monotonic()
flushed = run.flush(30)
flush_s = time.monotonic() - started
report = run.finish()
print(json.dumps({"flushed": flushed, "flush_s": flush_s, **dataclasses.asdict(report)}), flush=True)
