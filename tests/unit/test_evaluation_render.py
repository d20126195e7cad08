"""The human-facing outputs render from synthetic reports: Markdown, terminal tables and PNG plots."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from pipeline.evaluation import CalibrateOptions, Targets, calibrate_scores, evaluate_scores, plots, render
from pipeline.evaluation.report import DataSummary, ModelSummary
from tests.support.evaluation import default_policy, policy_labels, synthetic_scores

POLICY = default_policy()
LABELS = policy_labels(POLICY)
MODEL = ModelSummary("m", "v1")


def test_eval_outputs_render(tmp_path: Path) -> None:
    scored = synthetic_scores(LABELS, 400, seed=21)
    report = evaluate_scores(scored, POLICY, model=MODEL, data=DataSummary("d.jsonl", 400, "ab" * 32))
    written = [plots.reliability_diagram(tmp_path / "r.png", {"model": report.reliability}, "t"),
               plots.confusion_plot(tmp_path / "c.png", report.labels, report.confusion, "t")]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)
    markdown = render.eval_markdown(report, ["r.png", "c.png"])
    assert "| safe |" in markdown and "## Cascade view" in markdown and "![r](r.png)" in markdown
    out = io.StringIO()
    render.print_eval(Console(file=out, width=200), report, str(tmp_path))
    assert "macro-F1" in out.getvalue() and "escalations by category" in out.getvalue()


def test_calibration_outputs_render(tmp_path: Path) -> None:
    scored = synthetic_scores(LABELS, 2000, seed=22)
    report = calibrate_scores(scored, POLICY, CalibrateOptions(Targets(max_escalation=0.05), method="isotonic"),
                              model=MODEL)
    assert report.proposal.capped
    path = plots.escalation_curve(tmp_path / "e.png", report.curve, proposed=report.proposal.narrowing,
                                  live=report.live, title="t")
    assert path.read_bytes().startswith(b"\x89PNG")
    markdown = render.calibration_markdown(report, diff_name="policy.diff", proposed_name="p.yaml", plots=["e.png"])
    assert "(proposed)" in markdown and "no longer guaranteed" in markdown and "P(category)" in markdown
    out = io.StringIO()
    render.print_calibration(Console(file=out, width=250), report, str(tmp_path))
    assert "escalation rate vs quality" in out.getvalue()
