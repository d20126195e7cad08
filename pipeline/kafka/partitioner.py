"""The partition Kafka's default partitioner gives a keyed record, cheap enough to run once per output.

Every Kafka client's default partitioner (Java's, aiokafka's ``DefaultPartitioner``) puts a keyed record on
``(murmur2(key) & 0x7fffffff) % partitions``: records of one key stay on one partition, in order, and a compacted
topic keeps their latest. Outputs sent as whole record batches (:mod:`pipeline.kafka.batched`) must land exactly where
``producer.send`` would have put them, so this is the same function. aiokafka's ``murmur2`` reads its key one byte at a
time (~3.6 µs for a 24-byte post id, as much as all the rest of sending a record); this one unpacks the 32-bit words
at once (~1.9 µs), and :func:`murmur2_all` hashes a batch of keys together (~0.4-0.5 µs a key).
``tests/unit/test_partitioner.py`` checks both against aiokafka's on arbitrary keys.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import cache

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


@cache
def _words(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}I")


def murmur2(data: bytes) -> int:
    """Kafka's MurmurHash2 of ``data`` (``org.apache.kafka.common.utils.Utils.murmur2``), as an unsigned 32-bit int."""
    length = len(data)
    h = _SEED ^ length
    whole = length >> 2
    if whole:
        for word in _words(whole).unpack_from(data):
            k = (word * _M) & _MASK
            h = (h * _M ^ (k ^ k >> 24) * _M) & _MASK  # masked once: the low 32 bits of an XOR need only theirs
    if tail := length & 3:
        at = length - tail
        if tail == 3:
            h ^= data[at + 2] << 16
        if tail >= 2:
            h ^= data[at + 1] << 8
        h = ((h ^ data[at]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def murmur2_all(keys: Sequence[bytes]) -> list[int]:
    """:func:`murmur2` of each key, a whole batch of outputs at once: ~0.5 µs a key instead of ~1.9.

    Keys of one length are hashed together, each in a 64-bit lane of one big integer: every step of the hash is a
    32-bit value times ``m`` (below 2**31), XOR or shift, so a product stays below 2**63 and never carries into the
    next lane, and a shift is masked back into its lane. A step then costs a few big-integer operations for all the
    keys instead of a few Python operations per key (post ids mostly share a length)."""
    by_length: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(index)
    hashes = [0] * len(keys)
    for length, indices in by_length.items():
        count = len(indices)
        joined = b"".join([keys[i] for i in indices])  # byte j of key n at n * length + j
        low, top_byte = _lane_mask(count, 0xFFFFFFFF), _lane_mask(count, 0xFF)
        h = (_SEED ^ length) * _lane_mask(count, 1)
        for word in range(length >> 2):
            k = (_column(joined, length, count, 4 * word, 4) * _M) & low
            k ^= (k >> 24) & top_byte
            h = (h * _M ^ (k * _M)) & low
        if tail := length & 3:
            h = ((h ^ _column(joined, length, count, length - tail, tail)) * _M) & low
        h ^= (h >> 13) & _lane_mask(count, 0x7FFFF)
        h = (h * _M) & low
        h ^= (h >> 15) & _lane_mask(count, 0x1FFFF)
        for index, value in zip(indices, _lanes(count).unpack(h.to_bytes(8 * count, "little")), strict=True):
            hashes[index] = value
    return hashes


def _column(joined: bytes, length: int, count: int, offset: int, width: int) -> int:
    """Bytes ``offset`` to ``offset + width - 1`` of each of the ``count`` keys of ``length`` bytes in ``joined``, each
    key's in the low bytes of its own 64-bit lane."""
    lanes = bytearray(8 * count)
    for byte in range(width):
        lanes[byte::8] = joined[offset + byte :: length]
    return int.from_bytes(lanes, "little")


def _lane_mask(count: int, value: int) -> int:
    return int.from_bytes(value.to_bytes(8, "little") * count, "little")


@cache
def _lanes(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}Q")


def partition_of(key: bytes, partitions: int) -> int:
    """The partition (of ``partitions``, numbered from 0) the default partitioner gives a record keyed ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def partition_from_hash(murmur2_hash: int, partitions: int) -> int:
    """:func:`partition_of` from the key's hash (:func:`murmur2_all`)."""
    return (murmur2_hash & 0x7FFFFFFF) % partitions
