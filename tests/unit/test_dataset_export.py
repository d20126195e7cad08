"""Dataset export: splits by a stable hash of the post id, a pinned golden set, files `train` can read."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline import codec
from pipeline.dataset.export import ExportOptions, SplitFractions, bucket, export_dataset, split_of
from pipeline.dataset.store import DatasetStore, to_table
from pipeline.errors import ConfigError
from pipeline.records import Label
from pipeline.training.data import load_examples
from tests.support.samples import T0

CLASSES = ("safe", "spam", "hate")


def labels(n: int, *, start: int = 0, relabel: str | None = None) -> list[Label]:
    return [Label(post_id=f"post-{i}", text=f"post number {i}", label=relabel or CLASSES[i % 3], source="frontier",
                  labelled_at=T0 + timedelta(seconds=i)) for i in range(start, start + n)]


def dataset(n: int, **kw: Any) -> pa.Table:
    return to_table(labels(n, **kw), T0)


def read(path: Path) -> list[dict[str, Any]]:
    return [codec.loads(line) for line in path.read_bytes().splitlines()]


def ids(path: Path) -> set[str]:
    return {row["post_id"] for row in read(path)}


def split_ids(out: Path) -> dict[str, set[str]]:
    return {name: ids(out / f"{name}.jsonl") for name in ("train", "val", "test")}


def test_the_split_depends_on_the_post_id_alone() -> None:
    fractions = SplitFractions()
    assert all(split_of(f"x{i}", fractions) == split_of(f"x{i}", fractions) for i in range(100))
    points = [bucket(f"x{i}") for i in range(10_000)]
    assert all(0.0 <= p < 1.0 for p in points)
    shares = {name: sum(split_of(f"x{i}", fractions) == name for i in range(10_000)) / 10_000
              for name in ("train", "val", "test")}
    assert shares == pytest.approx({"train": 0.8, "val": 0.1, "test": 0.1}, abs=0.02)


def test_no_post_id_is_in_two_splits_and_every_one_is_in_one(tmp_path: Path) -> None:
    report = export_dataset(dataset(1000), ExportOptions(out=tmp_path))
    parts = split_ids(tmp_path)
    assert not parts["train"] & parts["val"] and not parts["train"] & parts["test"] and not parts["val"] & parts["test"]
    assert set().union(*parts.values()) == {f"post-{i}" for i in range(1000)}
    assert dict(report.rows) == {name: len(part) for name, part in parts.items()}


def test_the_split_is_stable_when_the_dataset_grows_and_is_relabelled(tmp_path: Path) -> None:
    export_dataset(dataset(500), ExportOptions(out=tmp_path / "v1"))
    bigger = pa.concat_tables([dataset(500, relabel="spam"), dataset(700, start=500)])
    export_dataset(bigger, ExportOptions(out=tmp_path / "v2"))
    before, after = split_ids(tmp_path / "v1"), split_ids(tmp_path / "v2")
    for name in before:
        assert before[name] <= after[name], f"a post left {name} when the dataset grew"


def test_exported_files_are_training_data(tmp_path: Path) -> None:
    export_dataset(dataset(300), ExportOptions(out=tmp_path))
    examples = load_examples(tmp_path / "train.jsonl")
    assert {e.label for e in examples} == set(CLASSES)
    assert all(e.text.startswith("post number") for e in examples)


def test_the_manifest_records_counts_labels_and_hashes(tmp_path: Path) -> None:
    import hashlib

    export_dataset(dataset(100), ExportOptions(out=tmp_path, source="data/dataset"))
    manifest = codec.loads((tmp_path / "manifest.json").read_bytes())
    assert manifest["source"] == "data/dataset" and manifest["dataset_rows"] == 100
    assert manifest["split"]["train"] == 0.8 and manifest["split"]["salt"]
    for name in ("train", "val", "test"):
        entry = manifest["files"][name]
        data = (tmp_path / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["rows"] == len(data.splitlines()) == sum(entry["labels"].values())
    assert manifest["golden"] is None


def test_a_golden_set_is_created_once_from_the_test_split_and_then_reused(tmp_path: Path) -> None:
    golden = tmp_path / "golden.jsonl"
    first = export_dataset(dataset(1000), ExportOptions(out=tmp_path / "v1", golden=golden, golden_size=40))
    assert first.golden_created and first.rows["golden"] == 40
    pinned = golden.read_bytes()
    golden_ids = ids(golden)
    assert golden_ids <= {f"post-{i}" for i in range(1000) if split_of(f"post-{i}", SplitFractions()) == "test"}

    second = export_dataset(dataset(2000, relabel="hate"), ExportOptions(out=tmp_path / "v2", golden=golden))
    assert not second.golden_created
    assert golden.read_bytes() == pinned, "the golden file is never rewritten"
    assert (tmp_path / "v2" / "golden.jsonl").read_bytes() == pinned, "its pinned labels are kept"
    for out in (tmp_path / "v1", tmp_path / "v2"):
        parts = split_ids(out)
        assert not golden_ids & (parts["train"] | parts["val"]), "a golden post reached training"
        assert not golden_ids & parts["test"]


def test_a_golden_file_of_ids_takes_texts_and_labels_from_the_dataset(tmp_path: Path) -> None:
    golden = tmp_path / "golden.txt"
    golden.write_text("post-1\npost-2\n\nnot-in-the-dataset\n")
    report = export_dataset(dataset(100), ExportOptions(out=tmp_path / "out", golden=golden))
    assert report.skipped["golden_missing"] == 1
    rows = read(tmp_path / "out" / "golden.jsonl")
    assert [(r["post_id"], r["label"]) for r in rows] == [("post-1", "spam"), ("post-2", "hate")]
    parts = split_ids(tmp_path / "out")
    assert not {"post-1", "post-2"} & set().union(*parts.values())


def test_a_golden_jsonl_may_name_posts_by_post_id_or_id(tmp_path: Path) -> None:
    golden = tmp_path / "golden.jsonl"
    golden.write_bytes(b'{"post_id": "post-3"}\n{"id": "post-4", "text": "pinned text", "label": "safe"}\n')
    export_dataset(dataset(100), ExportOptions(out=tmp_path / "out", golden=golden))
    rows = {r["post_id"]: r for r in read(tmp_path / "out" / "golden.jsonl")}
    assert rows["post-3"]["text"] == "post number 3"
    assert (rows["post-4"]["text"], rows["post-4"]["label"]) == ("pinned text", "safe")


def test_multi_label_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    multi = [Label(post_id="m1", text="both", labels=("spam", "hate"), source="human", labelled_at=T0),
             Label(post_id="m2", text="one", labels=("spam",), source="human", labelled_at=T0)]
    report = export_dataset(pa.concat_tables([dataset(50), to_table(multi, T0)]), ExportOptions(out=tmp_path))
    assert report.skipped == {"multi_label": 1}
    everything = {row["post_id"]: row["label"] for name in ("train", "val", "test")
                  for row in read(tmp_path / f"{name}.jsonl")}
    assert "m1" not in everything and everything["m2"] == "spam"


def test_export_reads_the_current_view_of_a_store(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "ds")
    store.append(labels(30))
    store.append([Label(post_id="post-0", text="reviewed", label="hate", source="human", labelled_at=T0)])
    export_dataset(store.current(), ExportOptions(out=tmp_path / "out"))
    rows = {r["post_id"]: r for name in ("train", "val", "test") for r in read(tmp_path / "out" / f"{name}.jsonl")}
    assert len(rows) == 30 and (rows["post-0"]["label"], rows["post-0"]["source"]) == ("hate", "human")


def test_an_empty_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data/dataset: the dataset has no labels: run `modcascade worker feedback`"):
        export_dataset(dataset(0), ExportOptions(out=tmp_path, source="data/dataset"))


@pytest.mark.parametrize(("fractions", "message"), [
    ((0.8, 0.1, 0.2), "add up to 1.1"),
    ((1.2, -0.1, -0.1), "outside"),
    ((0.0, 0.5, 0.5), "train fraction is 0"),
])
def test_bad_fractions_are_refused(fractions: tuple[float, float, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SplitFractions(*fractions)


def test_a_golden_set_needs_a_test_split_to_come_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too few to set a golden set aside"):
        export_dataset(dataset(50), ExportOptions(out=tmp_path, fractions=SplitFractions(0.9, 0.1, 0.0),
                                                  golden=tmp_path / "golden.jsonl"))
    assert not (tmp_path / "golden.jsonl").exists()


def test_a_broken_golden_file_names_the_line(tmp_path: Path) -> None:
    golden = tmp_path / "golden.jsonl"
    golden.write_text('{"post_id": "post-1"}\n{"text": "no id"}\n')
    with pytest.raises(ConfigError, match=r"golden.jsonl:2: post_id: missing"):
        export_dataset(dataset(10), ExportOptions(out=tmp_path / "out", golden=golden))
