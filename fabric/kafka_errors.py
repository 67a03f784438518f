"""Kafka client errors, translated once, here, for every consumer of the fabric."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError

from fabric.errors import ConsumerFailedError

log = logging.getLogger(__name__)


def check_consumer_error(error: KafkaError) -> None:
    """Raise for an error a consumer cannot go on after; log and return for the others.

    A regex subscription reports topics that vanish or do not exist yet, and librdkafka reports
    brokers going away and coming back: none of those is a failure, the client retries itself.
    """
    if error.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
        return
    # A fatal error reaches the application as a message error with code _FATAL, and that
    # error's own fatal() flag is not always set.
    if error.fatal() or error.code() == KafkaError._FATAL:
        raise ConsumerFailedError(f"Kafka consumer failed: {error.str()}")
    log.warning("kafka error=%s", error.str())
