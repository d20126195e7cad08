"""The promotion gate. Pure: two evaluations on the same golden set in, a decision with its reasons out.

A candidate is promoted only if it is not worse than the current model, each within a tolerance from
settings (``MODCASCADE_PROMOTE_*``):

    macro-F1        candidate >= current - macro_f1_tolerance
    worst slice     candidate's lowest per-class F1 >= current's lowest per-class F1 - worst_slice_tolerance
    calibration     candidate ECE <= current ECE + ece_tolerance

and both emit the same labels (a different taxonomy is a policy change, not a model promotion). Averages hide
regressions on small classes, which is why the worst slice is checked on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.evaluation.report import EvalReport


@dataclass(frozen=True, slots=True)
class Tolerances:
    macro_f1: float = 0.005
    worst_slice: float = 0.01
    ece: float = 0.01


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    candidate: float
    current: float
    limit: float
    """The worst value the candidate may have."""
    higher_is_better: bool

    @property
    def passed(self) -> bool:
        return self.candidate >= self.limit if self.higher_is_better else self.candidate <= self.limit


@dataclass(frozen=True, slots=True)
class GateDecision:
    checks: tuple[Check, ...]
    problems: tuple[str, ...]
    """Reasons to refuse that are not a number (e.g. different labels)."""

    @property
    def accepted(self) -> bool:
        return not self.problems and all(check.passed for check in self.checks)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the candidate was refused; empty when accepted."""
        failed = tuple(f"{c.name} {c.candidate:.4f} is {'below' if c.higher_is_better else 'above'} the limit "
                       f"{c.limit:.4f} (current {c.current:.4f})" for c in self.checks if not c.passed)
        return self.problems + failed


def gate(candidate: EvalReport, current: EvalReport, tolerances: Tolerances) -> GateDecision:
    problems: list[str] = []
    if set(candidate.labels) != set(current.labels):
        problems.append(f"the candidate's labels {sorted(candidate.labels)} differ from the current model's "
                        f"{sorted(current.labels)}")
    if candidate.data.sha256 != current.data.sha256:
        problems.append("the two models were evaluated on different data")
    worst = current.worst_slice.lowest_f1
    checks = (
        Check("macro-F1", candidate.macro_f1, current.macro_f1, current.macro_f1 - tolerances.macro_f1, True),
        Check(f"worst-slice F1 (current: {worst.label})", candidate.worst_slice_f1, current.worst_slice_f1,
              current.worst_slice_f1 - tolerances.worst_slice, True),
        Check("ECE", candidate.ece, current.ece, current.ece + tolerances.ece, False),
    )
    return GateDecision(checks, tuple(problems))
