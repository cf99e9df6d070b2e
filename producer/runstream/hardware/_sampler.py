"""The hardware sampler: host and GPU readers combined, sampled on a daemon thread at a fixed rate."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from runstream.hardware._gpu import GpuReader
from runstream.hardware._host import HostReader
from runstream.hardware._once import describe, warn_once
from runstream.hardware._sample import HardwareSample
from runstream_core.errors import UsageError
from runstream_core.log import get_logger

log = get_logger("runstream.hardware")

MIN_INTERVAL_S = 0.5
MAX_INTERVAL_S = 3600.0
THREAD_NAME = "runstream-hardware"


class HardwareSampler:
    """Samples host and GPU metrics every ``interval_s`` seconds and hands each sample to ``emit``.

    ``system`` covers node-wide CPU, memory, disk and network and the GPUs' device metrics; ``process``
    covers the CPU, RSS and per-GPU memory of process ``pid`` (default: this one). GPUs are those
    ``CUDA_VISIBLE_DEVICES`` (from ``environ``) exposes, or every GPU with ``all_gpus``. ``nvml`` is the
    NVML module; None imports ``pynvml`` (package nvidia-ml-py). Without NVML, the GPU readings are
    left out and the rest is sampled. Failures are logged once and never raised from the thread,
    :meth:`start` or :meth:`stop`.
    """

    def __init__(
        self,
        interval_s: float,
        emit: Callable[[HardwareSample], None],
        *,
        system: bool = True,
        process: bool = True,
        all_gpus: bool = False,
        pid: int | None = None,
        nvml: Any | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        try:
            seconds = float(interval_s)
        except (TypeError, ValueError):
            seconds = math.nan
        if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:  # NaN fails too
            raise UsageError(
                f"hardware interval_s must be within {MIN_INTERVAL_S}..{MAX_INTERVAL_S:g} seconds, got {interval_s!r}"
            )
        self._interval_s = seconds
        self._interval_ms = round(seconds * 1000)
        self._emit = emit
        self._warn = warn_once()
        pid = os.getpid() if pid is None else pid
        self._host = HostReader(system=system, process=process, pid=pid, warn=self._warn)
        self._gpu = GpuReader(
            nvml,
            system=system,
            process=process,
            all_gpus=all_gpus,
            pid=pid,
            environ=os.environ if environ is None else environ,
            warn=self._warn,
        )
        self._sample_lock = threading.Lock()  # sample() may be called while the thread samples
        self._life_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def gpu_devices(self) -> list[str]:
        """Device labels of the sampled GPUs (``gpu<N>``, N the NVML index); empty without GPUs."""
        return list(self._gpu.devices)

    def sample(self) -> HardwareSample:
        """Take one sample now, on the calling thread."""
        keys: list[str] = []
        devices: list[str] = []
        values: list[float] = []
        with self._sample_lock:
            ts_ms = time.time_ns() // 1_000_000
            self._host.read(keys, devices, values)
            self._gpu.read(keys, devices, values)
        return HardwareSample(ts_ms, self._interval_ms, keys, devices, values)

    def start(self) -> None:
        """Start the sampling thread: one sample at once, then one every ``interval_s``. Idempotent."""
        with self._life_lock:
            if self._thread is not None:
                return
            if self._stopping.is_set():
                log.warning("a stopped hardware sampler cannot be started again")
                return
            thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # e.g. at interpreter shutdown
                log.warning("could not start the hardware sampling thread", error=describe(exc))
                return
            self._thread = thread

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (woken at once, joined up to ``timeout`` s) and release NVML. Idempotent."""
        with self._life_lock:
            self._stopping.set()
            thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)
                if thread.is_alive():
                    # Still inside a slow NVML call: shutting NVML down under it could crash the process.
                    self._warn("stop", "the hardware sampling thread did not stop in time", timeout_s=timeout)
                    return
            with self._sample_lock:
                self._gpu.close()

    def _loop(self) -> None:
        interval = self._interval_s
        due = time.monotonic()
        while True:
            self._tick()
            due += interval
            now = time.monotonic()
            if due <= now:
                # Fell behind (slow NVML, a suspended machine): skip the missed slots rather than burst.
                due += (((now - due) // interval) + 1) * interval
            if self._stopping.wait(due - now):
                return

    def _tick(self) -> None:
        try:
            sample = self.sample()
        except Exception as exc:
            self._warn("sample", "hardware sampling failed; will keep trying", error=describe(exc))
            return
        try:
            self._emit(sample)
        except Exception as exc:
            self._warn("emit", "handing a hardware sample on failed; will keep trying", error=describe(exc))
