"""Loading, checking, splitting and hashing labelled training data."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import codec
from pipeline.errors import ConfigError
from pipeline.policy.model import Taxonomy
from pipeline.training.data import Example, check_labels, data_hash, load_examples, split

ROWS = [
    {"id": "a", "text": "buy cheap pills", "label": "spam", "extra": 1},
    {"id": "b", "text": "nice haircut", "label": "safe", "extra": 2},
    {"id": "c", "text": "you people are vermin", "label": "hate", "extra": 3},
]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(codec.dumps(row) + b"\n" for row in rows))
    return path


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_parquet(path: Path, rows: list[dict[str, object]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_loads_every_format(tmp_path: Path, fmt: str) -> None:
    path = WRITERS[fmt](tmp_path / f"data.{fmt}", ROWS)
    examples = load_examples(path)
    assert [(e.text, e.label) for e in examples] == [(r["text"], r["label"]) for r in ROWS]


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_custom_field_names(tmp_path: Path, fmt: str) -> None:
    rows: list[dict[str, object]] = [{"body": r["text"], "y": r["label"]} for r in ROWS]
    path = WRITERS[fmt](tmp_path / f"data.{fmt}", rows)
    assert [e.label for e in load_examples(path, text_field="body", label_field="y")] == ["spam", "safe", "hate"]


def test_line_numbers_follow_the_file(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "d.jsonl", ROWS)
    assert [e.line for e in load_examples(jsonl)] == [1, 2, 3]
    assert [e.line for e in load_examples(write_csv(tmp_path / "d.csv", ROWS))] == [2, 3, 4]  # header is line 1


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(ConfigError, match=r"nope\.jsonl: file not found: check the path"):
        load_examples(path)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("x")
    with pytest.raises(ConfigError, match=r"data\.txt: unsupported file type '\.txt': use one of .*\.jsonl"):
        load_examples(path)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_empty_file(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"empty.{fmt}"
    path.write_text("")
    with pytest.raises(ConfigError, match=rf"empty\.{fmt}: the file has no rows: add labelled examples"):
        load_examples(path)


def test_empty_parquet(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.string())}), path)
    with pytest.raises(ConfigError, match=r"empty\.parquet: the file has no rows"):
        load_examples(path)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_missing_column_names_the_columns_found(tmp_path: Path, fmt: str) -> None:
    rows: list[dict[str, object]] = [{"id": "a", "body": "hi", "label": "safe"}]
    path = WRITERS[fmt](tmp_path / f"data.{fmt}", rows)
    with pytest.raises(ConfigError) as info:
        load_examples(path)
    message = str(info.value)
    assert f"data.{fmt}" in message
    assert "no 'text' column (columns found: body, id, label)" in message
    assert "pass the text_field option" in message


def test_empty_text_lists_line_numbers(tmp_path: Path) -> None:
    blank: dict[str, object] = {"text": "  ", "label": "spam"}
    rows: list[dict[str, object]] = [{"text": "ok", "label": "safe"}, *[blank] * 7]
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    with pytest.raises(ConfigError) as info:
        load_examples(path)
    message = str(info.value)
    assert "data.jsonl: text: 7 row(s) with an empty 'text' (lines 2, 3, 4, 5, 6, ...)" in message
    assert "fill them in or remove those rows" in message


def test_empty_label_is_reported(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "data.csv", [{"text": "ok", "label": "safe"}, {"text": "hm", "label": ""}])
    with pytest.raises(ConfigError, match=r"data\.csv: label: 1 row\(s\) with an empty 'label' \(lines 3\)"):
        load_examples(path)


def test_invalid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "label": "safe"}\n{not json\n')
    with pytest.raises(ConfigError, match=r"data\.jsonl:2: .*fix or remove that line"):
        load_examples(path)


def examples(counts: dict[str, int]) -> list[Example]:
    out: list[Example] = []
    for label, n in counts.items():
        for i in range(n):
            out.append(Example(text=f"{label} {i}", label=label, line=len(out) + 1))
    return out


def test_check_labels_counts_and_flags_rare_labels() -> None:
    assert check_labels(examples({"safe": 3, "spam": 2})) == Counter({"safe": 3, "spam": 2})
    with pytest.raises(ConfigError, match=r"data\.jsonl: label: 'spam' has 2 \(need at least 5 per label\): add "
                                          "examples or drop the label"):
        check_labels(examples({"safe": 9, "spam": 2}), min_per_label=5, source="data.jsonl")


def test_check_labels_needs_two_labels() -> None:
    with pytest.raises(ConfigError, match="at least two labels"):
        check_labels(examples({"safe": 5}))


def test_check_labels_against_taxonomy() -> None:
    taxonomy = Taxonomy(safe="safe", categories=("spam", "hate"))
    check_labels(examples({"safe": 2, "spam": 2, "hate": 2}), taxonomy=taxonomy)
    with pytest.raises(ConfigError) as info:
        check_labels(examples({"safe": 2, "spam": 2, "scam": 3}), taxonomy=taxonomy, source="d.jsonl")
    message = str(info.value)
    assert "d.jsonl: label: 'scam' (3 rows) not in the policy taxonomy [hate, safe, spam]" in message
    assert "relabel those rows or add the label to taxonomy.categories" in message


def test_split_is_stratified_disjoint_and_complete() -> None:
    data = examples({"safe": 50, "spam": 20, "hate": 10})
    train, val = split(data, 0.2, seed=7)
    assert Counter(e.label for e in val) == {"safe": 10, "spam": 4, "hate": 2}
    assert Counter(e.label for e in train) == {"safe": 40, "spam": 16, "hate": 8}
    assert not {e.line for e in train} & {e.line for e in val}
    assert sorted(train + val, key=lambda e: e.line) == data


def test_split_is_deterministic_and_seeded() -> None:
    data = examples({"safe": 50, "spam": 20, "hate": 10})
    assert split(data, 0.2, seed=7) == split(list(reversed(data)), 0.2, seed=7)
    assert split(data, 0.2, seed=7)[1] != split(data, 0.2, seed=8)[1]


def test_split_keeps_one_of_each_label_on_both_sides() -> None:
    train, val = split(examples({"safe": 30, "rare": 2}), 0.1, seed=0)
    assert Counter(e.label for e in val)["rare"] == 1
    assert Counter(e.label for e in train)["rare"] == 1


def test_split_rejects_bad_fraction() -> None:
    with pytest.raises(ConfigError, match=r"val_fraction: 1.5 is outside \(0, 1\)"):
        split(examples({"safe": 3, "spam": 3}), 1.5, seed=0)


def test_data_hash_is_stable_and_content_sensitive(tmp_path: Path) -> None:
    jsonl = load_examples(write_jsonl(tmp_path / "d.jsonl", ROWS))
    parquet = load_examples(write_parquet(tmp_path / "d.parquet", ROWS))
    assert data_hash(jsonl) == data_hash(parquet)  # the same rows, whatever the format or extra fields
    assert data_hash(jsonl) == data_hash(load_examples(tmp_path / "d.jsonl"))
    assert len(data_hash(jsonl)) == 64
    changed = [Example(text=e.text, label="safe", line=e.line) for e in jsonl]
    assert data_hash(changed) != data_hash(jsonl)
    assert data_hash(jsonl[::-1]) != data_hash(jsonl)
