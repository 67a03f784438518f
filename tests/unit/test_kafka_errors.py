"""Which consumer errors the materializer rides out and which make it replace its consumer."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from fabric.errors import ConsumerFailedError
from fabric.kafka_errors import check_consumer_error


def test_a_fatal_error_message_fails_the_consumer_even_without_its_fatal_flag() -> None:
    fenced = KafkaError(KafkaError._FATAL, "Static consumer fenced by other consumer")
    with pytest.raises(ConsumerFailedError, match="fenced"):
        check_consumer_error(fenced)
    with pytest.raises(ConsumerFailedError):
        check_consumer_error(KafkaError(KafkaError._TRANSPORT, "gone", fatal=True))


@pytest.mark.parametrize(
    "code", [KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TRANSPORT]
)
def test_passing_errors_are_ridden_out(code: int) -> None:
    check_consumer_error(KafkaError(code, "passing"))
