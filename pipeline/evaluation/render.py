"""Reports for people: the Markdown files and the terminal summaries of `eval` and `calibrate`.

Each table is built once as rows of strings and rendered twice (Markdown and rich), so the file and the
terminal always show the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.dataset.stats import render_live
from pipeline.evaluation.calibrate import CalibrationReport
from pipeline.evaluation.cascade import CascadeView
from pipeline.evaluation.report import EvalReport, LiveView


@dataclass(frozen=True, slots=True)
class TableData:
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", f"| {' | '.join(self.header)} |",
                 "|" + "|".join("---" for _ in self.header) + "|"]
        lines += [f"| {' | '.join(row)} |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def rich(self) -> Table:
        table = Table(title=self.title, title_justify="left")
        for i, column in enumerate(self.header):
            table.add_column(column, justify="left" if i == 0 else "right")
        for row in self.rows:
            table.add_row(*row)
        return table


GLOSSARY = ("kept accuracy: of the posts the small model settled alone, the share whose decision names the true "
            "class; act precision: of its blocks and reviews, the share with the acting category as the true label; "
            "harm allowed: of the posts with a harmful label, the share it allowed outright; $/1k: estimated cost "
            "per 1,000 posts with the policy's prices (no cache).")


def num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def usd(value: float) -> str:
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


# -- eval ---------------------------------------------------------------------------------------------------


def per_class_table(report: EvalReport) -> TableData:
    rows = tuple((label, num(s["precision"]), num(s["recall"]), num(s["f1"]), str(s["support"]))
                 for label, s in report.per_class.items())
    return TableData("per class", ("label", "precision", "recall", "F1", "support"), rows)


def cascade_table(views: Sequence[tuple[str, CascadeView]], title: str) -> TableData:
    rows = tuple(
        (name, pct(v.escalation_rate), f"{v.kept:,}", pct(v.kept_accuracy), pct(v.action_precision),
         pct(v.missed_harm_rate), usd(v.cost.cascade_usd), usd(v.cost.all_frontier_usd))
        for name, v in views)
    return TableData(title, ("", "escalated", "kept", "kept accuracy", "act precision", "harm allowed",
                             "$/1k cascade", "$/1k all-frontier"), rows)


def headline(report: EvalReport) -> str:
    w = report.worst_slice
    return (f"macro-F1 {report.macro_f1:.4f}, accuracy {report.accuracy:.4f}, ECE {report.ece:.4f}; worst slice: "
            f"lowest F1 {w.lowest_f1.label} {w.lowest_f1.f1:.3f} ({w.lowest_f1.support} rows), rarest "
            f"{w.rarest.label} ({w.rarest.support} rows, F1 {w.rarest.f1:.3f})")


def eval_markdown(report: EvalReport, plots: Sequence[str]) -> str:
    m, d = report.model, report.data
    parts = [f"# Evaluation of {m.name} {m.version}\n",
             f"Data: {d.path or '(in memory)'}, {d.rows:,} rows, sha256 {d.sha256[:12]}.\n",
             headline(report) + ".\n", per_class_table(report).markdown(),
             "ECE is the expected calibration error over 15 bins of the top probability; the reliability diagram "
             "shows those bins.\n"]
    if report.cascade is not None:
        c = report.cascade
        parts.append(f"## Cascade view: policy {c.policy_name} {c.policy_version}\n")
        parts.append(cascade_table([("policy", c)], "cascade").markdown())
        outcomes = ", ".join(f"{kind} {n:,}" for kind, n in c.outcomes.items())
        by_category = ", ".join(f"{cat} {n:,}" for cat, n in c.escalations_by_category.items() if n) or "none"
        parts.append(f"Outcomes: {outcomes}. Escalations by category: {by_category}.\n")
        parts.append(GLOSSARY + "\n")
    if report.live is not None:
        parts.append(live_markdown(report.live))
    parts += [f"![{Path(p).stem}]({p})\n" for p in plots]
    return "\n".join(parts)


def print_eval(console: Console, report: EvalReport, out_dir: str) -> None:
    console.print(per_class_table(report).rich())
    console.print(headline(report))
    if report.cascade is not None:
        c = report.cascade
        console.print(cascade_table([(f"{c.policy_name} {c.policy_version}", c)], "cascade view").rich())
        by_category = ", ".join(f"{cat} {n:,}" for cat, n in c.escalations_by_category.items() if n) or "none"
        console.print(f"escalations by category: {by_category}")
        console.print(GLOSSARY, style="dim")
    if report.live is not None:
        render_live(report.live.categories, console, audits=report.live.audits)
    console.print(f"report written to [bold]{out_dir}[/] (eval.json, eval.md, plots)")


def live_markdown(live: LiveView) -> str:
    """The live precision section of eval.md (from the dataset's audit sample)."""
    head = f"## Live precision (audit sample of {live.dataset})\n"
    if not live.categories:
        return head + "\nNo audit labels yet: set the policy's audit rates to measure live precision.\n"
    rows = ["| category | audited | confirmed | precision | 95% Wilson interval | frontier agreed | human reviewed |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    rows += [f"| {c.category} | {c.precision.n:,} | {c.precision.successes:,} | {c.precision.estimate:.1%} | "
             f"{c.precision.low:.1%} to {c.precision.high:.1%} | {c.frontier_agreed:,} | {c.reviewed:,} |"
             for c in live.categories]
    note = ("Of the small model's final verdicts drawn into the audit sample, the share whose category the post's "
            "best label (a human's where reviewed, else the frontier's) confirms; a property of the deployed "
            "cascade, not of the model evaluated above.")
    return head + "\n" + "\n".join(rows) + "\n\n" + note + "\n"


# -- calibrate ----------------------------------------------------------------------------------------------


def bands_table(report: CalibrationReport) -> TableData:
    proposals = {c.category: c for c in report.proposal.categories}
    isotonic = any(check.calibrated is not None for check in report.checks)
    with_notes = any(c.notes for c in report.proposal.categories)
    rows = []
    for check in report.checks:
        was = proposals[check.category].current
        row = [check.category, f"{was.allow_below:.3f} / {was.block_at:.3f}",
               f"{check.edges.allow_below:.3f} / {check.edges.block_at:.3f}", str(check.flagged),
               f"{num(check.precision)} {_interval(check.precision_interval)}", _met(check.meets_precision),
               f"{num(check.miss_rate)} {_interval(check.miss_interval)}", _met(check.meets_miss_rate)]
        if isotonic:
            c = check.calibrated
            row.append("n/a" if c is None else f"{c.allow_below:.2f} / {c.block_at:.2f}")
        if with_notes:
            row.append("; ".join(proposals[check.category].notes))
        rows.append(tuple(row))
    header = ["category", "live allow/block", "proposed allow/block", "flagged", "precision [95% CI]", "met",
              "miss rate [95% CI]", "met"]
    header += ["P(category) at allow/block"] if isotonic else []
    header += ["notes"] if with_notes else []
    return TableData("proposed bands, measured on the check half", tuple(header), tuple(rows))


def _interval(bounds: tuple[float, float]) -> str:
    return f"[{bounds[0]:.2f}, {bounds[1]:.2f}]"


def _met(value: bool | None) -> str:
    return {True: "yes", False: "NO", None: "n/a"}[value]


def curve_table(report: CalibrationReport) -> TableData:
    rows = tuple(
        (f"{p.narrowing:+.2f}" + (" (proposed)" if p.narrowing == report.proposal.narrowing else ""),
         pct(p.view.escalation_rate), pct(p.view.kept_accuracy), pct(p.view.action_precision),
         pct(p.view.missed_harm_rate), usd(p.view.cost.cascade_usd))
        for p in report.curve)
    return TableData("escalation rate vs quality on the check half (narrowing: -1 widest bands, 0 the targets, "
                     "1 no band)", ("narrowing", "escalated", "kept accuracy", "act precision", "harm allowed",
                                    "$/1k cascade"), rows)


def calibration_lines(report: CalibrationReport) -> list[str]:
    p, t = report.proposal, report.proposal.targets
    cap = "none" if t.max_escalation is None else pct(t.max_escalation)
    lines = [
        f"split by sha256(text): {report.fit_rows:,} rows fit, {report.check_rows:,} rows check",
        f"calibration ({report.method} {_params(report)}): ECE on the check half {report.ece_before:.4f} -> "
        f"{report.ece_after:.4f}",
        f"targets: precision >= {t.precision:.2f} at block_at ({t.rule}), miss rate <= {t.max_miss_rate:.2f} below "
        f"allow_below, escalation <= {cap}",
    ]
    if p.capped:
        lines.append(f"the targets' bands escalate {pct(p.target_escalation_rate)} of the fit half, over the cap: "
                     f"every band narrowed by {p.narrowing:.3f} toward its cut point (fit-half escalation "
                     f"{pct(p.escalation_rate)}); precision and miss targets are no longer guaranteed")
    else:
        lines.append(f"fit-half escalation rate {pct(p.escalation_rate)}: within the cap, bands as the targets "
                     "give them")
    return lines


def calibration_markdown(report: CalibrationReport, *, diff_name: str, proposed_name: str,
                         plots: Sequence[str]) -> str:
    m = report.model
    views = [("live policy", report.live), ("proposed bands", report.proposed)]
    parts = [f"# Calibration of {m.name} {m.version} for policy {report.live.policy_name} "
             f"{report.live.policy_version}\n",
             "\n".join(f"- {line}" for line in calibration_lines(report)) + "\n",
             "Bands are thresholds on the raw model scores, which is what the stream compares with them.\n",
             bands_table(report).markdown(),
             cascade_table(views, "cascade on the check half").markdown(),
             curve_table(report).markdown(),
             GLOSSARY + "\n",
             f"Proposed policy: `{proposed_name}`; diff against the live file: `{diff_name}`. The live policy "
             "was not changed.\n"]
    parts += [f"![{Path(p).stem}]({p})\n" for p in plots]
    return "\n".join(parts)


def print_calibration(console: Console, report: CalibrationReport, out_dir: str) -> None:
    for line in calibration_lines(report):
        console.print(line)
    console.print(bands_table(report).rich())
    console.print(cascade_table([("live policy", report.live), ("proposed bands", report.proposed)],
                                "cascade on the check half").rich())
    console.print(curve_table(report).rich())
    console.print(GLOSSARY, style="dim")
    console.print(f"proposal written to [bold]{out_dir}[/] (policy diff, proposed policy, calibration.json, "
                  "calibration.md, plots); the live policy is unchanged")


def _params(report: CalibrationReport) -> str:
    if "temperature" in report.params:
        return f"T = {report.params['temperature']:.3f}"
    return "per class, one-vs-rest"

