"""Creating the worker's topics before it subscribes, so the first assignment already covers them."""

from __future__ import annotations

import contextlib
import time

from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from runstream_core import kafka
from runstream_core.errors import CommError
from runstream_worker.settings import WorkerSettings


def _new_topic(settings: WorkerSettings, name: str, replication: int) -> NewTopic:
    if name == settings.topics.alert_rules:
        # One record per team, the newest kept for good: every worker reads the whole topic.
        return NewTopic(name, 1, replication, topic_configs={"cleanup.policy": "compact"})
    return NewTopic(name, settings.topic_partitions, replication)


def ensure_topics(settings: WorkerSettings, timeout_s: float = 60.0) -> list[str]:
    """Create missing topics (partitions from settings, replication 1 per broker count); returns those created."""
    deadline = time.monotonic() + timeout_s
    wanted = settings.topics.all()
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = kafka.admin(settings, client_id="runstream-topics")
        except KafkaError as exc:
            last_error = exc
            time.sleep(1.0)
            continue
        try:
            existing = set(admin.list_topics())
            brokers = max(1, len(admin.describe_cluster().get("brokers", [])))
            missing = [name for name in wanted if name not in existing]
            if missing:
                new = [_new_topic(settings, name, min(3, brokers)) for name in missing]
                with contextlib.suppress(TopicAlreadyExistsError):  # another worker won the race
                    admin.create_topics(new)
            return missing
        except KafkaError as exc:
            last_error = exc
            time.sleep(1.0)
        finally:
            admin.close()
    raise CommError(f"could not create topics {wanted} on {settings.kafka_bootstrap}: {last_error}")
