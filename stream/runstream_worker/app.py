"""The Faust application: it wires Kafka to the runner and does nothing else.

One agent per input topic hands batches of records to ``Runner.handle``. Offsets: ``take_events``
acks a batch's events only after the agent body returns, and the body returns only once the runner
has stored the batch. Faust commits acked offsets every ``worker_commit_interval_s``, so a crash
replays, never skips. Two timers hand the runner the partitions' ends for its liveness and health
figures, a third evaluates the time-based alert rules, and a task sends alerts to their webhooks;
the dead-letter topic is reached through ``dead_letter_sender``, whose failures the runner retries.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

from runstream_core import kafka
from runstream_core.log import get_logger
from runstream_worker.alerts.notify import Notifier
from runstream_worker.dead_letters import Letter, LetterTooLargeError
from runstream_worker.decode import SourceRecord
from runstream_worker.probe import Readiness
from runstream_worker.runner import DeadLetterSender, PartitionEnds, Runner
from runstream_worker.settings import WorkerSettings

log = get_logger("runstream.worker")

ASSIGNED_EVENT = "partitions assigned"


def _source(event: Any) -> SourceRecord:
    message = event.message
    return SourceRecord(message.topic, message.partition, message.offset, event.value, event.key)


def create_app(settings: WorkerSettings) -> faust.App:
    """The worker's Faust app from settings (no network until it starts)."""
    return faust.App(
        settings.worker_group,
        **kafka.faust_broker(settings),  # the cluster's address, TLS and SASL, as every client gets them
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        datadir=str(Path(tempfile.gettempdir()) / f"runstream-faust-{settings.worker_group}"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        broker_commit_interval=settings.worker_commit_interval_s,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=True,
        # A worker that dies (SIGKILL, lost node) gives its partitions up within 10 s, not 60.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
    )


def dead_letter_sender(app: faust.App, settings: WorkerSettings) -> DeadLetterSender:
    """Sends a dead letter (``runstream_worker.dead_letters``) to the dead-letter topic; Kafka's
    refusal of its size is raised as ``LetterTooLargeError``, anything else as it comes."""
    topic = app.topic(settings.topics.dead_letters, value_type=bytes, key_type=bytes)

    async def send(letter: Letter) -> None:
        try:
            delivered = await topic.send(key=letter.key, value=letter.value, headers=letter.headers)
            await delivered  # on Kafka before the source record is acknowledged
        except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
            raise LetterTooLargeError(str(exc)) from exc

    return send


def dead_letter_max_bytes(app: faust.App) -> int:
    """The largest record the app's producer sends (Faust's ``producer_max_request_size``)."""
    return int(app.conf.producer_max_request_size)


def wire(app: faust.App, runner: Runner, settings: WorkerSettings, readiness: Readiness) -> None:
    """Agents for the input topics, the liveness and health timers, and readiness on assignment."""
    topics = settings.topics

    async def consume(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        # take_events is faust-streaming's; its StreamT protocol does not declare it.
        batches = stream.take_events(  # type: ignore[attr-defined]
            settings.worker_batch_records, within=settings.worker_flush_interval_s
        )
        async for events in batches:
            await runner.handle([_source(event) for event in events])
            yield None

    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = args[0] if args else set()
        runs_partitions = [tp.partition for tp in assigned if tp.topic == topics.runs]
        count = app.consumer.topic_partitions(topics.runs) or settings.topic_partitions
        runner.alerts.assigned(runs_partitions, count)  # runs may have moved: alert state is read again
        readiness.partitions_assigned()
        log.info(ASSIGNED_EVENT, partitions=len(assigned))  # for people; /ready is for tools

    app.on_partitions_assigned.connect(on_assigned)

    async def partition_ends(topic_names: tuple[str, ...]) -> PartitionEnds:
        """(end offset, fetch position) of each assigned partition of these topics."""
        consumer = app.consumer
        ends = {}
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is not None and tp.topic in topic_names:
                position = await consumer.position(tp)
                ends[(tp.topic, tp.partition)] = (int(end), int(position if position is not None else end))
        return ends

    async def liveness() -> None:
        backlog = sum(runner.behind(await partition_ends((topics.runs,))).values())
        await runner.check_liveness(time.time_ns() // 1_000_000, backlog)

    app.timer(interval=settings.worker_liveness_interval_s)(liveness)

    async def health() -> None:
        await runner.write_health(await partition_ends(topics.inputs()), time.time_ns() // 1_000_000)

    app.timer(interval=settings.worker_health_interval_s)(health)

    async def alerts() -> None:
        # As for liveness: a run whose heartbeats wait unread is not quiet, only not read yet (they
        # carry the step too). Not the metrics topic: under load it always has records in flight.
        backlog = sum(runner.behind(await partition_ends((topics.runs,))).values())
        if not backlog:
            await runner.alerts.tick()

    app.timer(interval=settings.worker_alert_interval_s)(alerts)

    notifier = Notifier(
        runner.alerts.book,
        runner.alerts.record,
        runner.alert_undelivered,
        tries=settings.worker_alert_webhook_tries,
        timeout_s=settings.worker_alert_webhook_timeout_s,
    )
    runner.alerts.notifier = notifier

    app.task(notifier.run)

    for topic_name in topics.inputs():
        topic = app.topic(topic_name, value_type=bytes, key_type=bytes, partitions=settings.topic_partitions)
        # Point topics may have several takes in hand: one is decoded while another is stored (the
        # engine releases the GIL), and Faust commits an offset only once every take before it is acked.
        # Lifecycle events stay one take at a time: their order is the runs' state.
        concurrency = 1 if topic_name == topics.runs else settings.worker_takes_at_once
        app.agent(topic, name=f"write-{topic_name}", concurrency=concurrency)(consume)
