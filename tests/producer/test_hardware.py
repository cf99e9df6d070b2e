"""The hardware sampler against a stand-in NVML and stubbed psutil counters: values, GPU selection, failures, thread."""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections import namedtuple
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from runstream.hardware import HardwareSample, HardwareSampler, _gpu, _host
from runstream_core import hardware_keys as hk
from runstream_core.errors import UsageError
from tests.producer.fake_nvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_NOT_SUPPORTED,
    FakeGpu,
    FakeNvml,
    FakeProcess,
)

ME = os.getpid()
OTHER = ME + 1
RATE_KEYS = {hk.DISK_READ_BYTES_PER_S, hk.DISK_WRITE_BYTES_PER_S, hk.NET_SENT_BYTES_PER_S, hk.NET_RECV_BYTES_PER_S}
HOST_DEVICE_KEYS = {hk.CPU_PERCENT, hk.MEMORY_USED_BYTES, hk.MEMORY_AVAILABLE_BYTES, hk.MEMORY_TOTAL_BYTES}
PROCESS_KEYS = {hk.CPU_PROCESS_PERCENT, hk.MEMORY_PROCESS_RSS_BYTES}


def two_gpus() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(
                uuid="GPU-aaa11111-0000-0000-0000-000000000000",
                util=37,
                memory_used=4_000_000_000,
                memory_total=80_000_000_000,
                power_mw=123_456,
                limit_mw=700_000,
                temp_c=51,
                sm_clock_mhz=1980,
                processes=[FakeProcess(ME, 1_000), FakeProcess(OTHER, 9_999), FakeProcess(ME, None)],
            ),
            FakeGpu(
                uuid="GPU-bbb22222-0000-0000-0000-000000000000",
                util=100,
                memory_used=79_000_000_000,
                memory_total=80_000_000_000,
                power_mw=250_000,
                limit_mw=400_000,
                temp_c=77,
                sm_clock_mhz=1410,
                processes=[FakeProcess(OTHER, 5_000)],
            ),
        ]
    )


def three_gpus() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(uuid="GPU-aaa11111-0000-0000-0000-000000000000"),
            FakeGpu(uuid="GPU-bbb22222-0000-0000-0000-000000000000"),
            FakeGpu(uuid="GPU-aaa33333-0000-0000-0000-000000000000"),
        ]
    )


def sampler(nvml: Any = None, environ: dict[str, str] | None = None, **kwargs: Any) -> HardwareSampler:
    return HardwareSampler(1.0, lambda sample: None, nvml=nvml, environ={} if environ is None else environ, **kwargs)


def readings(sample: HardwareSample) -> dict[tuple[str, str], float]:
    assert len(sample.keys) == len(sample.devices) == len(sample.values)
    pairs = list(zip(sample.keys, sample.devices, strict=True))
    assert len(set(pairs)) == len(pairs), "a (key, device) twice in one sample"
    return {pair: value for pair, value in zip(pairs, sample.values, strict=True)}


def gpu_readings(sample: HardwareSample) -> dict[tuple[str, str], float]:
    return {pair: value for pair, value in readings(sample).items() if pair[1]}


def hardware_records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "runstream.hardware" and r.levelno == level]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="runstream.hardware")
    return caplog


# --- GPU readings -----------------------------------------------------------------------------------------------


