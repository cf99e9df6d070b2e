"""GPU readings through NVML: device metrics and the GPU memory held by the sampled process."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

from runstream._log import get_logger
from runstream.hardware._once import WarnOnce, describe
from runstream.hardware._visible import visible_indices
from runstream_schemas import hardware_keys as hk

log = get_logger("runstream.hardware")

# The enforced power limit changes only when an administrator sets it, so it is re-read this seldom.
LIMIT_EVERY_SAMPLES = 60
# NVML error codes that mean "no NVIDIA driver here" rather than a broken setup.
_NO_DRIVER_CODES = frozenset({9, 12})  # NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIBRARY_NOT_FOUND


def nvidia_driver_present() -> bool:
    """Whether the node looks like it has an NVIDIA driver (then a missing pynvml deserves a warning)."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def _import_nvml() -> Any | None:
    try:
        import pynvml
    except ImportError as exc:
        if nvidia_driver_present():
            log.warning(
                "GPU metrics are off: the nvidia-ml-py package is missing; pip install 'runstream[gpu]'",
                error=describe(exc),
            )
        else:
            log.info("GPU metrics are off: no NVIDIA driver on this node")
        return None
    return pynvml


class _Gpu:
    __slots__ = ("device", "handle", "index", "limit_w")

    def __init__(self, index: int, handle: Any) -> None:
        self.index = index
        self.device = f"gpu{index}"
        self.handle = handle
        self.limit_w: float | None = None


