"""Count what the cascade did, per policy, window and statistic (pure).

Every count is a key of the form ``<stat>`` or ``<stat>|<category>`` (``bin|<category>|<i>`` for histogram bins),
held per policy (:func:`table_key`). A post is counted once as a small-model output: by its ``slm``/``cache``
verdict, or by its adjudication request when it was escalated (its later frontier verdict is not counted again).

    posts               small-model outputs (final slm/cache verdicts + adjudication requests)
    escalated[|c]       adjudication requests (by the category whose band the post fell in)
    final, decision|d   final verdicts, by decision
    block|c             final blocks by category
    bin|c|i             the small model's score for category c fell in bin i (of ``bins`` equal-width bins)
    adjudicated         frontier verdicts; ``disagree``: those whose answer differs from the small model's top label
    records, dead_letters   (policy ``GLOBAL``) all small-model outputs and all dead letters: a dead letter has no
                        policy
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime

from pipeline.monitor.windows import window_start
from pipeline.records import AdjudicationRequest, DeadLetter, Verdict

GLOBAL = "*"
"""The policy name the stream-wide counts (records, dead letters) are kept under."""

Tallied = AdjudicationRequest | DeadLetter | Verdict
WindowCounts = Counter[tuple[float, str, str]]
"""(window start, policy, statistic) -> count."""


def table_key(policy: str, stat: str) -> str:
    """The window table's key of a statistic of a policy."""
    return f"{policy}|{stat}"


def score_bin(score: float, bins: int) -> int:
    """Equal-width bin of a probability: [0, 1/bins) is bin 0, and 1.0 falls in the last bin."""
    return min(int(score * bins), bins - 1) if score > 0 else 0


def record_time(record: Tallied) -> datetime:
    if isinstance(record, Verdict):
        return record.decided_at
    if isinstance(record, AdjudicationRequest):
        return record.enqueued_at
    return record.failed_at


def tally(records: Iterable[Tallied], *, categories: Sequence[str], safe: str, bins: int,
          window_s: float) -> WindowCounts:
    """Counts of ``records`` by window, policy and statistic. ``categories`` are the harmful categories whose score
    histograms are kept; ``safe`` is the label an allowed frontier verdict stands for."""
    counts: WindowCounts = Counter()
    for record in records:
        start = window_start(record_time(record).timestamp(), window_s)
        if isinstance(record, DeadLetter):
            counts[start, GLOBAL, "dead_letters"] += 1
            continue
        policy = record.policy
        if isinstance(record, AdjudicationRequest):
            if record.audit:  # an audit of a final verdict, already counted with that verdict: not an escalation
                continue
            _small_model_output(counts, start, policy, record.scores, categories, bins)
            counts[start, policy, "escalated"] += 1
            if record.candidate_category:
                counts[start, policy, f"escalated|{record.candidate_category}"] += 1
            continue
        if record.route in ("slm", "cache"):
            _small_model_output(counts, start, policy, record.scores, categories, bins)
        if not record.final:
            continue
        counts[start, policy, "final"] += 1
        counts[start, policy, f"decision|{record.decision}"] += 1
        if record.decision == "block" and record.category:
            counts[start, policy, f"block|{record.category}"] += 1
        if record.route == "frontier" and record.scores:
            counts[start, policy, "adjudicated"] += 1
            answer = record.category if record.decision != "allow" and record.category else safe
            if answer != top_label(record.scores):
                counts[start, policy, "disagree"] += 1
    return counts


def top_label(scores: dict[str, float]) -> str:
    return max(scores.items(), key=lambda item: item[1])[0]


def _small_model_output(counts: WindowCounts, start: float, policy: str, scores: dict[str, float],
                        categories: Sequence[str], bins: int) -> None:
    counts[start, policy, "posts"] += 1
    counts[start, GLOBAL, "records"] += 1
    for category in categories:
        score = scores.get(category)
        if score is not None:
            counts[start, policy, f"bin|{category}|{score_bin(score, bins)}"] += 1
