"""A training job for signal tests: logs 100 steps offline, says "ready", then waits to be signalled.

argv: runs_dir, behaviour ("default" | "chain" | "crash"), marker file for the chained handler.
"""

import signal
import sys
import time
from types import FrameType

import runstream
from runstream.settings import Settings

runs_dir, behaviour, marker = sys.argv[1], sys.argv[2], sys.argv[3]


def previous_handler(signum: int, frame: FrameType | None) -> None:
    with open(marker, "w") as out:
        out.write(f"previous handler got {signum}")
    sys.exit(3)


if behaviour == "chain":
    signal.signal(signal.SIGTERM, previous_handler)

settings = Settings(_env_file=None, runs_dir=runs_dir, hardware_interval_s=0)  # type: ignore[call-arg]
run = runstream.init("p", "t", run_id="job", mode="offline", settings=settings)
for step in range(100):
    run.log({"loss": 1.0 / (step + 1)})
if behaviour == "crash":
    raise RuntimeError("diverged")  # uncaught: atexit must finish the run as failed
assert run.flush(10)  # everything logged so far is in the spool (the OS has it: a kill keeps it)
print("ready", flush=True)
time.sleep(60)
