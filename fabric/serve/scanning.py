"""Scan requests: resume tokens, key prefixes and ranges, checked against a table's key.

A scan's rows come partition by partition in the byte order of their keys; a resume token names
the partition and the last key sent. Prefixes and ranges compare the key's decoded values.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

from fabric.errors import InvalidKeyError
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.values import decode_key, decode_value


def scan_token(partition: int, key: bytes | None) -> str:
    raw = f"{partition}:".encode() + (key or b"")
    return base64.urlsafe_b64encode(raw).decode()


def parse_scan_token(token: str, partitions: int | None = None) -> tuple[int, bytes | None]:
    """The partition and last key a resume token names; ``partitions``, when given, is the
    table's partition count, which the token's partition must lie within."""
    if not token:
        return 0, None
    try:
        raw = base64.urlsafe_b64decode(token.encode())
        head, colon, key = raw.partition(b":")
        partition = int(head)
        if not colon or partition < 0 or (partitions is not None and partition >= partitions):
            raise ValueError
        return partition, key
    except (ValueError, UnicodeDecodeError):
        raise InvalidKeyError(
            f"resume token {token!r:.40} is not one this service issued; pass back the "
            "resume_token of a ScanResponse, or none to start over"
        ) from None


def scan_partitions(request: pb.ScanRequest, start: int, count: int, table: str) -> list[int]:
    """The partitions a Scan reads, in order: the one it names, else ``start`` onwards."""
    if not request.HasField("partition"):
        return list(range(start, count))
    if not 0 <= request.partition < count:
        raise InvalidKeyError(
            f"{table} has partitions 0 to {count - 1}; partition {request.partition} is not one"
        )
    return [request.partition]


def prefix_values(key: pb.Key, primary_key: Sequence[str], table: str) -> list[Any]:
    values = decode_key(key, primary_key, table)
    if isinstance(values, dict):
        ordered = []
        for name in primary_key:
            if name not in values:
                break
            ordered.append(values.pop(name))
        if values:
            raise InvalidKeyError(
                f"{table}: a prefix names the first columns of the key ({', '.join(primary_key)})",
                next(iter(values)),
            )
        return ordered
    if len(values) > len(primary_key):
        raise InvalidKeyError(f"{table}: the key has {len(primary_key)} columns")
    return values


def scan_filter(
    request: pb.ScanRequest, primary_key: Sequence[str], table: str
) -> Callable[[pb.ScanResponse], bool]:
    prefix = prefix_values(request.prefix, primary_key, table) if request.HasField("prefix") else []
    start = (
        prefix_values(request.range_start, primary_key, table)
        if request.HasField("range_start")
        else None
    )
    end = (
        prefix_values(request.range_end, primary_key, table)
        if request.HasField("range_end")
        else None
    )
    if prefix and (start is not None or end is not None):
        raise InvalidKeyError(f"{table}: a Scan takes a prefix or a range, not both")
    if not prefix and start is None and end is None:
        return lambda _: True
    names = list(primary_key)

    def key_of(response: pb.ScanResponse) -> list[Any]:
        values = {f.name: f.value for f in response.row.fields}
        return [decode_value(values[name]) for name in names]

    def matches(response: pb.ScanResponse) -> bool:
        key = key_of(response)
        if prefix:
            return key[: len(prefix)] == prefix
        try:
            if start is not None and key[: len(start)] < start:
                return False
            return not (end is not None and key[: len(end)] >= end)
        except TypeError:
            raise InvalidKeyError(f"{table}: range bounds do not match the key's types") from None

    return matches
