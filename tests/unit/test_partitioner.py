"""Kafka's key partitioner reproduced: murmur2, toPositive, and the partition of a key.

Expected values are Kafka's own test vectors, the worked key examples in stack-notes, and values
printed by ``org.apache.kafka.common.utils.Utils.murmur2`` from kafka-clients 4.3.1 on JDK 25.
"""

import random

import pytest

from fabric.core.partitioner import murmur2, partition_for, to_positive


def _java_murmur2(data: bytes) -> int:
    """A line-by-line transcription of Kafka's Java code with 32-bit signed int semantics.

    Deliberately slow and literal (signed Java bytes, ``>>>``, wrap-around on every step), so it
    checks the optimized implementation rather than repeating its shortcuts.
    """

    def i32(x: int) -> int:
        x &= 0xFFFFFFFF
        return x - (1 << 32) if x & 0x80000000 else x

    def ushr(x: int, n: int) -> int:
        return (x & 0xFFFFFFFF) >> n

    signed = [b - 256 if b > 127 else b for b in data]
    length = len(signed)
    m = 0x5BD1E995
    h = i32(i32(0x9747B28C) ^ length)
    for i in range(length // 4):
        i4 = i * 4
        k = i32(
            (signed[i4] & 0xFF)
            + ((signed[i4 + 1] & 0xFF) << 8)
            + ((signed[i4 + 2] & 0xFF) << 16)
            + ((signed[i4 + 3] & 0xFF) << 24)
        )
        k = i32(k * m)
        k = i32(k ^ ushr(k, 24))
        k = i32(k * m)
        h = i32(h * m)
        h = i32(h ^ k)
    rest = length % 4
    base = length & ~3
    if rest == 3:
        h = i32(h ^ ((signed[base + 2] & 0xFF) << 16))
    if rest >= 2:
        h = i32(h ^ ((signed[base + 1] & 0xFF) << 8))
    if rest >= 1:
        h = i32(h ^ (signed[base] & 0xFF))
        h = i32(h * m)
    h = i32(h ^ ushr(h, 13))
    h = i32(h * m)
    return i32(h ^ ushr(h, 15))


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"21", -973932308), (b"foobar", -790332482), (b"abc", 479470107)],
)
def test_murmur2_matches_kafka_test_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


@pytest.mark.parametrize(
    ("key", "expected_hash", "of_3", "of_6"),
    [
        (b'{"id":1}', -56768732, 0, 0),
        (b'{"id":2}', -1705675864, 1, 4),
        (b'{"id":42}', 486015037, 1, 1),
        (b'{"tenant_id":7,"order_id":1001}', -2102086762, 1, 4),
    ],
)
def test_debezium_json_keys_land_where_connect_puts_them(
    key: bytes, expected_hash: int, of_3: int, of_6: int
) -> None:
    assert murmur2(key) == expected_hash
    assert partition_for(key, 3) == of_3
    assert partition_for(key, 6) == of_6


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 275646681),
        (b"abcd", -1323649548),  # one block, no tail
        (b"abcde", 461995741),  # tail of 1
        (b"abcdef", 1870650108),  # tail of 2
        (b"abcdefg", -346467175),  # tail of 3
    ],
)
def test_murmur2_covers_empty_input_and_every_tail_length(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x00", 375494588),
        (b"\x80", 857690492),
        (b"\xff", -311467685),
        (b"\xff\xfe", 1717632651),
        (b"\x80\x81\x82", -1975640061),
        (b"\xff\xff\xff\xff", 644171429),
        (b"\x80\x80\x80\x80\x80", -1525148316),
        (b"\xff" * 7, -71293549),
        ("😀".encode() + b"\xff\x7f", 466173742),
    ],
)
def test_murmur2_treats_high_bytes_as_unsigned_in_blocks_and_tail(
    data: bytes, expected: int
) -> None:
    # Java bytes >= 0x80 are negative; Kafka masks with 0xff in the blocks and the tail alike.
    assert murmur2(data) == expected


def test_murmur2_agrees_with_a_literal_transcription_of_the_java_code() -> None:
    rnd = random.Random(20240601)
    for length in [*range(40), 255, 256, 1000]:
        for _ in range(25):
            data = rnd.randbytes(length)
            assert murmur2(data) == _java_murmur2(data), data.hex()


def test_murmur2_result_is_a_signed_32_bit_int() -> None:
    rnd = random.Random(7)
    hashes = [murmur2(rnd.randbytes(rnd.randrange(64))) for _ in range(2000)]
    assert all(-(2**31) <= h < 2**31 for h in hashes)
    assert any(h < 0 for h in hashes)
    assert any(h > 0 for h in hashes)


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (0, 0),
        (5, 5),
        (2**31 - 1, 2**31 - 1),
        (-1, 2**31 - 1),
        (-(2**31), 0),
        (-973932308, 1173551340),
    ],
)
def test_to_positive_keeps_the_low_31_bits(number: int, expected: int) -> None:
    assert to_positive(number) == expected


def test_partition_for_is_to_positive_murmur2_mod_partitions() -> None:
    rnd = random.Random(11)
    for _ in range(500):
        key = rnd.randbytes(rnd.randrange(1, 48))
        for partitions in (1, 2, 3, 6, 7, 12, 100):
            assert partition_for(key, partitions) == to_positive(murmur2(key)) % partitions


def test_single_partition_holds_every_key() -> None:
    assert {partition_for(bytes([b]), 1) for b in range(256)} == {0}


@pytest.mark.parametrize("num_partitions", [0, -1, -6])
def test_partition_for_rejects_fewer_than_one_partition(num_partitions: int) -> None:
    with pytest.raises(
        ValueError, match=f"num_partitions must be at least 1, got {num_partitions}"
    ):
        partition_for(b'{"id":1}', num_partitions)
