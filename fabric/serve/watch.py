"""``Watch``: the changes of a key, a key prefix or a table, read from the table's topic.

A watch reads the topic itself, with a consumer of its own (no group), rather than the stores:
per partition, Kafka's order is the order of the changes, so every change of a key arrives in
order, and the resume token (the next offset of every watched partition, and of the truncate
marker topic) lets any instance continue a watch exactly where another stopped, after a restart
included. Without a token a watch starts at the end: changes from now on.

An update that leaves a TOASTed column unchanged carries no value for it; such columns are left
out of the event's row (the lookup API has the full row).
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from fabric.core.admission import foreign_table, key_mismatch
from fabric.core.events import ChangeEvent, Op, TruncateMarker, decode
from fabric.core.types import UnavailableValueError
from fabric.errors import InvalidKeyError, MalformedEventError
from fabric.kafka_errors import check_consumer_error
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.values import RowEncoder, encode_key

log = logging.getLogger(__name__)

_MARKERS = "m"
_MAX_OFFSET = 2**63 - 1


def watch_changes(
    *,
    bootstrap: str,
    marker_topic: str,
    table: str,
    topic: str,
    partitions: Sequence[int],
    key: bytes | None,
    prefix: Sequence[Any],
    primary_key: Sequence[str],
    resume_token: str,
    decode_image: Callable[[dict[str, Any]], dict[str, Any]],
    encoder: Callable[[], RowEncoder],
    is_active: Callable[[], bool],
    served_by: str,
) -> Iterator[pb.WatchEvent]:
    positions = _parse_token(resume_token)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"fabric-watch-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "logger": log,
        }
    )
    watched = [(str(p), TopicPartition(topic, p)) for p in partitions]
    # Markers name their table in the key; the topic is small and compacted.
    watched.append((_MARKERS, TopicPartition(marker_topic, 0)))
    for name, tp in watched:
        if name not in positions:
            _start_at_end(consumer, tp, name, positions)
        tp.offset = positions.get(name, OFFSET_END)
    consumer.assign([tp for _, tp in watched])
    try:
        while is_active():
            # Short: consume() waits for a full batch or this long, and a watch is about latency.
            for msg in consumer.consume(500, timeout=0.01):
                error = msg.error()
                if error is not None:
                    check_consumer_error(error)
                    continue
                offset = msg.offset()
                partition = msg.partition()
                assert offset is not None and partition is not None
                at_marker_topic = msg.topic() == marker_topic
                positions[_MARKERS if at_marker_topic else str(partition)] = offset + 1
                event = _event(
                    msg.key(),
                    msg.value(),
                    at_marker_topic=at_marker_topic,
                    table=table,
                    key=key,
                    prefix=prefix,
                    primary_key=primary_key,
                    decode_image=decode_image,
                    encoder=encoder,
                )
                if event is None:
                    continue
                event.freshness.partition = partition if not at_marker_topic else -1
                event.freshness.offset = offset
                event.freshness.served_by = served_by
                event.resume_token = _token(positions)
                yield event
    finally:
        consumer.close()


def _start_at_end(
    consumer: Consumer, tp: TopicPartition, name: str, positions: dict[str, int]
) -> None:
    """Record where a watch without a position starts: the partition's end now. Every token
    then holds every watched partition; one that lacked a partition would resume there at the
    end, past the changes made in between."""
    try:
        _, high = consumer.get_watermark_offsets(tp, timeout=10)
    except KafkaException:
        return  # no such topic yet (the marker topic appears with the first marker)
    if high >= 0:
        positions[name] = high


def _event(
    record_key: bytes | None,
    value: bytes | None,
    *,
    at_marker_topic: bool,
    table: str,
    key: bytes | None,
    prefix: Sequence[Any],
    primary_key: Sequence[str],
    decode_image: Callable[[dict[str, Any]], dict[str, Any]],
    encoder: Callable[[], RowEncoder],
) -> pb.WatchEvent | None:
    if key is not None and not at_marker_topic and record_key != key:
        return None
    try:
        change = decode(value)
    except MalformedEventError:
        return None  # the materializer sends it to the dead-letter topic
    if isinstance(change, TruncateMarker):
        if change.table != table or not at_marker_topic:
            return None
        return pb.WatchEvent(
            kind=pb.WatchEvent.TRUNCATE,
            freshness=pb.Freshness(lsn=change.lsn, commit_time_ms=change.commit_ts_ms or 0),
        )
    if not isinstance(change, ChangeEvent) or at_marker_topic:
        return None
    image = change.before if change.op is Op.DELETE else change.after
    if image is None or _not_of(table, record_key, change, image):
        return None
    if change.op is Op.DELETE:
        # With the default replica identity a delete's before-image holds the key columns only
        # (Debezium fills the others with its defaults, '' even for a uuid): keep just the key.
        image = {name: image.get(name) for name in primary_key}
    try:
        values = decode_image(image)
    except UnavailableValueError as exc:
        kept = {k: v for k, v in image.items() if k not in exc.columns}
        values = {k: v for k, v in decode_image(kept).items() if k in kept}
    except MalformedEventError:
        return None  # a value that does not fit its column: no row to show
    key_values = [values.get(name) for name in primary_key]
    if prefix and key_values[: len(prefix)] != list(prefix):
        return None
    event = pb.WatchEvent(
        key=encode_key(primary_key, key_values),
        freshness=pb.Freshness(
            lsn=change.source.lsn or 0, commit_time_ms=change.source.commit_ts_ms or 0
        ),
    )
    if change.op is Op.DELETE:
        event.kind = pb.WatchEvent.DELETE
    else:
        event.kind = pb.WatchEvent.UPSERT
        row = encoder().row(values)
        event.row.CopyFrom(pb.Row(fields=[f for f in row.fields if f.name in values]))
    return event


def _not_of(
    table: str, record_key: bytes | None, change: ChangeEvent, image: dict[str, Any]
) -> bool:
    """Whether the materializer dead-letters this record as not a change of ``table``."""
    schema, _, name = table.partition(".")
    if foreign_table(change.source, schema, name) is not None:
        return True
    return record_key is None or key_mismatch(record_key, image) is not None


def _token(positions: dict[str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(positions, sort_keys=True).encode()).decode()


def _parse_token(token: str) -> dict[str, int]:
    if not token:
        return {}
    try:
        positions = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(positions, dict) or not all(
            (k == _MARKERS or k.isdecimal()) and type(v) is int and 0 <= v <= _MAX_OFFSET
            for k, v in positions.items()
        ):
            raise ValueError
        return {str(k): int(v) for k, v in positions.items()}
    except (ValueError, UnicodeDecodeError):
        raise InvalidKeyError(
            f"resume token {token!r:.40} is not one this service issued"
        ) from None
