"""Kafka topic names. Every topic is keyed by run id, so one run's events stay in order."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """Topic names under a common prefix (a prefix lets several pipelines share one cluster)."""

    prefix: str = "runstream."

    @property
    def runs(self) -> str:
        """Run lifecycle: start, update, end, heartbeat."""
        return f"{self.prefix}runs"

    @property
    def metrics(self) -> str:
        """Metric batches."""
        return f"{self.prefix}metrics"

    @property
    def hardware(self) -> str:
        """Hardware samples (CPU, RAM, disk, network, GPUs)."""
        return f"{self.prefix}hardware"

    def all(self) -> tuple[str, ...]:
        return (self.runs, self.metrics, self.hardware)
