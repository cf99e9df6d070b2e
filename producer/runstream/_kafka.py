"""The SDK's Kafka producer: a run's transport and ``runstream sync`` send records through it.

The client itself comes from ``runstream_core.kafka`` (cluster address, TLS and SASL in one place);
this module only chooses the producer's options for a training job.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import weakref
from typing import Any, Protocol

from runstream.settings import Settings
from runstream_core import kafka


class RecordSender(Protocol):
    """The part of ``kafka.KafkaProducer`` the SDK uses (a boundary tests may fake)."""

    def send(self, topic: str, value: bytes, key: bytes) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


_DEFAULT_MAX_REQUEST_SIZE = 1_048_576  # kafka-python's, and about the broker's default message.max.bytes
_RECORD_OVERHEAD = 64 * 1024  # key, headers and record batch framing around a value, with room to spare


_producers: weakref.WeakSet[Any] = weakref.WeakSet()


def _disown_in_child() -> None:
    """A forked child holds copies of its parent's producers, whose sender thread stayed with the parent.
    Marked closed (kafka-python's own flag), they do not flush or close anything when the child exits."""
    for producer in list(_producers):
        producer._closed = True


os.register_at_fork(after_in_child=_disown_in_child)


def _close_left_open() -> None:
    """At exit, close the producers no run or sync closed, as kafka-python's own exit hook would.

    Registered when this module is imported, before any run registers its exit hook: ``atexit`` runs
    hooks last-registered first, so this runs after every run still open has finished (and delivered
    its last records) through the producer it needs."""
    for producer in list(_producers):
        with contextlib.suppress(Exception):  # the process is ending: nothing is left to tell
            producer.close(timeout=1.0)


atexit.register(_close_left_open)


def kafka_sender(settings: Settings) -> RecordSender:
    """A kafka-python producer for one run: idempotent, lz4, bounded waits so outages surface."""
    producer = kafka.producer(
        settings,
        client_id="runstream-sdk",
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        compression_type="lz4",
        bootstrap_timeout_ms=1000,
        max_block_ms=1000,
        request_timeout_ms=10_000,
        delivery_timeout_ms=30_000,
        max_request_size=max(_DEFAULT_MAX_REQUEST_SIZE, settings.max_record_bytes + _RECORD_OVERHEAD),
    )
    # kafka-python closes each producer in an exit hook of its own. A run's producer is made on its sender
    # thread after the run registered its exit hook, so that hook would run first and close the producer
    # under the run still ending at exit: its end and last points could not be sent. The SDK closes its
    # producers itself: the run's transport once the run is finished, ``_close_left_open`` at the very end.
    kafka_hook = getattr(producer, "_cleanup", None)
    if kafka_hook is not None:
        atexit.unregister(kafka_hook)
    _producers.add(producer)
    sender: RecordSender = producer
    return sender


def too_large(exc: BaseException) -> bool:
    """Whether ``exc`` is Kafka refusing a record for its size (kafka-python's ``max_request_size`` check,
    or the broker's ``message.max.bytes``): sending the record again can never succeed."""
    from kafka.errors import MessageSizeTooLargeError, RecordListTooLargeError

    return isinstance(exc, (MessageSizeTooLargeError, RecordListTooLargeError))
