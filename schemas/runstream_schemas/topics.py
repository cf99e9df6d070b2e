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

    @property
    def dead_letters(self) -> str:
        """Records the worker could not store, with the reason and source offset in headers."""
        return f"{self.prefix}dead-letters"

    def inputs(self) -> tuple[str, ...]:
        """Topics the worker consumes."""
        return (self.runs, self.metrics, self.hardware)

    def all(self) -> tuple[str, ...]:
        """Every topic of the pipeline (the worker creates them)."""
        return (*self.inputs(), self.dead_letters)
