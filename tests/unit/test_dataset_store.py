"""The dataset store: precedence, de-duplication across appends and restarts, atomic files, provenance."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from pipeline.dataset.store import SCHEMA, DatasetStore, Precedence
from pipeline.errors import ConfigError
from pipeline.records import Label, LabelSource
from tests.support.samples import SCORES, T0


def label(post_id: str, value: str = "spam", source: LabelSource = "frontier", at: datetime = T0,
          text: str = "buy now") -> Label:
    return Label(post_id=post_id, text=text, label=value, source=source, labelled_at=at, model_scores=SCORES,
                 model_version="m-1", policy_version="p-1", confidence=0.9)


def winners(store: DatasetStore) -> dict[str, tuple[str, str]]:
    return {row["post_id"]: (row["label"], row["source"]) for row in store.current().to_pylist()}


def test_an_empty_or_missing_folder_is_an_empty_dataset(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "absent")
    assert len(store) == 0
    assert store.current().num_rows == 0
    assert store.current().schema == SCHEMA
    assert not (tmp_path / "absent").exists(), "reading must not create the folder"


def test_a_file_where_the_folder_should_be_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("oops")
    with pytest.raises(ConfigError, match="MODCASCADE_FEEDBACK_DATASET_DIR"):
        DatasetStore(tmp_path / "data")


def test_rows_keep_their_provenance_and_land_in_the_day_of_labelled_at(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    late = datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)
    naive = datetime(2026, 11, 25, 0, 0, 1)  # no zone: taken as UTC
    before = datetime.now(UTC)
    store.append([label("a", at=late), label("b", at=naive)])
    assert sorted(p.parent.name for p in store.files()) == ["day=2026-11-24", "day=2026-11-25"]
    row = store.current().to_pylist()[0]
    assert row["post_id"] == "a" and row["source"] == "frontier" and row["label"] == "spam"
    assert dict(row["model_scores"]) == SCORES
    assert (row["model_version"], row["policy_version"], row["confidence"]) == ("m-1", "p-1", 0.9)
    assert row["labelled_at"] == late
    assert before <= row["written_at"] <= datetime.now(UTC)
    # Hive-style partitions: other tools read the folder as one table with a day column.
    table = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table()
    assert sorted(table["day"].to_pylist()) == ["2026-11-24", "2026-11-25"]


def test_a_batch_appended_again_adds_no_rows(tmp_path: Path) -> None:
    batch = [label(f"p{i}") for i in range(20)]
    store = DatasetStore(tmp_path)
    first = store.append(batch)
    again = store.append(batch)
    assert len(first.written) == 20
    assert again.written == () and again.files == ()
    assert {reason for _, reason in again.skipped} == {"duplicate"}
    assert store.rows().num_rows == 20


def test_the_index_survives_a_restart(tmp_path: Path) -> None:
    batch = [label(f"p{i}") for i in range(5)]
    DatasetStore(tmp_path).append(batch)
    reopened = DatasetStore(tmp_path)  # a worker restarted after a crash sees the batch re-delivered
    assert len(reopened) == 5
    assert reopened.append(batch).written == ()
    assert reopened.rows().num_rows == 5


def test_human_overrides_frontier_whatever_the_times(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    store.append([label("a", "spam", "frontier", T0)])
    store.append([label("a", "safe", "human", T0 - timedelta(days=2))])
    late_frontier = store.append([label("a", "hate", "frontier", T0 + timedelta(days=1))])
    assert late_frontier.skipped[0][1] == "superseded"
    assert winners(store) == {"a": ("safe", "human")}
    assert store.rows().num_rows == 2, "the superseded frontier row stays on disk for provenance"


def test_frontier_overrides_import(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    store.append([label("a", "safe", "import", T0 + timedelta(days=1))])
    store.append([label("a", "spam", "frontier", T0)])
    assert winners(store) == {"a": ("spam", "frontier")}


def test_the_newest_label_wins_within_a_source(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    store.append([label("a", "spam", "human", T0)])
    store.append([label("a", "safe", "human", T0 + timedelta(hours=1))])
    older = store.append([label("a", "hate", "human", T0 - timedelta(hours=1))])
    assert older.skipped[0][1] == "superseded"
    assert winners(store) == {"a": ("safe", "human")}


def test_within_one_batch_only_each_posts_best_label_is_written(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    result = store.append([label("a", "spam", "frontier"), label("a", "safe", "human"), label("a", "hate", "import"),
                           label("b", "spam")])
    assert sorted((w.post_id, w.label) for w in result.written) == [("a", "safe"), ("b", "spam")]
    assert sorted(reason for _, reason in result.skipped) == ["superseded", "superseded"]
    assert store.rows().num_rows == 2


def test_equal_precedence_keeps_the_first_label_written(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    store.append([label("a", "spam")])
    assert store.append([label("a", "hate")]).skipped[0][1] == "duplicate"
    assert winners(store) == {"a": ("spam", "frontier")}


def test_precedence_orders_by_source_then_time() -> None:
    assert Precedence.of(label("a", source="human", at=T0)) > Precedence.of(label("a", at=T0 + timedelta(days=9)))
    assert Precedence.of(label("a", at=T0 + timedelta(microseconds=1))) > Precedence.of(label("a", at=T0))


def test_current_resolves_rows_two_writers_wrote_for_one_post(tmp_path: Path) -> None:
    """Two workers after a rebalance: each appended with its own index; the view still shows one winner."""
    one, two = DatasetStore(tmp_path), DatasetStore(tmp_path)
    one.append([label("a", "spam", "frontier", T0)])
    two._index.clear()  # as if it had opened before the other wrote
    two._seen.update(one.files())
    two.append([label("a", "safe", "human", T0)])
    one.append([label("a", "hate", "frontier", T0 + timedelta(hours=1))])  # refreshes first: sees the human row
    assert winners(DatasetStore(tmp_path)) == {"a": ("safe", "human")}
    assert DatasetStore(tmp_path).rows().num_rows == 2


def test_a_writer_killed_mid_file_leaves_no_partial_data(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    store.append([label("a")])
    day = store.files()[0].parent
    orphan = day / ".part-killed.parquet.1234abcd.tmp"  # what a SIGKILL during the write leaves
    orphan.write_bytes(b"PAR1 half a file")
    assert DatasetStore(tmp_path).current().num_rows == 1
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    DatasetStore(tmp_path)  # opening cleans up temp files old enough to be nobody's
    assert not orphan.exists()


def test_compact_keeps_only_the_winners_and_the_same_view(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    for hour in range(3):
        store.append([label(f"p{i}", f"v{hour}", at=T0 + timedelta(hours=hour)) for i in range(10)])
    store.append([label("p0", "safe", "human", T0 - timedelta(days=1))])
    before = store.current()
    result = store.compact()
    assert (result.rows_before, result.rows_after) == (31, 10)
    assert result.files_after == 2  # one per day: the human row is a day earlier
    reopened = DatasetStore(tmp_path)
    assert reopened.current().to_pylist() == before.to_pylist()
    assert reopened.append([label("p1", "v2", at=T0 + timedelta(hours=2))]).written == ()