class GpuReader:
    """Appends per-GPU readings to a sample's columns.

    NVML is initialised and the device handles fetched once, here. A failing call skips that one
    reading (warned once per key and device); the other readings of the sample are kept.
    """

    def __init__(
        self,
        nvml: Any | None,
        *,
        system: bool,
        process: bool,
        all_gpus: bool,
        pid: int,
        environ: Mapping[str, str],
        warn: WarnOnce,
    ) -> None:
        self._system = system
        self._process = process
        self._pid = pid
        self._warn = warn
        self._gpus: list[_Gpu] = []
        self._nvml: Any = None
        self._samples = 0
        self._temperature_sensor = 0  # NVML_TEMPERATURE_GPU
        self._sm_clock = 1  # NVML_CLOCK_SM
        self.devices: list[str] = []
        if system or process:
            self._open(nvml, all_gpus, environ)

    def _open(self, nvml: Any | None, all_gpus: bool, environ: Mapping[str, str]) -> None:
        if nvml is None:
            nvml = _import_nvml()
            if nvml is None:
                return
        try:
            nvml.nvmlInit()
        except Exception as exc:
            if getattr(exc, "value", None) in _NO_DRIVER_CODES:
                log.info("GPU metrics are off: no NVIDIA driver on this node", error=describe(exc))
            else:
                log.warning("GPU metrics are off: NVML could not be initialised", error=describe(exc))
            return
        self._nvml = nvml
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            log.warning("GPU metrics are off: NVML could not count the GPUs", error=describe(exc))
            self.close()
            return
        handles: dict[int, Any] = {}

        def handle(index: int) -> Any:
            if index not in handles:
                handles[index] = nvml.nvmlDeviceGetHandleByIndex(index)
            return handles[index]

        def uuid_of(index: int) -> str | None:
            try:
                uuid = nvml.nvmlDeviceGetUUID(handle(index))
            except Exception as exc:
                log.warning("could not read a GPU's UUID", device=f"gpu{index}", error=describe(exc))
                return None
            return uuid.decode() if isinstance(uuid, bytes) else str(uuid)  # older pynvml returns bytes

        spec = None if all_gpus else environ.get("CUDA_VISIBLE_DEVICES")
        for index in visible_indices(spec, count, uuid_of):
            try:
                self._gpus.append(_Gpu(index, handle(index)))
            except Exception as exc:
                log.warning("skipping a GPU NVML cannot open", device=f"gpu{index}", error=describe(exc))
        if not self._gpus:
            if count == 0:
                log.info("GPU metrics are off: NVML sees no GPU on this node")
            elif spec is not None:
                log.info("GPU metrics are off: CUDA_VISIBLE_DEVICES hides every GPU", cuda_visible_devices=spec)
            self.close()
            return
        self.devices = [gpu.device for gpu in self._gpus]
        self._temperature_sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", self._temperature_sensor)
        self._sm_clock = getattr(nvml, "NVML_CLOCK_SM", self._sm_clock)

    def read(self, keys: list[str], devices: list[str], values: list[float]) -> None:
        gpus = self._gpus
        if not gpus:
            return
        nvml = self._nvml
        pid = self._pid
        system = self._system
        failed = self._failed
        key = keys.append
        dev = devices.append
        val = values.append
        refresh_limit = self._samples % LIMIT_EVERY_SAMPLES == 0
        self._samples += 1
        utilization = nvml.nvmlDeviceGetUtilizationRates
        memory = nvml.nvmlDeviceGetMemoryInfo
        power = nvml.nvmlDeviceGetPowerUsage
        limit = nvml.nvmlDeviceGetEnforcedPowerLimit
        temperature = nvml.nvmlDeviceGetTemperature
        clock = nvml.nvmlDeviceGetClockInfo
        sensor = self._temperature_sensor
        sm = self._sm_clock
        processes = nvml.nvmlDeviceGetComputeRunningProcesses if self._process else None
        # One try per call: a reading NVML refuses (e.g. power on some boards) must not cost the others.
        for gpu in gpus:
            h = gpu.handle
            d = gpu.device
            if system:
                try:
                    util = utilization(h).gpu
                except Exception as exc:
                    failed(hk.GPU_UTILIZATION_PERCENT, d, exc)
                else:
                    key(hk.GPU_UTILIZATION_PERCENT)
                    dev(d)
                    val(float(util))
                try:
                    mem = memory(h)
                    used, total = mem.used, mem.total
                except Exception as exc:
                    failed(hk.GPU_MEMORY_USED_BYTES, d, exc)
                else:
                    key(hk.GPU_MEMORY_USED_BYTES)
                    dev(d)
                    val(float(used))
                    key(hk.GPU_MEMORY_TOTAL_BYTES)
                    dev(d)
                    val(float(total))
                try:
                    milliwatts = power(h)
                except Exception as exc:
                    failed(hk.GPU_POWER_WATTS, d, exc)
                else:
                    key(hk.GPU_POWER_WATTS)
                    dev(d)
                    val(milliwatts / 1000.0)
                if refresh_limit:
                    try:
                        gpu.limit_w = limit(h) / 1000.0
                    except Exception as exc:
                        failed(hk.GPU_POWER_LIMIT_WATTS, d, exc)  # keeps reporting the last value read
                if gpu.limit_w is not None:
                    key(hk.GPU_POWER_LIMIT_WATTS)
                    dev(d)
                    val(gpu.limit_w)
                try:
                    celsius = temperature(h, sensor)
                except Exception as exc:
                    failed(hk.GPU_TEMPERATURE_C, d, exc)
                else:
                    key(hk.GPU_TEMPERATURE_C)
                    dev(d)
                    val(float(celsius))
                try:
                    mhz = clock(h, sm)
                except Exception as exc:
                    failed(hk.GPU_SM_CLOCK_MHZ, d, exc)
                else:
                    key(hk.GPU_SM_CLOCK_MHZ)
                    dev(d)
                    val(float(mhz))
            if processes is not None:
                try:
                    held = 0
                    for proc in processes(h):
                        if proc.pid == pid:
                            held += proc.usedGpuMemory or 0  # None when NVML cannot tell (e.g. Windows WDDM)
                except Exception as exc:
                    failed(hk.GPU_PROCESS_MEMORY_BYTES, d, exc)
                else:
                    key(hk.GPU_PROCESS_MEMORY_BYTES)
                    dev(d)
                    val(float(held))

    def _failed(self, key: str, device: str, exc: Exception) -> None:
        self._warn(
            ("gpu", key, device),
            "could not read a GPU metric; skipping it",
            key=key,
            device=device,
            error=describe(exc),
        )

    def close(self) -> None:
        """Shut NVML down (once); later reads return nothing."""
        nvml, self._nvml = self._nvml, None
        self._gpus = []
        if nvml is None:
            return
        try:
            nvml.nvmlShutdown()
        except Exception as exc:
            log.warning("NVML shutdown failed", error=describe(exc))