def test_two_gpus_give_every_gpu_key_with_exact_values() -> None:
    hw = sampler(two_gpus())
    assert hw.gpu_devices == ["gpu0", "gpu1"]
    sample = hw.sample()
    assert gpu_readings(sample) == {
        (hk.GPU_UTILIZATION_PERCENT, "gpu0"): 37.0,
        (hk.GPU_MEMORY_USED_BYTES, "gpu0"): 4e9,
        (hk.GPU_MEMORY_TOTAL_BYTES, "gpu0"): 80e9,
        (hk.GPU_POWER_WATTS, "gpu0"): 123.456,
        (hk.GPU_POWER_LIMIT_WATTS, "gpu0"): 700.0,
        (hk.GPU_TEMPERATURE_C, "gpu0"): 51.0,
        (hk.GPU_SM_CLOCK_MHZ, "gpu0"): 1980.0,
        (hk.GPU_PROCESS_MEMORY_BYTES, "gpu0"): 1000.0,  # ours only; None counts as 0
        (hk.GPU_UTILIZATION_PERCENT, "gpu1"): 100.0,
        (hk.GPU_MEMORY_USED_BYTES, "gpu1"): 79e9,
        (hk.GPU_MEMORY_TOTAL_BYTES, "gpu1"): 80e9,
        (hk.GPU_POWER_WATTS, "gpu1"): 250.0,
        (hk.GPU_POWER_LIMIT_WATTS, "gpu1"): 400.0,
        (hk.GPU_TEMPERATURE_C, "gpu1"): 77.0,
        (hk.GPU_SM_CLOCK_MHZ, "gpu1"): 1410.0,
        (hk.GPU_PROCESS_MEMORY_BYTES, "gpu1"): 0.0,  # another process's memory is not ours
    }
    assert all(type(value) is float for value in sample.values)
    assert set(sample.keys) <= set(hk.ALL_KEYS)


def test_sample_carries_wall_clock_time_and_configured_interval() -> None:
    hw = HardwareSampler(1.5, lambda sample: None, nvml=two_gpus(), environ={})
    before = time.time() * 1000
    sample = hw.sample()
    assert before - 1 <= sample.ts_ms <= time.time() * 1000 + 1
    assert sample.interval_ms == 1500


def test_process_memory_follows_the_given_pid() -> None:
    parent = os.getppid()  # a process that exists and that we may inspect
    nvml = two_gpus()
    nvml.gpus[0].processes.append(FakeProcess(parent, 2_000))
    nvml.gpus[1].processes.append(FakeProcess(parent, 3_000))
    hw = sampler(nvml, pid=parent, system=False)
    assert gpu_readings(hw.sample()) == {
        (hk.GPU_PROCESS_MEMORY_BYTES, "gpu0"): 2000.0,
        (hk.GPU_PROCESS_MEMORY_BYTES, "gpu1"): 3000.0,
    }


def test_power_limit_is_cached_and_reread_every_60_samples() -> None:
    nvml = two_gpus()
    hw = sampler(nvml)
    for _ in range(60):
        assert gpu_readings(hw.sample())[(hk.GPU_POWER_LIMIT_WATTS, "gpu1")] == 400.0
    assert nvml.calls["nvmlDeviceGetEnforcedPowerLimit"] == 2  # once per GPU
    nvml.gpus[1].limit_mw = 300_000
    assert gpu_readings(hw.sample())[(hk.GPU_POWER_LIMIT_WATTS, "gpu1")] == 300.0
    assert nvml.calls["nvmlDeviceGetEnforcedPowerLimit"] == 4
    assert nvml.calls["nvmlDeviceGetPowerUsage"] == 122  # live readings are read every time


def test_handles_are_fetched_once() -> None:
    nvml = two_gpus()
    hw = sampler(nvml)
    for _ in range(3):
        hw.sample()
    assert nvml.calls["nvmlDeviceGetHandleByIndex"] == 2


# --- GPU selection ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("visible", "devices"),
    [
        ("1", ["gpu1"]),
        ("2,0", ["gpu0", "gpu2"]),
        (" 0 , 2 ", ["gpu0", "gpu2"]),
        ("1,1", ["gpu1"]),
        ("GPU-bbb", ["gpu1"]),
        ("GPU-aaa33333-0000-0000-0000-000000000000", ["gpu2"]),
        ("GPU-aaa3,0", ["gpu0", "gpu2"]),
        ("", []),
        ("-1", []),
        ("NoDevFiles", []),
        ("0,-1,2", ["gpu0"]),  # as in CUDA, an invalid entry ends the list
    ],
)
def test_cuda_visible_devices_selects_gpus(visible: str, devices: list[str], logs: pytest.LogCaptureFixture) -> None:
    hw = sampler(three_gpus(), {"CUDA_VISIBLE_DEVICES": visible})
    assert hw.gpu_devices == devices
    assert sorted({device for _, device in gpu_readings(hw.sample())}) == devices
    assert hardware_records(logs, logging.WARNING) == []


