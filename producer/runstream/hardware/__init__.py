"""Hardware sampling for runs: host CPU, memory, disk and network through psutil, GPUs through NVML.

:class:`HardwareSampler` samples on a daemon thread and hands each :class:`HardwareSample` to a
callback; key names are listed in :mod:`runstream_core.hardware_keys`.
"""

from runstream.hardware._sample import HardwareSample
from runstream.hardware._sampler import HardwareSampler

__all__ = ["HardwareSample", "HardwareSampler"]
