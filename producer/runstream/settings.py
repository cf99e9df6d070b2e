"""The SDK's settings: Kafka, the ClickHouse target (for ``runstream.query``), and the training job's own.

Read from ``RUNSTREAM_*`` env vars or a ``.env`` file. Explicit keyword arguments
(``runstream.init(..., settings=Settings(kafka_bootstrap=...))``) win over the environment, which wins
over the file, which wins over the defaults below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from runstream_core.settings import ClickHouseSettings, KafkaSettings, LoggingSettings


def _default_runs_dir() -> Path:
    return Path.home() / ".runstream" / "runs"


Mode = Literal["online", "offline", "disabled"]


class Settings(KafkaSettings, ClickHouseSettings, LoggingSettings):
    """runstream SDK configuration. Every field is read from the env var named in its description."""

    flush_interval_s: float = Field(default=0.5, gt=0, le=60)
    """How often the SDK's background thread sends buffered points (RUNSTREAM_FLUSH_INTERVAL_S)."""

    max_points_per_record: int = Field(default=4096, ge=1, le=100_000)
    """Metric points packed into one Kafka record (RUNSTREAM_MAX_POINTS_PER_RECORD)."""

    max_record_bytes: int = Field(default=900 * 1024, ge=64 * 1024)
    """Largest Kafka record the SDK sends (encoded bytes); bigger ones are split. Kafka refuses records over
    the broker's ``message.max.bytes`` (1 MiB by default, with its own overhead): raise this only with it
    (RUNSTREAM_MAX_RECORD_BYTES)."""

    wire_version: int = Field(default=2, ge=1, le=2)
    """Wire format of metric and hardware records (RUNSTREAM_WIRE_VERSION): 2 sends binary columns
    (``metric_columns``, ``hardware_columns``; docs/wire-format.md), 1 the list batches
    (``metric_batch``, ``hardware_batch``) that workers older than wire format v2 read; ``runstream
    sync`` then sends spooled v2 batches as lists too. A v2 worker reads both."""

    max_buffered_points: int = Field(default=2_000_000, ge=1000)
    """Bound on points held in SDK memory; beyond it points are refused and counted as
    ``overflow_points`` in the report ``finish()`` returns (RUNSTREAM_MAX_BUFFERED_POINTS)."""

    max_unsent_bytes: int = Field(default=32 * 1024 * 1024, ge=64 * 1024)
    """Bytes of encoded records the SDK keeps in memory for Kafka (waiting or in flight); past it
    (Kafka down or slow) records wait only in the on-disk spool (RUNSTREAM_MAX_UNSENT_BYTES)."""

    mode: Mode = "online"
    """``online`` sends to Kafka; ``offline`` only writes the spool, for ``runstream sync`` later;
    ``disabled`` makes every call a no-op (RUNSTREAM_MODE). ``init(mode=...)`` overrides it."""

    runs_dir: Path = Field(default_factory=_default_runs_dir)
    """Where each run keeps its spool and state, in ``<runs_dir>/<run_id>/`` (RUNSTREAM_RUNS_DIR)."""

    spool_segment_bytes: int = Field(default=8 * 1024 * 1024, ge=4096)
    """Size at which the spool starts a new segment file (RUNSTREAM_SPOOL_SEGMENT_BYTES)."""

    team: str = "default"
    """Team of runs started through ``runstream.wandb`` without an ``entity`` and through the MLflow
    store when the tracking URI names none, and of the framework integrations (``runstream.integrations``)
    when given none (RUNSTREAM_TEAM). ``runstream.init()`` always takes one."""

    project: str | None = None
    """Project for runs started without one, as ``team`` above (RUNSTREAM_PROJECT)."""

    run_id: str | None = None
    """Run id for ``init()`` when none is passed, e.g. shared by every rank of a job (RUNSTREAM_RUN_ID)."""

    hardware_interval_s: float = Field(default=10.0, ge=0, le=3600)
    """Seconds between hardware samples; 0 turns the sampler off, otherwise at least 0.5
    (RUNSTREAM_HARDWARE_INTERVAL_S)."""

    hardware_all_gpus: bool = False
    """Report every GPU of the node instead of those in CUDA_VISIBLE_DEVICES (RUNSTREAM_HARDWARE_ALL_GPUS)."""

    handle_sigterm: bool = True
    """On SIGTERM, mark the run killed and flush it, then pass the signal on (RUNSTREAM_HANDLE_SIGTERM)."""

    heartbeat_interval_s: float = Field(default=30.0, gt=0)
    """Interval of run heartbeats (RUNSTREAM_HEARTBEAT_INTERVAL_S)."""

    finish_timeout_s: float = Field(default=60.0, ge=0)
    """Longest wait in ``Run.finish()`` for buffered events to be delivered (RUNSTREAM_FINISH_TIMEOUT_S)."""

    @field_validator("hardware_interval_s")
    @classmethod
    def _sampler_floor(cls, value: float) -> float:
        if 0 < value < 0.5:
            raise ValueError("hardware_interval_s must be 0 (off) or at least 0.5 seconds")
        return value