def test_no_visible_gpu_gives_no_gpu_keys_and_releases_nvml(logs: pytest.LogCaptureFixture) -> None:
    nvml = three_gpus()
    hw = sampler(nvml, {"CUDA_VISIBLE_DEVICES": ""})
    sample = hw.sample()
    assert gpu_readings(sample) == {}
    assert set(sample.keys) >= HOST_DEVICE_KEYS
    assert nvml.initialised == 0
    assert any("hides every GPU" in m for m in hardware_records(logs, logging.INFO))


@pytest.mark.parametrize(
    ("visible", "devices", "warning"),
    [
        ("0,7", ["gpu0"], "index this node does not have"),
        ("7,0", [], "index this node does not have"),
        ("GPU-aaa", [], "matches several GPUs"),
        ("1,GPU-ccc,0", ["gpu1"], "matches no GPU"),
        ("1,gpu0,0", ["gpu1"], "neither an index nor a UUID"),
        ("MIG-4f1c2d3e-0000-0000-0000-000000000000,1", ["gpu1"], "MIG devices"),
    ],
)
def test_bad_cuda_visible_devices_entries_warn(
    visible: str, devices: list[str], warning: str, logs: pytest.LogCaptureFixture
) -> None:
    hw = sampler(three_gpus(), {"CUDA_VISIBLE_DEVICES": visible})
    assert hw.gpu_devices == devices
    for _ in range(3):
        hw.sample()
    warnings = hardware_records(logs, logging.WARNING)
    assert len(warnings) == 1
    assert warning in warnings[0]


def test_two_mig_entries_warn_once(logs: pytest.LogCaptureFixture) -> None:
    hw = sampler(three_gpus(), {"CUDA_VISIBLE_DEVICES": "MIG-aaa,MIG-bbb,2"})
    assert hw.gpu_devices == ["gpu2"]
    assert len(hardware_records(logs, logging.WARNING)) == 1


def test_all_gpus_ignores_cuda_visible_devices() -> None:
    hw = sampler(three_gpus(), {"CUDA_VISIBLE_DEVICES": "1"}, all_gpus=True)
    assert hw.gpu_devices == ["gpu0", "gpu1", "gpu2"]


def test_cuda_visible_devices_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    hw = HardwareSampler(1.0, lambda sample: None, nvml=three_gpus())
    assert hw.gpu_devices == ["gpu2"]


# --- NVML missing or failing --------------------------------------------------------------------------------------


def assert_host_only(samples: list[HardwareSample]) -> None:
    for sample in samples:
        assert gpu_readings(sample) == {}
        assert set(sample.keys) >= HOST_DEVICE_KEYS | PROCESS_KEYS


