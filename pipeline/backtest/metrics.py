"""What a replay did, measured against the history's labels. Pure.

    escalation rate   escalated posts / posts read (dead letters excluded from the posts)
    kept accuracy     of the posts the small model settled itself (routes slm, cache), the share whose verdict
                      category (safe for an allow) is the history's label
    cascade           the final verdict's category per post (safe for an allow) against the label:
                      per-category precision / recall / F1 and macro-F1
    small model       its top class alone, against the label: the same scores
    cost              small-model and frontier dollars (real, from usage), the would-be frontier dollars when the
                      history's labels stood in for the frontier (calls times the policy's estimate per post), and
                      the cost of sending every post to the frontier
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sklearn.metrics import precision_recall_fscore_support

from pipeline.backtest.outcome import PostOutcome


@dataclass(frozen=True, slots=True)
class ClassQuality:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class Quality:
    macro_f1: float
    accuracy: float
    per_class: dict[str, ClassQuality]


@dataclass(frozen=True, slots=True)
class Cost:
    small_model_usd: float
    frontier_usd: float
    """Paid to the frontier (real usage; 0 when the history's labels stood in)."""
    frontier_calls: int
    would_be_frontier_usd: float
    """The frontier's price for the same calls at the policy's estimate per post (what ``labels`` would have cost)."""
    all_frontier_usd: float
    """Every post sent to the frontier, at the policy's estimate per post."""

    @property
    def share_of_all_frontier(self) -> float:
        spent = max(self.frontier_usd, self.would_be_frontier_usd) + self.small_model_usd
        return spent / self.all_frontier_usd if self.all_frontier_usd else 0.0


@dataclass(frozen=True, slots=True)
class Summary:
    posts: int
    dead_letters: int
    escalated: int
    audited: int
    kept: int
    escalation_rate: float
    kept_accuracy: float
    cascade: Quality
    small_model: Quality
    cost: Cost
    decisions: dict[str, int]
    routes: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["cost"]["share_of_all_frontier"] = self.cost.share_of_all_frontier
        return value


def quality(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> Quality:
    """Per-class precision / recall / F1 over ``labels`` (a class neither present nor predicted scores 0)."""
    if not truth:
        return Quality(0.0, 0.0, {name: ClassQuality(0.0, 0.0, 0.0, 0) for name in labels})
    precision, recall, f1, support = precision_recall_fscore_support(
        list(truth), list(predicted), labels=list(labels), zero_division=0)
    per_class = {name: ClassQuality(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
                 for i, name in enumerate(labels)}
    correct = sum(t == p for t, p in zip(truth, predicted, strict=True))
    return Quality(macro_f1=float(sum(c.f1 for c in per_class.values()) / len(labels)),
                   accuracy=correct / len(truth), per_class=per_class)


def summarize(outcomes: Sequence[PostOutcome], *, labels: Sequence[str], safe: str,
              frontier_usd_per_post: float, labels_stood_in: bool) -> Summary:
    """The measures of one replay; ``labels`` are the taxonomy's classes (safe first), ``frontier_usd_per_post``
    the policy's estimate; ``labels_stood_in``: the history's labels answered instead of the frontier."""
    live = [o for o in outcomes if o.stage != "dead"]
    kept = [o for o in live if o.kept]
    truth = [o.label for o in live]
    cascade = [o.category or safe for o in live]
    calls = sum(o.frontier_calls for o in live)
    frontier_usd = sum(o.cost_usd for o in live if not o.kept) + sum(o.audit_usd for o in live)
    small_usd = sum(o.cost_usd for o in live if o.kept)
    kept_right = sum((o.category or safe) == o.label for o in kept)
    return Summary(
        posts=len(live), dead_letters=len(outcomes) - len(live),
        escalated=sum(o.escalated for o in live), audited=sum(o.audited for o in live), kept=len(kept),
        escalation_rate=sum(o.escalated for o in live) / len(live) if live else 0.0,
        kept_accuracy=kept_right / len(kept) if kept else 0.0,
        cascade=quality(truth, cascade, labels),
        small_model=quality(truth, [o.slm_top for o in live], labels),
        cost=Cost(small_model_usd=small_usd, frontier_usd=0.0 if labels_stood_in else frontier_usd,
                  frontier_calls=calls, would_be_frontier_usd=calls * frontier_usd_per_post,
                  all_frontier_usd=len(live) * frontier_usd_per_post),
        decisions=dict(Counter(o.decision for o in live)), routes=dict(Counter(o.route for o in live)),
    )


def summary_markdown(name: str, s: Summary) -> str:
    """One replay as a markdown section: the headline numbers, then per-category precision / recall."""
    c = s.cost
    lines = [
        f"### {name}", "",
        f"- posts {s.posts:,} (dead letters {s.dead_letters:,}); escalated {s.escalated:,} "
        f"(**{s.escalation_rate:.1%}**); audited {s.audited:,}; kept by the small model {s.kept:,}",
        f"- kept accuracy **{s.kept_accuracy:.3f}**; macro-F1 cascade **{s.cascade.macro_f1:.3f}**, small model "
        f"alone **{s.small_model.macro_f1:.3f}**",
        f"- frontier calls {c.frontier_calls:,}: paid ${c.frontier_usd:.4f}, at list price "
        f"${c.would_be_frontier_usd:.4f}; "
        f"small model ${c.small_model_usd:.4f}; all-frontier ${c.all_frontier_usd:.4f} "
        f"(the cascade costs {c.share_of_all_frontier:.1%} of it)",
        "", "| category | cascade precision | cascade recall | small-model precision | small-model recall | support |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, q in s.cascade.per_class.items():
        m = s.small_model.per_class[label]
        lines.append(f"| {label} | {q.precision:.3f} | {q.recall:.3f} | {m.precision:.3f} | {m.recall:.3f} | "
                     f"{q.support:,} |")
    return "\n".join(lines) + "\n"
