"""The policy schema (docs/contracts.md, "Policies"): what ops write in ``policies/*.yaml``.

Every section is a frozen pydantic model that rejects unknown keys. The cross-field rules (a band's
``block_at`` is not below its ``allow_below``; bands and taxonomy name the same categories) live here
too, so a :class:`Policy` is valid however it was built. Rule violations are raised as pydantic errors
located at the offending field, which lets :mod:`pipeline.policy.load` report them like any other error:
one line each, with the field's dotted path and its line in the file.

Build policies with :func:`pipeline.policy.load_policy` / ``Policy.model_validate``; ``model_copy`` skips
validation and would keep a stale :attr:`Policy.version`.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from pipeline import codec
from pipeline.records import UrgencyTier

Loc = tuple[int | str, ...]
Action = Literal["block", "review"]
"""What a category does at or above ``block_at``: block the post, or send it to human review."""
Fallback = Literal["small_model", "hold"]
"""When the frontier is unavailable or over budget: take the small model's best guess, or hold and retry."""
Provider = Literal["anthropic", "openai"]
"""Which API adjudicates: Anthropic's Messages API, or an OpenAI-compatible chat API (e.g. a model on vLLM)."""
PiiKind = Literal["emails", "phones", "urls", "handles"]
"""What the feedback worker can scrub from post texts before they are written to the retraining dataset."""

RULE_ERROR = "policy_rule"
"""pydantic error type of the cross-field rules below; the message already names the fix."""

_NAME = re.compile(r"[a-z][a-z0-9_]*")


def rule_error(problems: Iterable[tuple[Loc, str]]) -> ValidationError:
    """One pydantic error per ``(location relative to the validated value, message)``.

    Raised from a validator, pydantic prefixes each location with the path to that value, so a rule
    can point at ``block_at`` or at one item of a list rather than at the whole section.
    """
    return ValidationError.from_exception_data("Policy", _details(problems))


def _details(problems: Iterable[tuple[Loc, str]]) -> list[InitErrorDetails]:
    return [{"type": PydanticCustomError(RULE_ERROR, message), "loc": loc, "input": None} for loc, message in problems]


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise rule_error([((), f"{value!r} is not a valid name: use lowercase letters, digits and underscores, "
                               "starting with a letter (e.g. 'self_harm')")])
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise rule_error([((), "is blank: write the text")])
    return value


