"""``modcascade backtest`` as a command, on a tiny random Qwen2 (pipeline.training.tiny) trained here in seconds:
a second policy's report and the diff of changed posts; a run interrupted after some windows resumes to the same
report; ``--loop`` writes its learning curve, one checkpoint per round, and resumes without retraining."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from pipeline import codec
from pipeline.backtest.command import BacktestCommand, LoopOptions, run_backtest_command
from pipeline.settings import Settings
from pipeline.training.card import write_card
from pipeline.training.config import TrainConfig
from pipeline.training.data import load_examples
from pipeline.training.tiny import build_tiny_decoder, train_tokenizer
from pipeline.training.trainer import train
from tests.support import REPO

pytestmark = [pytest.mark.model]

SEED_CORPUS = REPO / "pipeline" / "data" / "seed_corpus.jsonl"
DEFAULT, STRICT = REPO / "policies" / "default.yaml", REPO / "policies" / "strict.yaml"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    tokenizer = train_tokenizer([e.text for e in load_examples(SEED_CORPUS)[:1000]], 600, root / "tokenizer")
    return build_tiny_decoder(root / "base", tokenizer)


@pytest.fixture(scope="module")
def model(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = TrainConfig(base_model=base, epochs=1, max_length=64, learning_rate=2e-3, num_threads=2, lora_r=4,
                         lora_alpha=8)
    out = tmp_path_factory.mktemp("models") / "tiny"
    write_card(train(config, load_examples(SEED_CORPUS)[:200], out, progress=False))
    return out


def history(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(SEED_CORPUS.read_bytes().splitlines()[:n]) + b"\n")
    return path


def outcomes(folder: Path) -> dict[str, dict[str, Any]]:
    return {o["id"]: o for f in sorted(folder.iterdir()) for o in map(codec.loads, f.read_bytes().splitlines())}


def without_seconds(runs: dict[str, Any]) -> dict[str, Any]:
    return {tag: {k: v for k, v in run.items() if k != "seconds"} for tag, run in runs.items()}


def settings() -> Settings:
    s = Settings(policy_path=DEFAULT)
    return s.model_copy(update={"model": s.model.model_copy(update={"max_length": 64, "threads": 2})})


async def test_compare_reports_both_policies_and_the_changed_posts_and_a_stopped_run_resumes(
        model: Path, tmp_path: Path) -> None:
    command = BacktestCommand(data=history(tmp_path, 200), out=tmp_path / "out", model=model, compare=STRICT,
                              adjudicator="labels", backend="transformers", window_size=80, progress=False)
    quiet = Console(quiet=True)
    report = await run_backtest_command(quiet, settings(), command)
    runs = report["runs"]
    assert runs["policy"]["posts"] == runs["compare"]["posts"] == 200
    assert runs["compare"]["escalation_rate"] >= runs["policy"]["escalation_rate"]  # strict's bands are wider
    for run in runs.values():  # the history's labels settle escalations: paid nothing, priced at list
        assert run["cost"]["frontier_usd"] == 0.0
        assert run["cost"]["would_be_frontier_usd"] > 0 or run["escalated"] == 0
    diff = [codec.loads(line) for line in (tmp_path / "out" / "diff.jsonl").read_bytes().splitlines()]
    assert len(diff) == report["diff"]["changed"] > 0
    windows = tmp_path / "out" / "windows"
    before, after = outcomes(windows / "policy"), outcomes(windows / "compare")
    changed = {i for i in before if (before[i]["stage"], before[i]["decision"], before[i]["category"])
               != (after[i]["stage"], after[i]["decision"], after[i]["category"])}
    assert {d["id"] for d in diff} == changed

    # Stopped after the first window of the second policy: the same command redoes only what is missing.
    for name in ("w0001.jsonl", "w0002.jsonl"):
        (windows / "compare" / name).unlink()
    again = await run_backtest_command(quiet, settings(), command)
    assert without_seconds(again["runs"]) == without_seconds(report["runs"]) and again["diff"] == report["diff"]
    assert again["runs"]["policy"]["seconds"]["classify"] == 0.0  # nothing of the first policy was redone


async def test_the_loop_writes_its_learning_curve_and_resumes_without_retraining(base: Path, tmp_path: Path) -> None:
    command = BacktestCommand(
        data=history(tmp_path, 260), out=tmp_path / "loop", policy=STRICT, adjudicator="labels",
        backend="transformers", progress=False,
        loop=LoopOptions(rounds=2, seed_labels=100, golden=60, epochs=1, base_model=base, max_length=64))
    quiet = Console(quiet=True)
    report = await run_backtest_command(quiet, settings(), command)
    rows = report["rows"]
    assert [r["round"] for r in rows] == [0, 1] and [r["posts"] for r in rows] == [50, 50]
    assert rows[0]["promoted"] is None and rows[1]["promoted"] in (True, False)
    assert rows[1]["reference_f1"] is not None and rows[0]["seconds"]["train"] > 0
    assert rows[0]["frontier_calls"] > 0  # strict escalates and audits: labels to learn from
    out = tmp_path / "loop"
    assert (out / "learning-curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 1 |" in (out / "learning-curve.md").read_text()
    trained = {p: p.stat().st_mtime_ns for p in (out / "models").glob("*/config.json")}
    assert len(trained) == 3  # start, the round-1 candidate, the reference

    again = await run_backtest_command(quiet, settings(), command)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in again["rows"]] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert {p: p.stat().st_mtime_ns for p in (out / "models").glob("*/config.json")} == trained
