"""`modcascade dataset stats | export | compact`, run as a user runs them (no broker needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.dataset.store import DatasetStore
from pipeline.records import Label
from pipeline.training.data import load_examples
from tests.support.samples import SCORES, T0

REPO = Path(__file__).resolve().parents[2]


def modcascade(*args: str, dataset: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODCASCADE_")}
    env.update({"MODCASCADE_FEEDBACK_DATASET_DIR": str(dataset), "COLUMNS": "160"})
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "dataset"
    store = DatasetStore(folder)
    store.append([Label(post_id=f"p{i}", text=f"post {i}", label=("safe", "spam")[i % 2], source="frontier",
                        model_scores=SCORES, labelled_at=T0 + timedelta(hours=i)) for i in range(60)])
    store.append([Label(post_id="p1", text="post 1", label="safe", source="human", labelled_at=T0)])
    return folder


@pytest.mark.tools
def test_stats_prints_counts_and_disagreement(dataset: Path) -> None:
    result = modcascade("dataset", "stats", dataset=dataset)
    assert result.returncode == 0, result.stderr
    assert f"60 labelled posts in {dataset}" in result.stdout
    assert "small model vs adjudicator" in result.stdout and "2026-11-26" in result.stdout


@pytest.mark.tools
def test_export_writes_splits_that_train_can_read(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = modcascade("dataset", "export", "--out", str(out), "--golden", str(tmp_path / "golden.jsonl"),
                        "--golden-size", "2", dataset=dataset)
    assert result.returncode == 0, result.stderr
    assert "created (reused as is by later exports)" in result.stdout
    for name in ("train", "val", "test", "golden"):
        assert (out / f"{name}.jsonl").exists()
    assert len(load_examples(out / "train.jsonl")) > 30
    assert (out / "manifest.json").exists()


@pytest.mark.tools
def test_export_of_an_empty_dataset_names_the_folder_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = modcascade("dataset", "export", "--out", str(tmp_path / "out"), "--dir", str(tmp_path / "empty"),
                        dataset=tmp_path / "unused")
    assert result.returncode == 2
    assert "the dataset has no labels: run `modcascade worker feedback`" in result.stderr
    assert str(tmp_path / "empty") in result.stderr


@pytest.mark.tools
def test_a_missing_dataset_folder_is_an_error_not_an_empty_dataset(tmp_path: Path) -> None:
    result = modcascade("dataset", "stats", dataset=tmp_path / "typo")
    assert result.returncode == 2
    assert "no dataset there: pass --dir" in result.stderr


@pytest.mark.tools
def test_compact_drops_superseded_rows(dataset: Path) -> None:
    result = modcascade("dataset", "compact", dataset=dataset)
    assert result.returncode == 0, result.stderr
    assert "61 rows" in result.stdout and "60 rows" in result.stdout
    assert DatasetStore(dataset).rows().num_rows == 60
