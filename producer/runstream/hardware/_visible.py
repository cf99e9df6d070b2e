"""Which GPUs a process may use, read from ``CUDA_VISIBLE_DEVICES`` the way CUDA reads it.

Integer entries are taken as NVML indices. CUDA numbers devices fastest-first unless
``CUDA_DEVICE_ORDER=PCI_BUS_ID``; on nodes with one GPU model (the usual training node) both orders agree.
"""

from __future__ import annotations

from collections.abc import Callable

from runstream_core.log import get_logger

log = get_logger("runstream.hardware")

# Values that hide every GPU: CUDA's "-1" and empty string, and Slurm's marker for a job without GPUs.
_HIDE_ALL = frozenset({"", "-1", "NoDevFiles"})


def visible_indices(spec: str | None, count: int, uuid_of: Callable[[int], str | None]) -> list[int]:
    """NVML indices of the GPUs CUDA would expose under ``CUDA_VISIBLE_DEVICES=spec``, in index order.

    ``spec`` None (variable unset) exposes every device. ``uuid_of(i)`` gives device ``i``'s UUID
    (``GPU-...``) or None if it cannot be read; it is called only when the list names UUIDs.
    As in CUDA, the first invalid entry ends the list.
    """
    if spec is None:
        return list(range(count))
    if spec.strip() in _HIDE_ALL:
        return []
    chosen: list[int] = []
    uuids: list[str | None] | None = None
    mig_warned = False
    for raw in spec.split(","):
        entry = raw.strip()
        if entry.startswith("MIG-"):
            if not mig_warned:
                mig_warned = True
                log.warning("MIG devices in CUDA_VISIBLE_DEVICES are not sampled yet; skipping them", entry=entry)
            continue
        if entry.startswith("GPU-"):
            if uuids is None:
                uuids = [uuid_of(i) for i in range(count)]
            # CUDA accepts any unique prefix of a UUID.
            matches = [i for i, uuid in enumerate(uuids) if uuid is not None and uuid.startswith(entry)]
            if len(matches) != 1:
                log.warning(
                    "CUDA_VISIBLE_DEVICES names a GPU UUID that matches "
                    + ("no GPU" if not matches else "several GPUs")
                    + " on this node; it and the entries after it are ignored, as CUDA does",
                    entry=entry,
                )
                break
            index = matches[0]
        elif entry.isascii() and entry.isdigit():
            index = int(entry)
            if index >= count:
                log.warning(
                    "CUDA_VISIBLE_DEVICES names a GPU index this node does not have; "
                    "it and the entries after it are ignored, as CUDA does",
                    entry=entry,
                    gpu_count=count,
                )
                break
        elif entry.startswith("-") and entry[1:].isascii() and entry[1:].isdigit():
            break  # "-1" is the usual way to hide the devices after it; nothing to warn about
        else:
            log.warning(
                "CUDA_VISIBLE_DEVICES holds an entry that is neither an index nor a UUID; "
                "it and the entries after it are ignored, as CUDA does",
                entry=entry,
            )
            break
        if index not in chosen:
            chosen.append(index)
    return sorted(chosen)
