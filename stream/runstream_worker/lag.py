"""How far the worker's consumer group is behind the end of its topics."""

from __future__ import annotations

import time

from kafka import TopicPartition
from kafka.errors import KafkaError

from runstream_core import kafka
from runstream_core.errors import CommError
from runstream_worker.settings import WorkerSettings


def consumer_lag(settings: WorkerSettings) -> dict[TopicPartition, int]:
    """Per partition: end offset minus the group's committed offset (the whole partition if none)."""
    admin = kafka.admin(settings, client_id="runstream-lag")
    consumer = kafka.consumer(settings, client_id="runstream-lag", enable_auto_commit=False)
    try:
        committed = admin.list_group_offsets(settings.worker_group).get(settings.worker_group, {})
        partitions = [
            TopicPartition(topic, p)
            for topic in settings.topics.inputs()
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = consumer.end_offsets(partitions) if partitions else {}
        lag = {}
        for tp in partitions:
            done = committed.get(tp)
            lag[tp] = ends[tp] - (done.offset if done is not None and done.offset >= 0 else 0)
        return lag
    finally:
        consumer.close()
        admin.close()


def wait_caught_up(settings: WorkerSettings, timeout_s: float = 120.0, poll_s: float = 0.5) -> None:
    """Block until the group has committed everything on its topics; ``CommError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: dict[TopicPartition, int] = {}
    while time.monotonic() < deadline:
        try:
            last = consumer_lag(settings)
        except KafkaError:  # e.g. the group coordinator is still being elected
            last = {}
        if last and sum(last.values()) == 0:
            return
        time.sleep(poll_s)
    behind = {f"{tp.topic}[{tp.partition}]": n for tp, n in last.items() if n}
    raise CommError(f"worker did not catch up within {timeout_s:.0f}s; lag per partition: {behind}")
