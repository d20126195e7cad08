"""The partition of a keyed output is the one every Kafka client's default partitioner gives it (aiokafka's
``DefaultPartitioner``, Java's ``Utils.murmur2``): outputs sent as whole record batches land exactly where
``producer.send`` would have put them."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from pipeline.kafka.partitioner import murmur2, murmur2_all, partition_from_hash, partition_of


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


@given(st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([b"", b"a", b"post-00000001", b"x" * 33])),
                max_size=60))
def test_a_batch_of_keys_hashes_as_each_key_alone(keys: list[bytes]) -> None:
    hashes = murmur2_all(keys)
    assert hashes == [aiokafka_murmur2(key) for key in keys]
    assert [partition_from_hash(h, 7) for h in hashes] == [partition_of(key, 7) for key in keys]
