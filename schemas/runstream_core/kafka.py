"""The one Kafka client factory: every client of runstream reaches the cluster through here.

The SDK, ``runstream sync`` and the operational commands use kafka-python; the worker uses Faust
(on aiokafka). Both get the cluster's address and its TLS / SASL settings from ``KafkaSettings``,
so securing the cluster is one change of settings, not one per client. kafka-python is imported
only when a client is made.
"""

from __future__ import annotations

import logging
import ssl
from typing import TYPE_CHECKING, Any

from runstream_core.settings import KafkaSettings

if TYPE_CHECKING:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """kafka-python's connection options: servers, security protocol, SASL and TLS."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password.get_secret_value(),
        )
    if settings.kafka_security_protocol.endswith("SSL"):
        options.update(
            ssl_cafile=_path(settings.kafka_ssl_cafile),
            ssl_certfile=_path(settings.kafka_ssl_certfile),
            ssl_keyfile=_path(settings.kafka_ssl_keyfile),
        )
    return options


def _path(value: object) -> str | None:
    return str(value) if value else None


def _quiet_kafka_python() -> None:
    # kafka-python logs every refused connection at ERROR; runstream reports outages itself, once.
    kafka_logger = logging.getLogger("kafka")
    if kafka_logger.level == logging.NOTSET:
        kafka_logger.setLevel(logging.CRITICAL)


def producer(settings: KafkaSettings, **options: Any) -> KafkaProducer:
    from kafka import KafkaProducer

    _quiet_kafka_python()
    return KafkaProducer(**client_options(settings), **options)


def consumer(settings: KafkaSettings, **options: Any) -> KafkaConsumer:
    from kafka import KafkaConsumer

    return KafkaConsumer(**client_options(settings), **options)


def admin(settings: KafkaSettings, **options: Any) -> KafkaAdminClient:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(**client_options(settings), **options)


def faust_broker(settings: KafkaSettings) -> dict[str, Any]:
    """Faust's ``broker`` and ``broker_credentials`` options for the same cluster and security."""
    import faust

    credentials: Any = None
    context: ssl.SSLContext | None = None
    protocol = settings.kafka_security_protocol
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(cafile=_path(settings.kafka_ssl_cafile))
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(str(settings.kafka_ssl_certfile), _path(settings.kafka_ssl_keyfile))
        credentials = faust.SSLCredentials(context)
    if protocol.startswith("SASL"):
        credentials = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    return {
        "broker": [f"kafka://{server}" for server in settings.bootstrap_servers],
        "broker_credentials": credentials,
    }
