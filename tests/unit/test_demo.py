"""The live demo's post stream (``pipeline.app.demo.demo_stream``); no training here."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline import codec
from pipeline.app.demo import demo_stream
from pipeline.cascade.cache import normalize_text
from pipeline.data.seed import CORPUS_PATH, read_jsonl
from pipeline.errors import DecodeError
from pipeline.records import Post

N = 500


def split_stream(records: list[bytes]) -> tuple[list[Post], list[tuple[bytes, str]]]:
    """The valid posts, and the malformed records with their decode-error reasons."""
    posts: list[Post] = []
    bad: list[tuple[bytes, str]] = []
    for data in records:
        try:
            posts.append(codec.decode(data, Post))
        except DecodeError as exc:
            bad.append((data, exc.reason))
    return posts, bad


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    return demo_stream(N)


def test_length_and_determinism(stream: list[bytes]) -> None:
    assert len(stream) == N
    assert all(isinstance(record, bytes) for record in stream)
    assert demo_stream(N) == stream
    assert demo_stream(N, seed=12) != stream


def test_ids_are_unique_and_in_order(stream: list[bytes]) -> None:
    posts, _ = split_stream(stream)
    ids = [post.id for post in posts]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(post_id.startswith("demo-") for post_id in ids)


def test_valid_records_decode_as_posts_without_created_at(stream: list[bytes]) -> None:
    posts, bad = split_stream(stream)
    assert len(posts) + len(bad) == N
    for post in posts:
        assert post.text.strip()
        assert post.source == "demo"
        assert post.created_at is None  # the producer stamps it
        assert post.meta == {}
    for data in stream:
        if data not in {b for b, _ in bad}:
            assert "created_at" not in codec.loads(data)


def test_malformed_share_and_kinds(stream: list[bytes]) -> None:
    _, bad = split_stream(stream)
    assert len(bad) == N // 97
    reasons = Counter(reason for _, reason in bad)
    assert set(reasons) == {"invalid_json", "invalid_record", "invalid_utf8", "empty_text"}
    assert [reason for _, reason in split_stream(demo_stream(4 * 20, malformed_every=20))[1]] == [
        "invalid_json", "invalid_record", "invalid_utf8", "empty_text"]


def test_no_malformed_records_when_disabled() -> None:
    _, bad = split_stream(demo_stream(200, malformed_every=0))
    assert bad == []


def test_spam_waves_repeat_texts(stream: list[bytes]) -> None:
    posts, _ = split_stream(stream)
    by_text = Counter(normalize_text(post.text) for post in posts)
    waves = {text: count for text, count in by_text.items() if count > 1}
    assert 1 <= len(waves) <= 5
    assert all(count >= 3 for count in waves.values())
    assert 0.05 <= sum(waves.values()) / len(posts) <= 0.2
    exact = Counter(post.text for post in posts)
    assert len(exact) > len(by_text)  # some repeats differ only in whitespace


def test_texts_are_not_training_rows(stream: list[bytes]) -> None:
    corpus = {row["text"] for row in read_jsonl(CORPUS_PATH)}
    posts, _ = split_stream(stream)
    assert not any(post.text in corpus for post in posts)
    assert len({post.text for post in posts}) > 0.8 * len(posts)


@pytest.mark.parametrize("n", [0, 1, 5, 19, 20, 96, 97, 98])
def test_small_streams(n: int) -> None:
    records = demo_stream(n)
    assert len(records) == n
    posts, bad = split_stream(records)
    assert len(bad) == n // 97
    assert len({post.id for post in posts}) == len(posts)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        demo_stream(-1)
    with pytest.raises(ValueError):
        demo_stream(10, malformed_every=-1)
    with pytest.raises(ValueError):
        demo_stream(10, seed=7)  # the training corpus's seed
