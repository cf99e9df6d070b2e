"""Host readings through psutil: CPU, memory, disk and network rates, and the sampled process's CPU and RSS."""

from __future__ import annotations

from time import monotonic
from typing import Any

import psutil

from runstream.hardware._once import describe
from runstream_core import hardware_keys as hk
from runstream_core.errors import UsageError
from runstream_core.log import WarnOnce


def _cpu_busy_percent(before: Any, after: Any) -> float:
    """Busy share of CPU time between two ``psutil.cpu_times()`` readings, computed as psutil.cpu_percent does."""
    # Counters can step back (iowait does on Linux); like psutil, a field never contributes less than 0.
    delta = type(after)(*(max(0.0, b - a) for a, b in zip(before, after, strict=True)))
    # guest and guest_nice (Linux only) are already counted in user and nice.
    total: float = sum(delta) - getattr(delta, "guest", 0.0) - getattr(delta, "guest_nice", 0.0)
    if total <= 0:
        return 0.0
    busy: float = total - delta.idle - getattr(delta, "iowait", 0.0)
    return max(0.0, busy / total * 100.0)


class HostReader:
    """Appends host readings to a sample's columns; each group fails alone, warned once.

    System CPU keeps its own baseline rather than using ``psutil.cpu_percent``, whose baseline is shared
    with any other caller in the process (or kept per thread in recent psutil), so values stay right
    whichever thread samples.
    """

    def __init__(self, *, system: bool, process: bool, pid: int, warn: WarnOnce) -> None:
        self._system = system
        self._warn = warn
        self._proc: psutil.Process | None = None
        if process:
            try:
                self._proc = psutil.Process(pid)
                self._proc.cpu_percent(interval=None)  # primes it: the first sample then covers the time since
            except psutil.Error as exc:
                raise UsageError(f"cannot sample process {pid}: {describe(exc)}") from exc
        self._cpu_prev: Any = None
        if system:
            try:
                self._cpu_prev = psutil.cpu_times()
            except Exception as exc:
                warn("cpu", "could not read system CPU times; skipping cpu.percent", error=describe(exc))
        # (monotonic seconds, first counter, second counter) of the previous sample, for rates.
        self._disk_prev: tuple[float, int, int] | None = None
        self._net_prev: tuple[float, int, int] | None = None

    def read(self, keys: list[str], devices: list[str], values: list[float]) -> None:
        if self._system:
            self._read_cpu(keys, devices, values)
        proc = self._proc
        if proc is not None:
            try:
                cpu = proc.cpu_percent(interval=None)
                rss = proc.memory_info().rss
            except Exception as exc:
                self._warn("process", "could not read the process's CPU and memory; skipping them", error=describe(exc))
            else:
                keys += (hk.CPU_PROCESS_PERCENT, hk.MEMORY_PROCESS_RSS_BYTES)
                devices += ("", "")
                values += (float(cpu), float(rss))
        if self._system:
            self._read_memory(keys, devices, values)
            self._read_io(keys, devices, values)

    def _read_cpu(self, keys: list[str], devices: list[str], values: list[float]) -> None:
        try:
            now = psutil.cpu_times()
            before, self._cpu_prev = self._cpu_prev, now
            if before is None:
                return
            percent = _cpu_busy_percent(before, now)
        except Exception as exc:
            self._warn("cpu", "could not read system CPU times; skipping cpu.percent", error=describe(exc))
            return
        keys.append(hk.CPU_PERCENT)
        devices.append("")
        values.append(percent)

    def _read_memory(self, keys: list[str], devices: list[str], values: list[float]) -> None:
        try:
            vm = psutil.virtual_memory()
            used, available, total = float(vm.used), float(vm.available), float(vm.total)
        except Exception as exc:
            self._warn("memory", "could not read system memory; skipping it", error=describe(exc))
            return
        keys += (hk.MEMORY_USED_BYTES, hk.MEMORY_AVAILABLE_BYTES, hk.MEMORY_TOTAL_BYTES)
        devices += ("", "", "")
        values += (used, available, total)

    def _read_io(self, keys: list[str], devices: list[str], values: list[float]) -> None:
        try:
            disk = psutil.disk_io_counters()
            t_disk = monotonic()
            if disk is not None:  # None: no disks that psutil can see (some containers)
                disk_now = (t_disk, disk.read_bytes, disk.write_bytes)
                _append_rates(
                    self._disk_prev,
                    disk_now,
                    hk.DISK_READ_BYTES_PER_S,
                    hk.DISK_WRITE_BYTES_PER_S,
                    keys,
                    devices,
                    values,
                )
                self._disk_prev = disk_now
        except Exception as exc:
            self._warn("disk", "could not read disk I/O counters; skipping disk rates", error=describe(exc))
        try:
            net = psutil.net_io_counters()
            t_net = monotonic()
            if net is not None:
                net_now = (t_net, net.bytes_sent, net.bytes_recv)
                _append_rates(
                    self._net_prev, net_now, hk.NET_SENT_BYTES_PER_S, hk.NET_RECV_BYTES_PER_S, keys, devices, values
                )
                self._net_prev = net_now
        except Exception as exc:
            self._warn("net", "could not read network I/O counters; skipping network rates", error=describe(exc))


def _append_rates(
    prev: tuple[float, int, int] | None,
    now: tuple[float, int, int],
    first_key: str,
    second_key: str,
    keys: list[str],
    devices: list[str],
    values: list[float],
) -> None:
    """Append bytes/s of two counters since ``prev``; nothing on the first reading or if a counter went back."""
    if prev is None:
        return
    seconds = now[0] - prev[0]
    if seconds <= 0:
        return
    # A counter that went back (a disk or interface removed) gives no rate for this interval.
    first = now[1] - prev[1]
    if first >= 0:
        keys.append(first_key)
        devices.append("")
        values.append(first / seconds)
    second = now[2] - prev[2]
    if second >= 0:
        keys.append(second_key)
        devices.append("")
        values.append(second / seconds)