def test_nvml_init_failure_warns_once_and_host_sampling_goes_on(logs: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml([FakeGpu()], init_error=999)
    hw = sampler(nvml)
    assert hw.gpu_devices == []
    assert_host_only([hw.sample() for _ in range(3)])
    warnings = hardware_records(logs, logging.WARNING)
    assert len(warnings) == 1
    assert "NVML could not be initialised" in warnings[0]
    hw.stop()
    assert nvml.calls["nvmlShutdown"] == 0  # never initialised, so nothing to shut down


def test_no_driver_is_info_not_warning(logs: pytest.LogCaptureFixture) -> None:
    hw = sampler(FakeNvml([FakeGpu()], init_error=NVML_ERROR_DRIVER_NOT_LOADED))
    assert_host_only([hw.sample() for _ in range(2)])
    assert hardware_records(logs, logging.WARNING) == []
    assert any("no NVIDIA driver" in m for m in hardware_records(logs, logging.INFO))


def test_zero_gpus_is_info(logs: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml([])
    hw = sampler(nvml)
    assert_host_only([hw.sample()])
    assert hardware_records(logs, logging.WARNING) == []
    assert any("no GPU" in m for m in hardware_records(logs, logging.INFO))
    assert nvml.initialised == 0


def test_missing_pynvml_warns_once_where_a_driver_is_present(
    monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    monkeypatch.setattr(_gpu, "nvidia_driver_present", lambda: True)
    hw = sampler(None)
    assert_host_only([hw.sample() for _ in range(3)])
    warnings = hardware_records(logs, logging.WARNING)
    assert len(warnings) == 1
    assert "nvidia-ml-py" in warnings[0]


def test_missing_pynvml_without_a_driver_is_info(
    monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setattr(_gpu, "nvidia_driver_present", lambda: False)
    hw = sampler(None)
    assert_host_only([hw.sample()])
    assert hardware_records(logs, logging.WARNING) == []
    assert len(hardware_records(logs, logging.INFO)) == 1


def test_pynvml_is_imported_when_no_module_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = two_gpus()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    hw = sampler(None)
    assert hw.gpu_devices == ["gpu0", "gpu1"]
    assert gpu_readings(hw.sample())[(hk.GPU_POWER_WATTS, "gpu1")] == 250.0


def test_nvml_is_not_touched_without_system_or_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    nvml = two_gpus()
    hw = sampler(nvml, system=False, process=False)
    assert hw.sample().keys == []
    assert hw.gpu_devices == []
    assert sum(nvml.calls.values()) == 0


def test_one_failing_gpu_call_skips_only_that_reading_and_warns_once(logs: pytest.LogCaptureFixture) -> None:
    nvml = two_gpus()
    nvml.fail("nvmlDeviceGetPowerUsage", 0, NVML_ERROR_NOT_SUPPORTED)
    hw = sampler(nvml)
    samples = [hw.sample() for _ in range(5)]
    for sample in samples:
        got = gpu_readings(sample)
        assert (hk.GPU_POWER_WATTS, "gpu0") not in got
        assert {key for key, device in got if device == "gpu0"} == set(hk.GPU_KEYS) - {hk.GPU_POWER_WATTS}
        assert {key for key, device in got if device == "gpu1"} == set(hk.GPU_KEYS)
        assert got[(hk.GPU_POWER_WATTS, "gpu1")] == 250.0
        assert set(sample.keys) >= HOST_DEVICE_KEYS
    warnings = hardware_records(logs, logging.WARNING)
    assert len(warnings) == 1
    assert hk.GPU_POWER_WATTS in warnings[0]
    assert "gpu0" in warnings[0]
    assert "Not Supported" in warnings[0]


def test_failures_warn_once_per_key_and_device(logs: pytest.LogCaptureFixture) -> None:
    nvml = two_gpus()
    nvml.fail("nvmlDeviceGetTemperature")  # every GPU
    nvml.fail("nvmlDeviceGetComputeRunningProcesses", 1)
    hw = sampler(nvml)
    for _ in range(4):
        got = gpu_readings(hw.sample())
        assert not any(key == hk.GPU_TEMPERATURE_C for key, _ in got)
        assert (hk.GPU_PROCESS_MEMORY_BYTES, "gpu0") in got
        assert (hk.GPU_PROCESS_MEMORY_BYTES, "gpu1") not in got
    assert len(hardware_records(logs, logging.WARNING)) == 3


def test_failed_power_limit_read_keeps_the_last_value() -> None:
    nvml = two_gpus()
    hw = sampler(nvml)
    for _ in range(60):
        hw.sample()
    nvml.fail("nvmlDeviceGetEnforcedPowerLimit", 0)
    assert gpu_readings(hw.sample())[(hk.GPU_POWER_LIMIT_WATTS, "gpu0")] == 700.0


def test_a_gpu_nvml_cannot_open_is_skipped(logs: pytest.LogCaptureFixture) -> None:
    nvml = two_gpus()
    nvml.fail("nvmlDeviceGetHandleByIndex", 0)
    hw = sampler(nvml)
    assert hw.gpu_devices == ["gpu1"]
    assert {device for _, device in gpu_readings(hw.sample())} == {"gpu1"}
    assert len(hardware_records(logs, logging.WARNING)) == 1


# --- host readings ------------------------------------------------------------------------------------------------

Times = namedtuple("Times", "user nice system idle iowait guest")
Disk = namedtuple("Disk", "read_bytes write_bytes")
Net = namedtuple("Net", "bytes_sent bytes_recv")


class Counters:
    """Stubbed psutil counters and clock, set per sample by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 100.0
        self.disk: Disk | None = Disk(1_000, 50_000)
        self.net: Net | None = Net(7_000, 10_000)
        monkeypatch.setattr(_host, "monotonic", lambda: self.now)
        monkeypatch.setattr(psutil, "disk_io_counters", lambda: self.disk)
        monkeypatch.setattr(psutil, "net_io_counters", lambda: self.net)


def test_rates_come_from_the_second_sample_on(monkeypatch: pytest.MonkeyPatch) -> None:
    counters = Counters(monkeypatch)
    hw = sampler(FakeNvml([]), process=False)
    first = hw.sample()
    assert not RATE_KEYS & set(first.keys)
    counters.now = 102.0
    counters.disk = Disk(3_000, 60_000)
    counters.net = Net(7_500, 14_000)
    second = readings(hw.sample())
    assert {pair: value for pair, value in second.items() if pair[0] in RATE_KEYS} == {
        (hk.DISK_READ_BYTES_PER_S, ""): 1000.0,
        (hk.DISK_WRITE_BYTES_PER_S, ""): 5000.0,
        (hk.NET_SENT_BYTES_PER_S, ""): 250.0,
        (hk.NET_RECV_BYTES_PER_S, ""): 2000.0,
    }
    # A counter that went back (a disk removed) gives no rate for that interval; the others stay.
    counters.now = 104.0
    counters.disk = Disk(2_000, 64_000)
    third = readings(hw.sample())
    assert (hk.DISK_READ_BYTES_PER_S, "") not in third
    assert third[(hk.DISK_WRITE_BYTES_PER_S, "")] == 2000.0
    assert third[(hk.NET_SENT_BYTES_PER_S, "")] == 0.0


def test_missing_io_counters_omit_their_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    counters = Counters(monkeypatch)
    counters.disk = None
    hw = sampler(FakeNvml([]), process=False)
    hw.sample()
    counters.now = 101.0
    keys = set(hw.sample().keys)
    assert {hk.NET_SENT_BYTES_PER_S, hk.NET_RECV_BYTES_PER_S} <= keys
    assert not {hk.DISK_READ_BYTES_PER_S, hk.DISK_WRITE_BYTES_PER_S} & keys


def test_system_cpu_and_memory_values(monkeypatch: pytest.MonkeyPatch) -> None:
    times = iter(
        [
            Times(user=10, nice=0, system=5, idle=80, iowait=5, guest=0),  # primed at init
            # user +30 (10 of it guest time, counted in user already), system +10, idle +40, iowait back by 2
            Times(user=40, nice=0, system=15, idle=120, iowait=3, guest=10),
        ]
    )
    monkeypatch.setattr(psutil, "cpu_times", lambda: next(times))
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(used=3e9, available=5e9, total=8e9))
    hw = sampler(FakeNvml([]), process=False)
    got = readings(hw.sample())
    assert got[(hk.CPU_PERCENT, "")] == 50.0  # busy 40 of 80
    assert got[(hk.MEMORY_USED_BYTES, "")] == 3e9
    assert got[(hk.MEMORY_AVAILABLE_BYTES, "")] == 5e9
    assert got[(hk.MEMORY_TOTAL_BYTES, "")] == 8e9


def test_process_readings_are_of_this_process() -> None:
    got = readings(sampler(FakeNvml([]), system=False).sample())
    assert set(got) == {(hk.CPU_PROCESS_PERCENT, ""), (hk.MEMORY_PROCESS_RSS_BYTES, "")}
    assert got[(hk.MEMORY_PROCESS_RSS_BYTES, "")] > 1_000_000  # a Python interpreter's RSS, at the least
    assert got[(hk.CPU_PROCESS_PERCENT, "")] >= 0.0


def test_a_failing_host_group_warns_once_and_the_rest_stays(
    monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise OSError("no /proc/meminfo")

    monkeypatch.setattr(psutil, "virtual_memory", broken)
    hw = sampler(two_gpus())
    for _ in range(3):
        keys = set(hw.sample().keys)
        assert not {hk.MEMORY_USED_BYTES, hk.MEMORY_AVAILABLE_BYTES, hk.MEMORY_TOTAL_BYTES} & keys
        assert {hk.CPU_PERCENT, hk.GPU_POWER_WATTS} | PROCESS_KEYS <= keys
    warnings = hardware_records(logs, logging.WARNING)
    assert len(warnings) == 1
    assert "no /proc/meminfo" in warnings[0]


# --- system / process switches ------------------------------------------------------------------------------------


def test_system_false_samples_only_the_process() -> None:
    nvml = two_gpus()
    hw = sampler(nvml, system=False)
    got = readings(hw.sample())
    assert set(got) == {
        (hk.CPU_PROCESS_PERCENT, ""),
        (hk.MEMORY_PROCESS_RSS_BYTES, ""),
        (hk.GPU_PROCESS_MEMORY_BYTES, "gpu0"),
        (hk.GPU_PROCESS_MEMORY_BYTES, "gpu1"),
    }
    assert gpu_readings(hw.sample()) == {
        (hk.GPU_PROCESS_MEMORY_BYTES, "gpu0"): 1000.0,
        (hk.GPU_PROCESS_MEMORY_BYTES, "gpu1"): 0.0,
    }
    device_calls = {name for name in nvml.calls if name.startswith("nvmlDeviceGet")}
    assert device_calls == {"nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetComputeRunningProcesses"}


def test_process_false_skips_process_readings() -> None:
    nvml = two_gpus()
    hw = sampler(nvml, process=False)
    sample = hw.sample()
    assert not PROCESS_KEYS & set(sample.keys)
    assert set(sample.keys) >= HOST_DEVICE_KEYS
    got = gpu_readings(sample)
    assert {key for key, _ in got} == set(hk.GPU_KEYS) - {hk.GPU_PROCESS_MEMORY_BYTES}
    assert nvml.calls["nvmlDeviceGetComputeRunningProcesses"] == 0


# --- arguments ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("interval", [0.0, 0.49, 3600.5, -1.0, math.nan, math.inf, "fast", None])
def test_interval_out_of_bounds_is_a_usage_error(interval: Any) -> None:
    with pytest.raises(UsageError, match="interval_s"):
        HardwareSampler(interval, lambda sample: None, nvml=FakeNvml([]), environ={})


@pytest.mark.parametrize("interval", [0.5, 3600, 10])
def test_interval_bounds_are_inclusive(interval: float) -> None:
    hw = HardwareSampler(interval, lambda sample: None, nvml=FakeNvml([]), environ={})
    assert hw.sample().interval_ms == round(interval * 1000)


def test_a_pid_that_does_not_exist_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="999999999"):
        sampler(FakeNvml([]), pid=999_999_999)


# --- thread -------------------------------------------------------------------------------------------------------


class Collector:
    def __init__(self, raise_every_time: bool = False) -> None:
        self.samples: list[HardwareSample] = []
        self.threads: set[str] = set()
        self.raise_every_time = raise_every_time
        self.got = threading.Condition()

    def __call__(self, sample: HardwareSample) -> None:
        with self.got:
            self.samples.append(sample)
            self.threads.add(threading.current_thread().name)
            self.got.notify_all()
        if self.raise_every_time:
            raise RuntimeError("sink is down")

    def wait_for(self, n: int, timeout: float = 5.0) -> bool:
        with self.got:
            return self.got.wait_for(lambda: len(self.samples) >= n, timeout)


def test_thread_samples_at_once_and_stops_promptly_and_idempotently() -> None:
    nvml = two_gpus()
    emit = Collector()
    hw = HardwareSampler(3600, emit, nvml=nvml, environ={})
    hw.start()
    hw.start()  # no second thread
    assert emit.wait_for(1)
    assert emit.threads == {"runstream-hardware"}
    assert sum(t.name == "runstream-hardware" for t in threading.enumerate()) == 1
    started = time.monotonic()
    hw.stop()
    assert time.monotonic() - started < 1.0  # woken, not left to sleep out the hour
    hw.stop()
    assert not any(t.name == "runstream-hardware" for t in threading.enumerate())
    assert len(emit.samples) == 1
    assert nvml.calls["nvmlShutdown"] == 1
    assert nvml.initialised == 0
    assert gpu_readings(hw.sample()) == {}  # NVML released
    hw.start()  # a stopped sampler stays stopped
    assert not any(t.name == "runstream-hardware" for t in threading.enumerate())


def test_thread_keeps_its_interval() -> None:
    emit = Collector()
    hw = HardwareSampler(0.5, emit, nvml=FakeNvml([]), environ={})
    hw.start()
    try:
        assert emit.wait_for(3, timeout=5.0)
    finally:
        hw.stop()
    # Fixed-rate slots: three samples span two intervals, give or take scheduling delays.
    span = emit.samples[2].ts_ms - emit.samples[0].ts_ms
    assert 900 <= span <= 1600, span


def test_an_emit_that_raises_does_not_kill_the_thread(logs: pytest.LogCaptureFixture) -> None:
    emit = Collector(raise_every_time=True)
    hw = HardwareSampler(0.5, emit, nvml=FakeNvml([]), environ={})
    hw.start()
    try:
        assert emit.wait_for(3, timeout=5.0)
    finally:
        hw.stop()
    warnings = hardware_records(logs, logging.WARNING)
    assert len(warnings) == 1
    assert "sink is down" in warnings[0]


def test_a_sample_that_raises_does_not_kill_the_thread(
    monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    emit = Collector()
    hw = HardwareSampler(0.5, emit, nvml=FakeNvml([]), environ={})
    calls = 0
    real = hw.sample

    def flaky() -> HardwareSample:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return real()

    monkeypatch.setattr(hw, "sample", flaky)
    hw.start()
    try:
        assert emit.wait_for(1, timeout=5.0)
    finally:
        hw.stop()
    assert len(hardware_records(logs, logging.WARNING)) == 1


def test_stop_from_inside_emit_does_not_deadlock() -> None:
    nvml = two_gpus()
    done = threading.Event()

    def emit(sample: HardwareSample) -> None:
        hw.stop()
        done.set()

    hw = HardwareSampler(0.5, emit, nvml=nvml, environ={})
    hw.start()
    assert done.wait(5.0)
    hw.stop()
    assert nvml.calls["nvmlShutdown"] == 1


def test_stop_without_start_releases_nvml() -> None:
    nvml = two_gpus()
    hw = sampler(nvml)
    hw.stop()
    hw.stop()
    assert nvml.calls["nvmlShutdown"] == 1
    assert nvml.initialised == 0
