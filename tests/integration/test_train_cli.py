"""`modcascade train` as a user runs it: clear one-line errors on bad data, and a model + card on good data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import codec

pytestmark = pytest.mark.model

SEED = Path("pipeline/data/seed_corpus.jsonl")


def modcascade(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=240, check=False, env={"HF_HUB_OFFLINE": "1", "COLUMNS": "200",
                                                         "PATH": "/usr/bin:/bin"})


def test_a_file_without_the_label_column_is_a_one_line_error_naming_the_columns(tmp_path: Path) -> None:
    data = tmp_path / "posts.jsonl"
    data.write_text('{"text": "hello", "category": "safe"}\n{"text": "buy now", "category": "spam"}\n')
    result = modcascade("train", "--data", str(data), "--out", str(tmp_path / "m"))
    assert result.returncode == 2
    assert str(data) in result.stderr and "label" in result.stderr and "category" in result.stderr
    assert "Traceback" not in result.stderr


def test_labels_outside_the_policy_taxonomy_are_rejected_before_training(tmp_path: Path) -> None:
    data = tmp_path / "posts.jsonl"
    data.write_text("".join(codec.dumps({"text": f"post {i}", "label": "scam" if i % 2 else "safe"}).decode() + "\n"
                            for i in range(10)))
    result = modcascade("train", "--data", str(data), "--out", str(tmp_path / "m"), "--policy",
                        "policies/default.yaml")
    assert result.returncode == 2
    assert "scam" in result.stderr and "taxonomy" in result.stderr
    assert not (tmp_path / "m").exists()


def test_training_writes_a_model_and_a_card_with_the_baseline(tmp_path: Path) -> None:
    rows = [codec.loads(line) for line in SEED.read_bytes().splitlines()]
    picked = [r for r in rows if r["label"] in {"safe", "spam", "harassment"}][::8]  # ~350 rows, 3 labels
    data = tmp_path / "small.jsonl"
    data.write_bytes(b"".join(codec.dumps(r) + b"\n" for r in picked))
    out = tmp_path / "model"
    result = modcascade("train", "--data", str(data), "--out", str(out), "--policy", "policies/default.yaml",
                        "--epochs", "1", "--max-length", "32", "--batch-size", "16", "--threads", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "baseline" in result.stdout and "macro-F1" in result.stdout
    card = codec.loads((out / "model_card.json").read_bytes())
    assert card["labels"] == ["harassment", "safe", "spam"]
    assert 0.0 <= card["validation"]["macro_f1"] <= 1.0
    assert 0.0 <= card["baseline"]["macro_f1"] <= 1.0 and card["baseline"]["method"].startswith("tfidf")
    assert (out / "MODEL_CARD.md").read_text().count("Baseline on the same split") == 1
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
