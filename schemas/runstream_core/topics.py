"""The pipeline's Kafka topics, as one table: name, spool code, and the events each may carry.

Every topic is keyed by run id, so one run's events stay in order. A prefix lets several pipelines
share one cluster. The code is what the SDK's spool writes on disk next to each record, so it never
changes for a topic.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from runstream_core.events import (
    Event,
    HardwareBatch,
    HardwareColumns,
    Heartbeat,
    MetricBatch,
    MetricColumns,
    RunAlert,
    RunEnd,
    RunStart,
    RunUpdate,
)


class TopicCode(enum.IntEnum):
    """A producer topic's code in the spool."""

    RUNS = 1
    METRICS = 2
    HARDWARE = 3


@dataclass(frozen=True)
class Topic:
    suffix: str
    """The name after the prefix."""
    code: TopicCode | None
    """Its spool code; None for the dead-letter topic, which only the worker writes."""
    events: tuple[type[Event], ...]
    """The event kinds a record on it may hold; anything else is a dead letter."""
    about: str


RUNS = Topic(
    "runs", TopicCode.RUNS, (RunStart, RunUpdate, RunEnd, Heartbeat, RunAlert), "run lifecycle, heartbeats and alerts"
)
METRICS = Topic("metrics", TopicCode.METRICS, (MetricBatch, MetricColumns), "metric batches (v1 lists or v2 columns)")
HARDWARE = Topic(
    "hardware",
    TopicCode.HARDWARE,
    (HardwareBatch, HardwareColumns),
    "hardware samples (CPU, RAM, disk, network, GPUs; v1 lists or v2 columns)",
)
DEAD_LETTERS = Topic(
    "dead-letters", None, (), "records the worker could not store, with the reason and source offset in headers"
)
ALERT_RULES = Topic(
    "alert-rules",
    None,
    (),
    "each team's applied alert rules (JSON, keyed by team, compacted); written by `runstream alerts apply`",
)
TOPICS: tuple[Topic, ...] = (RUNS, METRICS, HARDWARE, DEAD_LETTERS, ALERT_RULES)
INPUTS: tuple[Topic, ...] = (RUNS, METRICS, HARDWARE)
_BY_CODE = {topic.code: topic for topic in TOPICS if topic.code is not None}


@dataclass(frozen=True)
class Topics:
    """The topic names under one prefix."""

    prefix: str = "runstream."

    def name(self, topic: Topic) -> str:
        return f"{self.prefix}{topic.suffix}"

    def of_code(self, code: TopicCode) -> str:
        return self.name(_BY_CODE[code])

    def find(self, name: str) -> Topic | None:
        """The topic a full name belongs to, if it is one of this prefix's."""
        return next((t for t in TOPICS if self.name(t) == name), None)

    @property
    def runs(self) -> str:
        return self.name(RUNS)

    @property
    def metrics(self) -> str:
        return self.name(METRICS)

    @property
    def hardware(self) -> str:
        return self.name(HARDWARE)

    @property
    def dead_letters(self) -> str:
        return self.name(DEAD_LETTERS)

    @property
    def alert_rules(self) -> str:
        return self.name(ALERT_RULES)

    def inputs(self) -> tuple[str, ...]:
        """Topics the worker consumes."""
        return tuple(self.name(t) for t in INPUTS)

    def all(self) -> tuple[str, ...]:
        """Every topic of the pipeline (the worker creates them)."""
        return tuple(self.name(t) for t in TOPICS)
