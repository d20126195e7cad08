"""The bundled seed corpus is what the generator makes, well-formed, and the demo stream has its traps."""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from pipeline.data import seed
from pipeline.errors import ConfigError
from pipeline.intake import RawRecord, read_post
from pipeline.records import DeadLetter, Post

DATA = Path(seed.__file__).parent
REPO = DATA.parents[1]
SAMPLE_PATH = DATA / "sample_posts.jsonl"
TAXONOMY = {"safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm"}


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, Any]]:
    return seed.read_jsonl(seed.CORPUS_PATH)


@pytest.fixture(scope="module")
def sample_lines() -> list[str]:
    return SAMPLE_PATH.read_bytes().decode("utf-8").splitlines()


def test_the_committed_corpus_is_exactly_what_generate_produces() -> None:
    assert seed.CORPUS_PATH.read_text(encoding="utf-8") == seed.dumps_jsonl(seed.generate())


def test_generate_is_deterministic_per_seed_and_varies_across_seeds() -> None:
    counts = {"safe": 30, "spam": 10, "hate": 5}
    first = seed.generate(counts, seed=11)
    assert first == seed.generate(counts, seed=11)
    assert [r["text"] for r in first] != [r["text"] for r in seed.generate(counts, seed=12)]
    assert Counter(r["label"] for r in first) == Counter(counts)


def test_generate_rejects_labels_outside_the_taxonomy() -> None:
    with pytest.raises(ValueError, match="taxonomy"):
        seed.generate({"phishing": 3})


def test_rows_have_the_documented_shape(corpus: list[dict[str, Any]]) -> None:
    assert len(corpus) == sum(seed.DEFAULT_COUNTS.values())
    for row in corpus:
        assert list(row) == ["id", "text", "label", "hard_negative", "source"]
        assert isinstance(row["text"], str) and row["text"].strip() == row["text"] != ""
        assert isinstance(row["hard_negative"], bool)
        assert row["source"] == "seed"


def test_every_label_is_in_the_taxonomy_and_counts_match(corpus: list[dict[str, Any]]) -> None:
    assert set(seed.LABELS) == TAXONOMY
    assert Counter(r["label"] for r in corpus) == Counter(seed.DEFAULT_COUNTS)


def test_ids_are_unique_and_sequential(corpus: list[dict[str, Any]]) -> None:
    assert [r["id"] for r in corpus] == [f"seed-{i:06d}" for i in range(1, len(corpus) + 1)]


def test_no_exact_duplicate_texts(corpus: list[dict[str, Any]]) -> None:
    texts = [r["text"] for r in corpus]
    assert len(set(texts)) == len(texts)


def test_hard_negatives_are_safe_and_at_least_a_quarter_of_safe(corpus: list[dict[str, Any]]) -> None:
    hard = [r for r in corpus if r["hard_negative"]]
    safe = [r for r in corpus if r["label"] == "safe"]
    assert all(r["label"] == "safe" for r in hard)
    assert len(hard) >= 0.25 * len(safe)


def test_every_label_has_many_templates() -> None:
    words = seed.load_templates()
    assert set(words.templates) == TAXONOMY
    for label, templates in words.templates.items():
        assert len(set(templates)) >= 40, label
    assert len(set(words.hard_negatives)) >= 40


def test_the_templates_file_ships_with_the_package() -> None:
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(fnmatch(str(seed.TEMPLATES_PATH.relative_to(REPO / "pipeline")), pattern)
               for pattern in package_data["pipeline"])


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = seed.TEMPLATES_PATH.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "seed_templates.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(("old", "new", "problem"), [
    ("  city:\n", "  name:\n", "duplicate key 'name'"),
    ('"just finished {show} and wow', '"just finished {shows} and wow', "unknown slot"),
    ("hard_negatives:\n", "hard_negative:\n", "hard_negative"),
    ('  spam:\n    - "', '  spam_:\n    - "', "exactly the labels"),
    ('    self_harm: ["', '    self_harm: [] #["', "must not be empty"),
])
def test_a_broken_templates_file_is_refused_with_the_file_and_the_problem(
    tmp_path: Path, old: str, new: str, problem: str,
) -> None:
    path = _broken(tmp_path, old, new)
    with pytest.raises(ConfigError, match=str(path)) as caught:
        seed.load_templates(path)
    assert problem in str(caught.value)


def test_posts_are_mostly_short(corpus: list[dict[str, Any]]) -> None:
    words = [len(r["text"].split()) for r in corpus]
    assert min(words) >= 3
    assert sum(5 <= n <= 60 for n in words) >= 0.95 * len(words)
    assert any(n > 60 for n in words)


def test_sample_posts_have_a_spam_wave_and_differ_from_the_corpus(
    sample_lines: list[str], corpus: list[dict[str, Any]],
) -> None:
    posts = [json.loads(line) for line in sample_lines[:-3]]
    assert len(posts) >= 50
    assert all(p["source"] == "demo" and p["created_at"] is None for p in posts)
    assert len({p["id"] for p in posts}) == len(posts)
    repeats = [(text, n) for text, n in Counter(p["text"] for p in posts).items() if n > 1]
    assert len(repeats) == 1
    text, n = repeats[0]
    assert n == 3
    assert "$" in text and ".top" in text
    assert not {p["text"] for p in posts} & {r["text"] for r in corpus}


def test_sample_posts_end_with_exactly_three_malformed_lines(sample_lines: list[str]) -> None:
    outcomes = [
        read_post(RawRecord(line.encode(), None, "posts", 0, i), stage="demo", max_text_bytes=16_384)
        for i, line in enumerate(sample_lines)
    ]
    assert all(isinstance(o, Post) for o in outcomes[:-3])
    bad = outcomes[-3:]
    assert all(isinstance(o, DeadLetter) for o in bad)
    assert [o.reason for o in bad if isinstance(o, DeadLetter)] == ["invalid_json", "invalid_record", "empty_text"]
