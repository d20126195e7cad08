"""The stages a backtest replays through, built the way the stream workers build theirs (app-shell helpers shared
by the plain run and ``--loop``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry

from pipeline.adjudication.backends import HOW_TO_CONFIGURE, Adjudicator
from pipeline.adjudication.limits import AdjudicationLimits
from pipeline.adjudication.stage import AdjudicationStage
from pipeline.backends import Classifier
from pipeline.backtest.labels_judge import LABELS_LIMITS, LabelsAdjudicator
from pipeline.backtest.outcome import HistoryPost
from pipeline.cascade.cache import ScoreCache
from pipeline.cascade.stage import ClassifyStage
from pipeline.components import adjudication_limits, build_adjudicator, configured_providers
from pipeline.errors import ConfigError
from pipeline.metrics import Metrics
from pipeline.policy import Policy
from pipeline.policy.model import AuditBudget, EscalationBudget
from pipeline.retry import Backoff
from pipeline.settings import Settings

AdjudicatorKind = Literal["frontier", "labels"]

def lift_budget(policy: Policy) -> Policy:
    """The policy without its hourly caps (escalation and audit budgets), same version: a replay runs weeks of
    history in minutes, so a cap metered on the wall clock would fall back where the live stream never did."""
    return policy.model_copy(update={
        "escalation_budget": EscalationBudget(),
        "audit": policy.audit.model_copy(update={"budget": AuditBudget()}),
    })


def check_frontier(settings: Settings, policy: Policy, kind: AdjudicatorKind) -> None:
    """Before anything is loaded: ``frontier`` needs the policy's provider configured."""
    provider = policy.adjudication.provider
    if kind == "frontier" and provider not in configured_providers(settings):
        raise ConfigError(f"--adjudicator frontier: no frontier model configured for provider {provider} ("
                          f"{HOW_TO_CONFIGURE.get(provider, 'configure it')}); or use --adjudicator labels to let "
                          "the history's labels stand in, priced at zero")


def frontier_for(settings: Settings, policy: Policy, kind: AdjudicatorKind) -> tuple[Adjudicator, AdjudicationLimits]:
    if kind == "labels":
        return LabelsAdjudicator(policy, {}), LABELS_LIMITS
    check_frontier(settings, policy, kind)
    return build_adjudicator(settings), adjudication_limits(settings)


@dataclass(slots=True)
class Stages:
    classify: ClassifyStage
    adjudicate: AdjudicationStage
    adjudicator: Adjudicator

    def know(self, posts: Sequence[HistoryPost]) -> None:
        """Hand the window's labels to the labels adjudicator (the frontier needs none)."""
        if isinstance(self.adjudicator, LabelsAdjudicator):
            self.adjudicator.add({p.text: p.label for p in posts})

    @property
    def labels_stood_in(self) -> bool:
        return isinstance(self.adjudicator, LabelsAdjudicator)


def build_stages(settings: Settings, policy: Policy, classifier: Classifier, kind: AdjudicatorKind) -> Stages:
    """The classify worker's stage (audit draw on, as the worker runs it) and the adjudicate worker's, over one
    policy snapshot; fresh metrics and a fresh score cache per replay."""
    w = settings.worker
    metrics = Metrics.create(CollectorRegistry())
    classify = ClassifyStage(classifier, lambda: policy, cache=ScoreCache(w.cache_entries, w.cache_ttl_s),
                             metrics=metrics, max_text_bytes=settings.max_text_bytes,
                             max_post_bytes=settings.max_post_bytes,
                             dead_letter_max_bytes=settings.dead_letter_max_bytes,
                             backoff=Backoff(w.backoff_base_s, w.backoff_max_s), audit=True)
    adjudicator, limits = frontier_for(settings, policy, kind)
    adjudicate = AdjudicationStage(adjudicator, lambda: policy, limits=limits, metrics=metrics)
    return Stages(classify, adjudicate, adjudicator)
