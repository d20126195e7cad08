"""`modcascade eval` and `modcascade calibrate`: read the inputs, call the library, write the outputs, print.

Outputs go to ``--out``, by default ``runs/eval/<model version>`` and ``runs/calibrate/<model version>``:

    eval        eval.json, eval.md, reliability.png, confusion.png
    calibrate   calibration.json, calibration.md, policy.diff, <policy file stem>.proposed.yaml,
                reliability.png (before / after calibration), escalation_curve.png

``calibrate`` never writes the live policy file: ops review ``policy.diff`` and apply it themselves.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console

from pipeline import codec
from pipeline.backends.base import LabelMap, ModelInfo
from pipeline.dataset.stats import live_precision
from pipeline.errors import ConfigError
from pipeline.evaluation import plots, render
from pipeline.evaluation.bands import Targets
from pipeline.evaluation.calibrate import CalibrateOptions, CalibrationReport, calibrate_scores
from pipeline.evaluation.calibration import METHODS, Method
from pipeline.evaluation.policy_text import propose_policy
from pipeline.evaluation.report import EvalReport, LiveView, ModelSummary, evaluate_model
from pipeline.evaluation.scoring import ScoringOptions, score_examples
from pipeline.evaluation.thresholds import PRECISION_RULES, PrecisionRule
from pipeline.monitor.baseline import baseline_from_scores, save_baseline
from pipeline.policy import Policy, load_policy
from pipeline.training.data import load_examples

EVAL_ROOT = Path("runs/eval")
_METHODS: dict[str, Method] = {m: m for m in METHODS}
_RULES: dict[str, PrecisionRule] = {r: r for r in PRECISION_RULES}
CALIBRATE_ROOT = Path("runs/calibrate")


def scoring_options(*, max_length: int | None, batch_size: int, threads: int | None) -> ScoringOptions:
    """Scoring as the stream scores: ``max_length`` and ``threads`` default to the model settings."""
    from pipeline.settings import load_settings

    model = load_settings().model
    return ScoringOptions(max_length=max_length or model.max_length, batch_size=batch_size,
                          threads=threads or model.threads)


def calibrate_options(*, target_precision: float, max_miss_rate: float, max_escalation: float | None,
                      precision_rule: str, method: str) -> CalibrateOptions:
    """Options from the command line; an unknown method or rule is a ConfigError naming the choices."""
    chosen = _METHODS.get(method)
    if chosen is None:
        raise ConfigError(f"--method {method!r}: use one of {', '.join(METHODS)}")
    rule = _RULES.get(precision_rule)
    if rule is None:
        raise ConfigError(f"--precision-rule {precision_rule!r}: use one of {', '.join(PRECISION_RULES)}")
    return CalibrateOptions(Targets(precision=target_precision, max_miss_rate=max_miss_rate,
                                    max_escalation=max_escalation, rule=rule), method=chosen)


def run_eval(console: Console, *, model: Path, data: Path, policy_path: Path | None, out: Path | None,
             scoring: ScoringOptions, live: Path | None = None) -> EvalReport:
    examples = load_examples(data)
    policy = None if policy_path is None else load_policy(policy_path)
    live_view = None if live is None else live_precision_of(live, policy)
    console.print(f"evaluating {model} on {len(examples):,} rows from {data}"
                  + ("" if policy is None else f" with policy {policy.name} {policy.version}"))
    report = evaluate_model(model, examples, policy, data_path=data, options=scoring, console=console)
    if live_view is not None:
        report = dataclasses.replace(report, live=live_view)
    out_dir = out or EVAL_ROOT / report.model.version
    _write_json(out_dir / "eval.json", report.to_json())
    title = f"{report.model.name} {report.model.version}"
    written = [
        plots.reliability_diagram(out_dir / "reliability.png", {"model": report.reliability},
                                  f"reliability: {title}\nECE {report.ece:.3f}"),
        plots.confusion_plot(out_dir / "confusion.png", report.labels, report.confusion, f"confusion: {title}"),
    ]
    (out_dir / "eval.md").write_text(render.eval_markdown(report, [p.name for p in written]), encoding="utf-8")
    render.print_eval(console, report, str(out_dir))
    return report


def live_precision_of(folder: Path, policy: Policy | None) -> LiveView:
    """Live precision per category from the audit labels of the dataset at ``folder``; the safe class comes from
    ``policy``, else from the workers' policy (MODCASCADE_POLICY_PATH)."""
    from pipeline.dataset.command import open_store
    from pipeline.settings import load_settings

    safe = (policy or load_policy(load_settings().policy_path)).taxonomy.safe
    categories, audits = live_precision(open_store(folder).rows(), safe=safe)
    return LiveView(str(folder), audits, categories)


def run_calibrate(console: Console, *, model: Path, data: Path, policy_path: Path, out: Path | None,
                  options: CalibrateOptions, scoring: ScoringOptions) -> CalibrationReport:
    examples = load_examples(data)
    policy = load_policy(policy_path)
    LabelMap.for_policy(ModelInfo.from_dir(model).labels, policy)  # before the model is loaded
    console.print(f"calibrating {model} for policy {policy.name} {policy.version} on {len(examples):,} rows "
                  f"from {data} ({options.method})")
    info, scored = score_examples(model, examples, scoring, console)
    report = calibrate_scores(scored, policy, options, model=ModelSummary.from_info(info))

    out_dir = out or CALIBRATE_ROOT / info.version
    proposed_path = out_dir / f"{policy_path.stem}.proposed.yaml"
    proposal = propose_policy(policy_path.read_text(encoding="utf-8"), policy, report.proposal.bands(),
                              live_name=str(policy_path), proposed_name=str(proposed_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    proposed_path.write_text(proposal.text, encoding="utf-8")
    (out_dir / "policy.diff").write_text(proposal.diff, encoding="utf-8")
    _write_json(out_dir / "calibration.json", report.to_json())
    # The drift monitor's baseline for this model (monitor.reference: baseline): its raw scores, as served.
    baseline = baseline_from_scores((dict(zip(scored.labels, map(float, row), strict=True)) for row in scored.probs),
                                    policy, model=info.name, model_version=info.version)
    save_baseline(baseline, out_dir / "monitor-baseline.json")
    title = f"{info.name} {info.version}"
    written = [
        plots.reliability_diagram(out_dir / "reliability.png",
                                  {"raw": report.reliability_before, report.method: report.reliability_after},
                                  f"{title}, check half\nECE {report.ece_before:.3f} raw, "
                                  f"{report.ece_after:.3f} {report.method}"),
        plots.escalation_curve(out_dir / "escalation_curve.png", report.curve, proposed=report.proposal.narrowing,
                               live=report.live, title=f"{title}, policy {policy.name}\nband width sweep (check half)"),
    ]
    (out_dir / "calibration.md").write_text(
        render.calibration_markdown(report, diff_name="policy.diff", proposed_name=proposed_path.name,
                                    plots=[p.name for p in written]), encoding="utf-8")
    render.print_calibration(console, report, str(out_dir))
    if not proposal.diff:
        console.print("the proposed bands equal the live ones: policy.diff is empty")
    return report


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(codec.dumps_pretty(data))