Name = Annotated[str, AfterValidator(_name)]
Text = Annotated[str, AfterValidator(_not_blank)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Usd = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Taxonomy(Section):
    """The classes the small model emits: one "nothing wrong" class plus the harmful categories."""

    safe: Name = Field(description="the class that means nothing wrong")
    categories: tuple[Name, ...] = Field(min_length=1, description="harmful categories, in tie-break order")

    @model_validator(mode="after")
    def _names_are_distinct(self) -> Taxonomy:
        problems: list[tuple[Loc, str]] = []
        seen: set[str] = set()
        for i, name in enumerate(self.categories):
            if name == self.safe:
                problems.append((("categories", i), f"'{name}' is the safe class: remove it from the harmful "
                                                     "categories (taxonomy.safe already names it)"))
            elif name in seen:
                problems.append((("categories", i), f"'{name}' is listed twice: remove the duplicate"))
            seen.add(name)
        if problems:
            raise rule_error(problems)
        return self


class Band(Section):
    """A category's two-sided band: allow below it, act at or above it, escalate in between."""

    allow_below: Probability = Field(description="scores below this are allowed")
    block_at: Probability = Field(description="scores at or above this take the action")
    action: Action = Field(description="'block' or 'review': the decision at or above block_at")
    tier: UrgencyTier = Field(default="urgent", description="adjudication queue for posts in the band")

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.block_at < self.allow_below:
            raise rule_error([(("block_at",), f"block_at {self.block_at} is below allow_below {self.allow_below}: "
                                              "block_at must be >= allow_below (equal means no escalation band)")])
        return self


class Adjudication(Section):
    """What the frontier model is told and which one it is."""

    guidelines: Text = Field(description="instructions sent to the frontier model with each borderline post")
    provider: Provider = Field(default="anthropic", description="'anthropic' (Messages API) or 'openai' "
                                                                "(an OpenAI-compatible chat API, e.g. vLLM)")
    model: Text = Field(description="frontier model id, e.g. claude-sonnet-4-6")
    max_output_tokens: int = Field(default=512, gt=0, description="cap on the frontier's answer")


class EscalationBudget(Section):
    """Caps on frontier use; beyond them the policy's fallback applies. ``None`` means no cap."""

    max_requests_per_hour: int | None = Field(default=None, ge=0, description="frontier calls per hour")
    max_usd_per_hour: Usd | None = Field(default=None, description="frontier spend per hour in USD")


class DatasetRules(Section):
    """What happens to labelled posts on their way into the retraining dataset."""

    scrub_pii: tuple[PiiKind, ...] = Field(default=(), description="PII replaced by placeholders before writing: "
                                                                    "emails, phones, urls, handles")


MonitorReference = Literal["trailing", "baseline"]
"""What the monitor compares a window with: the windows before it, or a baseline file written for the model."""


class Monitor(Section):
    """Drift monitor thresholds (``modcascade worker monitor``). Every key has a default, so the section is optional.

    Windows are tumbling, by each record's own time (a verdict's ``decided_at``). A breach becomes an Alert record
    on the ``alerts`` topic; the ``block_rate`` alert is what trips the action guard.
    """

    window_s: int = Field(default=300, ge=1, description="length of a tumbling window in seconds")
    lateness_s: float = Field(default=30.0, ge=0, allow_inf_nan=False, description="how long after its end a window "
                              "still takes late records before it is evaluated")
    reference: MonitorReference = Field(default="trailing", description="'trailing' (the windows before) or "
                                        "'baseline' (the file named by baseline)")
    trailing_windows: int = Field(default=12, ge=1, le=288, description="windows summed into the trailing reference")
    baseline: str | None = Field(default=None, description="baseline JSON file (docs/monitor.md); a relative path "
                                 "is read from the policy file's folder")
    min_posts: int = Field(default=200, ge=1, description="posts a window and its reference need before any rate "
                           "or drift alert")
    score_bins: int = Field(default=10, ge=2, le=100, description="equal-width bins of the score histograms")
    psi_max: float = Field(default=0.25, gt=0, allow_inf_nan=False, description="population stability index of a "
                           "category's score histogram above which a drift alert is raised")
    escalation_rate_factor: float = Field(default=2.0, gt=1, allow_inf_nan=False, description="alert when a "
                                          "window's escalation rate exceeds the reference's by this factor")
    disagreement_rate_max: float = Field(default=0.5, gt=0, le=1, description="alert when the frontier disagrees with "
                                         "the small model's top label on more than this share of its verdicts")
    min_adjudicated: int = Field(default=20, ge=1, description="frontier verdicts a window needs before a "
                                 "disagreement alert")
    dead_letter_rate_max: float = Field(default=0.01, gt=0, le=1, description="alert when more than this share of "
                                        "a window's records are dead-lettered")
    block_rate_factor: float = Field(default=3.0, gt=1, allow_inf_nan=False, description="alert (kind block_rate: "
                                     "trips the guard) when a category's block rate exceeds the reference's by this "
                                     "factor")
    min_events: int = Field(default=20, ge=1, description="escalations (escalation_rate) or blocks of a category "
                            "(block_rate) a window needs before a rate alert")

    @model_validator(mode="after")
    def _baseline_named(self) -> Monitor:
        if self.reference == "baseline" and not self.baseline:
            raise rule_error([(("baseline",), "reference is 'baseline' but no baseline file is named: set "
                                              "monitor.baseline to the file's path, or use reference: trailing")])
        return self


class AuditRates(Section):
    """Shares of one route's final verdicts drawn into the audit sample, by decision; ``categories`` overrides the
    decision's rate for the block and review verdicts of a category (an allow has no category)."""

    allow: Probability = Field(default=0.0, description="share of allow verdicts audited")
    block: Probability = Field(default=0.0, description="share of block verdicts audited")
    review: Probability = Field(default=0.0, description="share of review verdicts audited")
    categories: dict[str, Probability] = Field(default_factory=dict, description="category -> share of its block "
                                               "and review verdicts audited, instead of the decision's rate")

    def rate(self, decision: str, category: str | None) -> float:
        if decision == "allow":
            return self.allow
        if category is not None and category in self.categories:
            return self.categories[category]
        return self.block if decision == "block" else self.review


class AuditBudget(Section):
    """Caps on audit calls to the frontier, apart from the escalation budget: beyond them an audit is skipped
    (counted), never a fallback. ``None`` means no cap."""

    max_requests_per_hour: int | None = Field(default=None, ge=0, description="audit calls per hour")
    max_usd_per_hour: Usd | None = Field(default=None, description="audit spend per hour in USD")


class Audit(Section):
    """The audit sample: a seeded share of the small model's *final* verdicts (routes slm and cache) judged again
    by the frontier, within its own budget. The verdict already published stays; the outcome is a Label.

    A post is drawn when ``audit_draw(seed, post id)`` (a stable hash in [0, 1)) is below its verdict's rate, so a
    redelivered post makes the same choice and every replica agrees. Every key has a default (no audits)."""

    seed: int = Field(default=0, ge=0, description="seed of the draw; a new seed draws a different sample")
    slm: AuditRates = Field(default_factory=AuditRates, description="rates for verdicts the small model decided")
    cache: AuditRates | None = Field(default=None, description="rates for verdicts from the score cache; none means "
                                     "the slm rates")
    budget: AuditBudget = Field(default_factory=AuditBudget, description="hourly caps on audit calls")

    def rate(self, route: str, decision: str, category: str | None) -> float:
        """The share of final verdicts of this route, decision and category that is audited (0 for other routes)."""
        if route == "slm":
            return self.slm.rate(decision, category)
        if route == "cache":
            return (self.cache if self.cache is not None else self.slm).rate(decision, category)
        return 0.0

    @property
    def enabled(self) -> bool:
        rates = [self.slm] + ([self.cache] if self.cache is not None else [])
        return any(r.allow or r.block or r.review or any(r.categories.values()) for r in rates)


GuardDivert = Literal["adjudication", "review"]
"""Where a tripped guard sends its category's would-be blocks: the frontier model, or human review."""


class Guard(Section):
    """The action guard (docs/guard.md). Every key has a default, so the section is optional.

    The monitor trips a category's guard when its ``block_rate`` alert fires (``monitor.block_rate_factor`` times
    the reference, with at least ``monitor.min_events`` blocks); the classify workers then send that category's
    would-be blocks to ``divert`` instead of blocking them, until an operator clears the guard
    (``modcascade guard clear``) or ``reset_after_s`` passes.
    """

    enabled: bool = Field(default=True, description="whether a block_rate alert trips the category's guard")
    divert: GuardDivert = Field(default="adjudication", description="where a tripped guard sends would-be blocks: "
                                "'adjudication' (the frontier decides) or 'review' (a final review verdict)")
    reset_after_s: int | None = Field(default=None, ge=1, description="seconds after which a tripped guard resets "
                                      "by itself; none (the default): only an operator clears it")


class ModelRef(Section):
    """The small classification model."""

    name: Text = Field(description="model name as served, recorded in verdicts")
    path: str | None = Field(default=None, description="model directory; none means the built-in default")


class FrontierPrices(Section):
    """Frontier list prices in USD per million tokens."""

    input_usd_per_mtok: Usd = Field(description="uncached input tokens")
    output_usd_per_mtok: Usd = Field(description="output tokens")
    cache_write_usd_per_mtok: Usd = Field(description="input tokens written to the prompt cache")
    cache_read_usd_per_mtok: Usd = Field(description="input tokens read from the prompt cache")

    def cost_usd(
        self, input_tokens: int, output_tokens: int, cache_write_tokens: int = 0, cache_read_tokens: int = 0
    ) -> float:
        """Dollar cost of one call; ``input_tokens`` excludes the cached ones."""
        return (
            input_tokens * self.input_usd_per_mtok
            + output_tokens * self.output_usd_per_mtok
            + cache_write_tokens * self.cache_write_usd_per_mtok
            + cache_read_tokens * self.cache_read_usd_per_mtok
        ) / 1_000_000


class Prices(Section):
    """Prices for cost accounting and the "everything to the frontier" comparison."""

    small_model_usd_per_1k_posts: Usd = Field(description="small-model cost per 1000 posts")
    frontier: FrontierPrices = Field(description="frontier prices in USD per million tokens")
    est_frontier_input_tokens: int = Field(ge=0, description="typical frontier input tokens per post")
    est_frontier_output_tokens: int = Field(ge=0, description="typical frontier output tokens per post")

    @property
    def est_frontier_usd_per_post(self) -> float:
        """What one post would cost if it went to the frontier (no caching)."""
        return self.frontier.cost_usd(self.est_frontier_input_tokens, self.est_frontier_output_tokens)


class BandRule(NamedTuple):
    """A band flattened for :func:`pipeline.policy.decide`'s per-post loop (no attribute lookups)."""

    category: str
    allow_below: float
    block_at: float
    action: Action
    strength: int  # block outranks review when several categories act


_STRENGTH: dict[Action, int] = {"review": 1, "block": 2}


class Policy(Section):
    """A validated policy. ``version`` is a content hash: comments and formatting do not change it."""

    name: Text = Field(description="policy name, recorded in every verdict")
    description: str = Field(description="what this policy is for")
    taxonomy: Taxonomy = Field(description="the classes the small model emits: safe and categories")
    categories: dict[str, Band] = Field(description="one band per taxonomy category")
    adjudication: Adjudication = Field(description="guidelines and model for the frontier")
    escalation_budget: EscalationBudget = Field(description="hourly caps on frontier use")
    fallback: Fallback = Field(description="'small_model' or 'hold' when the frontier is unavailable/over budget")
    model: ModelRef = Field(description="the small classification model")
    dataset: DatasetRules = Field(default_factory=DatasetRules, description="retraining dataset rules")
    monitor: Monitor = Field(default_factory=Monitor, description="drift monitor thresholds (optional)")
    guard: Guard = Field(default_factory=Guard, description="action guard: what a tripped guard does (optional)")
    audit: Audit = Field(default_factory=Audit, description="the audit sample of final small-model verdicts "
                         "(optional; default: no audits)")
    prices: Prices = Field(description="prices for cost accounting")

    _version: str = PrivateAttr(default="")
    _rules: tuple[BandRule, ...] = PrivateAttr(default=())

    @field_validator("categories", mode="wrap")
    @classmethod
    def _bands_match_taxonomy(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> dict[str, Band]:
        taxonomy = info.data.get("taxonomy")  # absent when the taxonomy itself is invalid
        problems = _band_key_problems(value, taxonomy) if isinstance(taxonomy, Taxonomy) else []
        try:
            bands: dict[str, Band] = handler(value)
        except ValidationError as exc:
            if not problems:
                raise
            # Report the band-key problems together with the band-value ones, not one fix at a time.
            raise _merged(exc, problems) from None
        if problems:
            raise rule_error(problems)
        assert isinstance(taxonomy, Taxonomy)  # no problems implies a taxonomy was checked
        return {name: bands[name] for name in taxonomy.categories}  # taxonomy order, for readers

    @model_validator(mode="after")
    def _audit_categories_in_taxonomy(self) -> Policy:
        known = self.taxonomy.categories
        problems: list[tuple[Loc, str]] = []
        for route, rates in (("slm", self.audit.slm), ("cache", self.audit.cache)):
            for name in rates.categories if rates is not None else ():
                if name not in known:
                    close = difflib.get_close_matches(name, known, n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    problems.append((("audit", route, "categories", name),
                                     f"category '{name}' is not in taxonomy.categories [{', '.join(known)}]{hint}: "
                                     "name a harmful category (allows have their own rate, 'allow')"))
        if problems:
            raise rule_error(problems)
        return self

    def model_post_init(self, context: Any, /) -> None:
        canonical = codec.dumps_pretty(self.model_dump(mode="json"))  # sorted keys: key order is not content
        self._version = hashlib.sha256(canonical).hexdigest()[:12]
        self._rules = tuple(
            BandRule(name, band.allow_below, band.block_at, band.action, _STRENGTH[band.action])
            for name, band in self.categories.items()
        )

    # Both are read per post on the hot path: straight from the private dict, as pydantic's own private-attribute
    # lookup (BaseModel.__getattr__) costs ~10 µs a read.
    # (No helper call and no typing.cast here: each is a Python call, and these run several times per post.)
    @property
    def version(self) -> str:
        """First 12 hex digits of the sha256 of the canonical JSON of this policy."""
        return self.__pydantic_private__["_version"]  # type: ignore[index,no-any-return]  # set in model_post_init

    @property
    def rules(self) -> tuple[BandRule, ...]:
        """The bands in taxonomy order, precomputed once per policy."""
        return self.__pydantic_private__["_rules"]  # type: ignore[index,no-any-return]  # set in model_post_init


def _band_key_problems(value: Any, taxonomy: Taxonomy) -> list[tuple[Loc, str]]:
    if not isinstance(value, dict):
        return []
    known = taxonomy.categories
    problems: list[tuple[Loc, str]] = []
    for key in value:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            listed = ", ".join(known)
            problems.append(((str(key),), f"category '{key}' is not in taxonomy.categories [{listed}]{hint}: "
                                          "add it there or remove this band"))
    problems.extend(
        ((name,), f"taxonomy category '{name}' has no band: add categories.{name} with allow_below, block_at "
                  "and action")
        for name in known
        if name not in value
    )
    return problems


def _merged(exc: ValidationError, problems: list[tuple[Loc, str]]) -> ValidationError:
    details: list[InitErrorDetails] = [
        {"type": PydanticCustomError(e["type"], e["msg"], e.get("ctx")), "loc": e["loc"], "input": e["input"]}
        for e in exc.errors()
    ]
    return ValidationError.from_exception_data("Policy", details + _details(problems))
