"""Names of the hardware readings the SDK samples; the worker and the Grafana dashboards use the same names.

Host-wide readings carry the device label ``""``; GPU readings carry ``gpu<N>``, where N is the NVML
index (the index nvidia-smi shows on the node).
"""

from __future__ import annotations

from typing import Final

# CPU, in percent. The process figure is summed over cores, so it may exceed 100.
CPU_PERCENT: Final = "cpu.percent"
CPU_PROCESS_PERCENT: Final = "cpu.process_percent"

# Memory, in bytes.
MEMORY_USED_BYTES: Final = "memory.used_bytes"
MEMORY_AVAILABLE_BYTES: Final = "memory.available_bytes"
MEMORY_TOTAL_BYTES: Final = "memory.total_bytes"
MEMORY_PROCESS_RSS_BYTES: Final = "memory.process_rss_bytes"

# I/O rates over the interval since the previous sample; a sampler's first sample has none.
DISK_READ_BYTES_PER_S: Final = "disk.read_bytes_per_s"
DISK_WRITE_BYTES_PER_S: Final = "disk.write_bytes_per_s"
NET_SENT_BYTES_PER_S: Final = "net.sent_bytes_per_s"
NET_RECV_BYTES_PER_S: Final = "net.recv_bytes_per_s"

# Per GPU (device "gpu<N>").
GPU_UTILIZATION_PERCENT: Final = "gpu.utilization_percent"
GPU_MEMORY_USED_BYTES: Final = "gpu.memory_used_bytes"
GPU_MEMORY_TOTAL_BYTES: Final = "gpu.memory_total_bytes"
GPU_POWER_WATTS: Final = "gpu.power_watts"
GPU_POWER_LIMIT_WATTS: Final = "gpu.power_limit_watts"
GPU_TEMPERATURE_C: Final = "gpu.temperature_c"
GPU_SM_CLOCK_MHZ: Final = "gpu.sm_clock_mhz"
# GPU memory held by the sampled process on that GPU (0 when it holds none).
GPU_PROCESS_MEMORY_BYTES: Final = "gpu.process_memory_bytes"

HOST_KEYS: Final[tuple[str, ...]] = (
    CPU_PERCENT,
    CPU_PROCESS_PERCENT,
    MEMORY_USED_BYTES,
    MEMORY_AVAILABLE_BYTES,
    MEMORY_TOTAL_BYTES,
    MEMORY_PROCESS_RSS_BYTES,
    DISK_READ_BYTES_PER_S,
    DISK_WRITE_BYTES_PER_S,
    NET_SENT_BYTES_PER_S,
    NET_RECV_BYTES_PER_S,
)
GPU_KEYS: Final[tuple[str, ...]] = (
    GPU_UTILIZATION_PERCENT,
    GPU_MEMORY_USED_BYTES,
    GPU_MEMORY_TOTAL_BYTES,
    GPU_POWER_WATTS,
    GPU_POWER_LIMIT_WATTS,
    GPU_TEMPERATURE_C,
    GPU_SM_CLOCK_MHZ,
    GPU_PROCESS_MEMORY_BYTES,
)
ALL_KEYS: Final[tuple[str, ...]] = HOST_KEYS + GPU_KEYS
