"""A window's statistics against its reference and the policy's ``monitor:`` thresholds (pure).

Each rule below yields at most one :class:`~pipeline.records.Alert` per window and category:

    drift             a category's score histogram: PSI against the reference's > ``psi_max``
    escalation_rate   escalated / posts > the reference's x ``escalation_rate_factor``, with at least
                      ``min_events`` escalations
    block_rate        a category's final blocks / final verdicts > the reference's x ``block_rate_factor``, with at
                      least ``min_events`` blocks: the condition that trips the action guard
    disagreement      frontier answers that differ from the small model's top label > ``disagreement_rate_max``
    dead_letter_rate  dead letters / records > ``dead_letter_rate_max`` (stream-wide)

Drift and rate rules need ``min_posts`` posts in the window and in the reference: a thin window says little.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.monitor.baseline import Reference
from pipeline.monitor.stats import Summary, psi, ratio
from pipeline.policy import Monitor
from pipeline.records import Alert, AlertKind, alert_id


@dataclass(frozen=True)
class Window:
    policy: str
    start: float  # epoch seconds
    size: float

    @property
    def start_at(self) -> datetime:
        return datetime.fromtimestamp(self.start, UTC)

    @property
    def end_at(self) -> datetime:
        return datetime.fromtimestamp(self.start + self.size, UTC)


def _alert(window: Window, kind: AlertKind, category: str | None, *, value: float, reference: float | None,
           threshold: float, count: int, message: str) -> Alert:
    return Alert(alert_id=alert_id(window.policy, kind, category, window.start_at), kind=kind, policy=window.policy,
                 category=category, window_start=window.start_at, window_end=window.end_at, value=value,
                 reference=reference, threshold=threshold, count=count, message=message)


def evaluate(window: Window, current: Summary, reference: Reference | None, config: Monitor) -> list[Alert]:
    """The alerts of one policy's window (dead letters: :func:`dead_letter_alert`)."""
    alerts: list[Alert] = []
    if current.adjudicated >= config.min_adjudicated and current.disagreement_rate > config.disagreement_rate_max:
        alerts.append(_alert(
            window, "disagreement", None, value=current.disagreement_rate, reference=None,
            threshold=config.disagreement_rate_max, count=current.adjudicated,
            message=f"the frontier disagreed with the small model on {current.disagreed} of {current.adjudicated} "
                    f"posts ({current.disagreement_rate:.0%} > {config.disagreement_rate_max:.0%})"))
    if reference is None:
        return alerts
    for category, blocks in current.blocks.items():
        rate, ref = current.block_rate(category), reference.block_rates.get(category)
        if ref is None or reference.final < config.min_posts or blocks < config.min_events:
            continue
        if rate > ref * config.block_rate_factor:
            alerts.append(_alert(
                window, "block_rate", category, value=rate, reference=ref, threshold=ref * config.block_rate_factor,
                count=blocks, message=f"{category}: {blocks} of {current.final} posts blocked ({rate:.1%}), "
                                      f"{rate / ref:.1f} x the reference {ref:.1%}"))
    if current.posts < config.min_posts or reference.posts < config.min_posts:
        return alerts
    for category, histogram in current.histograms.items():
        expected = reference.histograms.get(category)
        if expected is None or not sum(histogram):
            continue
        index = psi(expected, histogram)
        if index > config.psi_max:
            alerts.append(_alert(
                window, "drift", category, value=index, reference=None, threshold=config.psi_max,
                count=current.posts, message=f"{category} scores drifted: PSI {index:.3f} > {config.psi_max} "
                                             f"on {current.posts} posts"))
    rate, ref = current.escalation_rate, reference.escalation_rate
    if rate > ref * config.escalation_rate_factor and current.escalated >= config.min_events:
        alerts.append(_alert(
            window, "escalation_rate", None, value=rate, reference=ref, threshold=ref * config.escalation_rate_factor,
            count=current.posts, message=f"{current.escalated} of {current.posts} posts escalated ({rate:.1%}), "
                                         f"{rate / ref:.1f} x the reference {ref:.1%}"))
    return alerts


def dead_letter_alert(window: Window, dead_letters: int, records: int, config: Monitor) -> Alert | None:
    """The stream-wide dead-letter rule; ``records`` are the small-model outputs of every policy."""
    total = dead_letters + records
    rate = ratio(dead_letters, total)
    if total < config.min_posts or rate <= config.dead_letter_rate_max:
        return None
    return _alert(window, "dead_letter_rate", None, value=rate, reference=None,
                  threshold=config.dead_letter_rate_max, count=total,
                  message=f"{dead_letters} of {total} records dead-lettered ({rate:.1%} > "
                          f"{config.dead_letter_rate_max:.1%})")
