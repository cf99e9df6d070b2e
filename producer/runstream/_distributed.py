"""Where this process sits in a distributed job, read from the launcher's environment.

torchrun / torch.distributed (RANK, LOCAL_RANK, WORLD_SIZE, GROUP_RANK), Slurm (SLURM_PROCID,
SLURM_LOCALID, SLURM_NTASKS, SLURM_NODEID) and Open MPI (OMPI_COMM_WORLD_*) are recognised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

MAX_WORLD_SIZE = 1_000_000
"""The most processes a run's events may name (``RunInfo.world_size`` and ``rank`` in the event schema)."""


@dataclass(frozen=True)
class Distributed:
    """This process's place in its job. A single-process run is rank 0 of 1."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    node_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


_LAUNCHERS = (
    # (rank, local rank, world size, node rank)
    ("RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_NODE_RANK"),
    ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS", "SLURM_NODEID"),
)


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(environ.get(name, default))
    except ValueError:
        return default


def detect(environ: Mapping[str, str]) -> Distributed:
    """The first launcher whose variables are set decides; none set means a single process."""
    for rank_var, local_var, size_var, node_var in _LAUNCHERS:
        if rank_var in environ and size_var in environ:
            world_size = min(max(1, _int(environ, size_var, 1)), MAX_WORLD_SIZE)
            rank = min(max(0, _int(environ, rank_var, 0)), world_size - 1)
            return Distributed(
                rank=rank,
                local_rank=max(0, _int(environ, local_var, 0)),
                world_size=world_size,
                node_rank=max(0, _int(environ, node_var, 0)),
            )
    return Distributed()


def shared_run_id(environ: Mapping[str, str], team: str, project: str) -> str | None:
    """A run id every rank of one job computes alike, from the launcher's job id; None if there is none."""
    elastic = environ.get("TORCHELASTIC_RUN_ID", "")
    if elastic and elastic != "none":
        source = f"torchelastic:{elastic}"
    elif "SLURM_JOB_ID" in environ:
        source = f"slurm:{environ['SLURM_JOB_ID']}.{environ.get('SLURM_STEP_ID', '')}"
    else:  # MASTER_ADDR:MASTER_PORT is reused by job after job: not an id
        return None
    return hashlib.sha256(f"{team}/{project}/{source}".encode()).hexdigest()[:32]
