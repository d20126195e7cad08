"""The promotion gate (pure, on synthetic evaluations) and the model registry (on tiny model directories)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.evaluation.report import DataSummary, EvalReport, ModelSummary, evaluate_scores
from pipeline.promotion.gate import Tolerances, gate
from pipeline.promotion.registry import ModelRegistry
from tests.support.evaluation import default_policy, policy_labels, synthetic_scores

LABELS = policy_labels(default_policy())
DATA = DataSummary(path="golden.jsonl", rows=2000, sha256="same-golden")


def report(separation: float, *, seed: int = 1, data: DataSummary = DATA, noise: float = 1.2) -> EvalReport:
    scored = synthetic_scores(LABELS, 2000, seed=seed, separation=separation, noise=noise)
    return evaluate_scores(scored, None, model=ModelSummary("m", f"v{separation}"), data=data)


def test_a_better_candidate_passes_every_check() -> None:
    decision = gate(report(5.0), report(2.5), Tolerances())
    assert decision.accepted and decision.reasons == ()
    assert [c.name.split(" (")[0] for c in decision.checks] == ["macro-F1", "worst-slice F1", "ECE"]


def test_a_worse_candidate_is_refused_with_the_reasons() -> None:
    decision = gate(report(2.0), report(4.0), Tolerances())
    assert not decision.accepted
    assert any(r.startswith("macro-F1") for r in decision.reasons)
    assert any(r.startswith("worst-slice F1") for r in decision.reasons)


def test_the_same_model_passes_and_tolerances_allow_a_small_drop() -> None:
    same = report(3.0)
    assert gate(same, same, Tolerances(0.0, 0.0, 0.0)).accepted
    slightly_worse = report(3.0, seed=2)  # another sample: a little noise either way
    drop = same.macro_f1 - slightly_worse.macro_f1
    assert gate(slightly_worse, same, Tolerances(macro_f1=abs(drop) + 0.01, worst_slice=0.2, ece=0.2)).accepted


def test_a_worse_calibrated_candidate_is_refused_even_with_a_better_f1() -> None:
    candidate, current = report(3.0), report(2.5)  # on this synthetic data: higher F1, higher ECE
    assert candidate.macro_f1 > current.macro_f1 and candidate.ece > current.ece + 0.01
    decision = gate(candidate, current, Tolerances())
    assert not decision.accepted
    assert [r.split(" ")[0] for r in decision.reasons] == ["ECE"]


def test_different_data_or_labels_are_refused() -> None:
    other = DataSummary(path="x", rows=10, sha256="other")
    assert "different data" in gate(report(4.0, data=other), report(3.0), Tolerances()).reasons[0]


def model_dir(root: Path, version: str) -> Path:
    path = root / f"build-{version}"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"id2label": dict(enumerate(LABELS))}))
    (path / "model_card.json").write_text(json.dumps({"version": version, "labels": list(LABELS)}))
    return path


def test_promote_adopts_a_plain_current_directory_then_rollback_returns_to_it(tmp_path: Path) -> None:
    pointer = tmp_path / "models" / "current"
    pointer.parent.mkdir()
    model_dir(tmp_path, "demo").rename(pointer)  # what `make run` leaves: a plain directory
    registry = ModelRegistry(tmp_path / "models" / "releases", pointer)

    release = registry.promote(model_dir(tmp_path, "v2"))
    assert pointer.is_symlink() and pointer.resolve() == release.resolve() and registry.current_version == "v2"
    assert (tmp_path / "models" / "releases" / "demo" / "config.json").exists()
    registry.promote(model_dir(tmp_path, "v3"))
    assert registry.current_version == "v3"

    assert registry.rollback() == "v2" and registry.current_version == "v2"
    assert registry.rollback() == "demo" and registry.current_version == "demo"
    with pytest.raises(ConfigError, match="nothing to roll back to"):
        registry.rollback()
    assert [(c.action, c.source, c.target) for c in registry.history()] == [
        ("adopt", None, "demo"), ("promote", "demo", "v2"), ("promote", "v2", "v3"), ("rollback", "v3", "v2"),
        ("rollback", "v2", "demo")]


def test_the_pointer_is_relative_so_the_models_folder_can_move(tmp_path: Path) -> None:
    pointer = tmp_path / "models" / "current"
    registry = ModelRegistry(tmp_path / "models" / "releases", pointer)
    registry.promote(model_dir(tmp_path, "v1"))
    assert pointer.readlink() == Path("releases/v1")
    (tmp_path / "models").rename(tmp_path / "moved")
    assert ModelRegistry(tmp_path / "moved" / "releases", tmp_path / "moved" / "current").current_version == "v1"
