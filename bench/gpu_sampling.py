"""Hardware sampling on a real machine: what the SDK records about its GPUs, and what a sample costs.

Runs one offline run with the sampler every 0.5 s for a few seconds while, when PyTorch with CUDA
is present, a matmul loop keeps the visible GPUs busy; then reads the hardware records back from
the run's spool and prints the last reading of every key per device. Also prints the per-sample
cost figures of ``sdk_overhead.py`` (this machine, 8 simulated GPUs, 8 GPUs' worth of real NVML
calls). Needs no broker and no ClickHouse. Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sdk_overhead import hardware_sample_figures

import runstream
from runstream._spool import read_spool
from runstream.settings import Settings
from runstream_core.columns import to_batch
from runstream_core.events import HardwareBatch, HardwareColumns, decode_event


def keep_gpus_busy(seconds: float, stop: threading.Event, log: runstream.Run) -> str:
    """Matmuls on every visible GPU (with 2 GiB held per GPU), logging a loss per step; says what ran."""
    try:
        import torch
    except ImportError:
        return "torch not installed: GPUs idle"
    if not torch.cuda.is_available():
        return "no CUDA device visible to torch: GPUs idle"
    devices = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    held = [torch.empty(2 << 30, dtype=torch.uint8, device=d) for d in devices]
    mats = [torch.randn(4096, 4096, device=d) for d in devices]
    deadline = time.monotonic() + seconds
    step = 0
    while time.monotonic() < deadline and not stop.is_set():
        for m in mats:
            m.copy_(m @ m.T)
            m.div_(m.norm())
        torch.cuda.synchronize()
        log.log({"loss": float(mats[0][0, 0])}, step=step)
        step += 1
    del held
    return f"{step} matmul steps on {len(devices)} GPU(s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="runstream-gpu-") as tmp:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, runs_dir=Path(tmp), mode="offline", hardware_interval_s=0.5, handle_sigterm=False
        )
        run = runstream.init(project="gpu-check", team="infra", settings=settings)
        workload = keep_gpus_busy(args.seconds, threading.Event(), run)
        if workload.endswith("idle"):
            time.sleep(args.seconds)
        report = run.finish()
        assert report.spool_path is not None
        batches = [
            to_batch(e) if isinstance(e, HardwareColumns) else e  # wire format v2's columns as lists
            for e in map(decode_event, (r.payload for r in read_spool(Path(report.spool_path))))
            if isinstance(e, HardwareBatch | HardwareColumns)
        ]
    last: dict[str, dict[str, float]] = defaultdict(dict)
    for batch in batches:
        for key, device, value in zip(batch.keys, batch.devices, batch.values, strict=True):
            last[device or "host"][key] = value
    table = Table(title=f"last readings of {len(batches)} samples ({workload})")
    for column in ("device", "key", "value"):
        table.add_column(column)
    for device, readings in sorted(last.items()):
        for key, value in sorted(readings.items()):
            table.add_row(device, key, f"{value:,.1f}")
    console.print(table)
    figures: dict[str, Any] = {
        "bench": "gpu_sampling",
        "samples": len(batches),
        "gpus": sorted(d for d in last if d != "host"),
        "workload": workload,
        "readings": {device: dict(sorted(r.items())) for device, r in sorted(last.items())},
    }
    figures.update(hardware_sample_figures())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
