"""The partition of a keyed output is the one every Kafka client's default partitioner gives it (aiokafka's
``DefaultPartitioner``, Java's ``Utils.murmur2``): outputs sent as whole record batches land exactly where
``producer.send`` would have put them."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from pipeline.kafka.partitioner import murmur2, partition_of


@given(st.binary(max_size=300))
def test_murmur2_is_kafkas_on_any_key(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


@given(st.binary(min_size=1, max_size=80), st.integers(min_value=1, max_value=500))
def test_a_keyed_record_gets_the_default_partitioners_partition(key: bytes, partitions: int) -> None:
    every = list(range(partitions))
    assert partition_of(key, partitions) == DefaultPartitioner()(key, every, every)


def test_known_values_from_the_java_client() -> None:
    # Utils.murmur2 of these keys (org.apache.kafka.common.utils.UtilsTest), as unsigned ints.
    assert murmur2(b"21") & 0xFFFFFFFF == -973932308 & 0xFFFFFFFF
    assert murmur2(b"foobar") & 0xFFFFFFFF == -790332482 & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") & 0xFFFFFFFF == -985981536 & 0xFFFFFFFF
    assert murmur2(b"") & 0xFFFFFFFF == 275646681
