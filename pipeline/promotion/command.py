"""`modcascade promote`: evaluate the candidate and the current model on the golden set, gate, then flip the pointer.

Refusal is not an error of the command: it prints the comparison, says why, and returns False (the CLI exits 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline import codec
from pipeline.evaluation.report import EvalReport, evaluate_model
from pipeline.evaluation.scoring import ScoringOptions
from pipeline.promotion.gate import GateDecision, Tolerances, gate
from pipeline.promotion.registry import ModelRegistry
from pipeline.settings import Settings
from pipeline.training.data import load_examples


@dataclass(frozen=True, slots=True)
class PromoteOutcome:
    promoted: bool
    decision: GateDecision | None
    """None when there was no current model to compare with."""
    candidate: EvalReport
    current: EvalReport | None


def registry_for(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings.promote.models_dir / "releases", settings.model.dir)


def tolerances_for(settings: Settings) -> Tolerances:
    p = settings.promote
    return Tolerances(p.macro_f1_tolerance, p.worst_slice_tolerance, p.ece_tolerance)


def run_promote(console: Console, settings: Settings, *, candidate: Path, current: Path | None, golden: Path,
                scoring: ScoringOptions | None = None) -> PromoteOutcome:
    """Gate ``candidate`` against ``current`` (default: the model the pointer names) on ``golden``; promote it
    into the registry when it passes."""
    registry = registry_for(settings)
    current = current if current is not None else settings.model.dir
    examples = load_examples(golden)
    console.print(f"golden set {golden}: {len(examples):,} posts")
    console.print(f"evaluating the candidate {candidate}")
    candidate_report = evaluate_model(candidate, examples, data_path=golden, options=scoring, console=console)
    if not (current / "config.json").exists():
        console.print(f"no current model at {current}: the candidate becomes the first release")
        registry.promote(candidate)
        _print_promoted(console, registry, candidate_report)
        return PromoteOutcome(True, None, candidate_report, None)
    console.print(f"evaluating the current model {current}")
    current_report = evaluate_model(current, examples, data_path=golden, options=scoring, console=console)
    decision = gate(candidate_report, current_report, tolerances_for(settings))
    console.print(comparison_table(candidate_report, current_report, decision))
    if not decision.accepted:
        console.print("[red]refused:[/] " + "; ".join(decision.reasons))
        console.print("the current model stays; nothing was changed")
        return PromoteOutcome(False, decision, candidate_report, current_report)
    release = registry.promote(candidate)
    (release / "promotion.json").write_bytes(codec.dumps_pretty({
        "golden": str(golden), "candidate": candidate_report.to_json(), "replaced": current_report.to_json(),
        "checks": [{"name": c.name, "candidate": c.candidate, "current": c.current, "limit": c.limit,
                    "passed": c.passed} for c in decision.checks],
    }))
    _print_promoted(console, registry, candidate_report)
    return PromoteOutcome(True, decision, candidate_report, current_report)


def run_rollback(console: Console, settings: Settings) -> str:
    registry = registry_for(settings)
    replaced = registry.current_version
    version = registry.rollback()
    console.print(f"rolled back: {registry.pointer} now points at {version} (was {replaced}); restart or roll the "
                  "model server to serve it")
    return version


def comparison_table(candidate: EvalReport, current: EvalReport, decision: GateDecision) -> Table:
    table = Table(title=f"golden set ({candidate.data.rows:,} posts): candidate vs current")
    for column in ("", "candidate", "current", "limit", ""):
        table.add_column(column, justify="left" if not column else "right")
    for check in decision.checks:
        table.add_row(check.name, f"{check.candidate:.4f}", f"{check.current:.4f}", f"{check.limit:.4f}",
                      "[green]ok[/]" if check.passed else "[red]worse[/]")
    for label in candidate.labels:
        new, old = candidate.per_class[label]["f1"], current.per_class.get(label, {"f1": float("nan")})["f1"]
        table.add_row(f"  F1 {label}", f"{new:.4f}", f"{old:.4f}", "", "")
    return table


def _print_promoted(console: Console, registry: ModelRegistry, report: EvalReport) -> None:
    console.print(f"[green]promoted[/] {report.model.version}: {registry.pointer} → "
                  f"{registry.releases / report.model.version}. Restart or roll the model server to serve it; "
                  "`modcascade promote --rollback` undoes it.")
