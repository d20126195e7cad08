"""The records on our topics (docs/contracts.md, "Records").

Every record is a frozen pydantic model with ``schema_version``. They are encoded and decoded only by
:mod:`pipeline.codec`; JSON Schemas generated from these models are published in
``pipeline/schemas/`` for producers in other languages.

Compatibility rules: producers may omit ``schema_version`` (it defaults to the current one); unknown
fields of a Post are kept in ``meta`` (never a crash); every other record ignores unknown fields, so a
newer producer does not break an older consumer.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1

Decision = Literal["allow", "block", "review"]
"""What happens to a post. ``review`` sends it to human review (a policy action)."""

Route = Literal["slm", "cache", "frontier", "fallback", "human"]
"""Which path produced a verdict: the small model, the score cache, the frontier model, the
policy's fallback when the frontier was unavailable or over budget, or a human reviewer (the review
console), whose verdict supersedes an earlier one (``Verdict.supersedes``)."""

LabelSource = Literal["frontier", "human", "import"]
UrgencyTier = Literal["urgent", "deferrable"]

Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Scores = dict[str, Probability]
NonEmptyId = Annotated[str, Field(min_length=1, max_length=512)]


def utcnow() -> datetime:
    return datetime.now(UTC)


def verdict_id(post_id: str, policy_version: str) -> str:
    """Deterministic id of the final verdict for a post under a policy version.

    A redelivered post decided again under the same policy gets the same id, so consumers de-duplicate
    on it. A re-decision under a new policy version is a different verdict on purpose.
    """
    digest = hashlib.sha256(f"{post_id}\x1f{policy_version}".encode()).hexdigest()
    return digest[:32]


class Record(BaseModel):
    """Base of all records: frozen, versioned."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    topic_role: ClassVar[str]

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1)

    @classmethod
    def assemble(cls, fields: dict[str, Any]) -> Self:
        """The record of ``fields`` (every field, in declaration order), values valid by construction: for the hot
        path's own outputs, whose every value was validated where it came from (the post at intake, the scores by
        :func:`~pipeline.policy.decide`, names and prices with the policy) and is typed all the way here.

        Nothing is validated again: a Verdict costs ~1.3 µs instead of ~3 µs (the classify stage builds one per
        post). The instance is what validation would have built: ``fields`` becomes its ``__dict__`` (the order
        :func:`pipeline.codec.encode` writes), every field counts as set. ``tests/unit/test_records.py`` holds the
        assembled records of the cascade equal, field order included, to validated ones."""
        names = _field_names(cls)
        if len(fields) != len(names):
            raise TypeError(f"{cls.__name__}.assemble takes every field, in order: {', '.join(names)}")
        record = cls.__new__(cls)
        _set(record, "__dict__", fields)
        _set(record, "__pydantic_fields_set__", set(names))
        _set(record, "__pydantic_extra__", None)
        _set(record, "__pydantic_private__", None)
        return record


@functools.cache
def _field_names(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(model.model_fields)


_set = object.__setattr__  # a frozen model refuses its own __setattr__


class Post(Record):
    """A user post to classify (topic ``posts``, key = ``id``)."""

    topic_role = "posts"
    _known: ClassVar[frozenset[str]] = frozenset(
        {"schema_version", "id", "text", "created_at", "source", "lang", "meta"}
    )

    id: NonEmptyId
    text: str
    created_at: datetime | None = Field(default=None, description="when the post was made (ISO 8601)")
    source: str | None = None
    lang: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict, description="free map, passed through")

    @model_validator(mode="before")
    @classmethod
    def _producer_habits(cls, data: Any) -> Any:
        # Two habits of producers, taken in one pass (one Python call per post on the hot path, not two):
        # unknown fields are kept in ``meta``, and numeric ids (common from other languages) become the contract's
        # string.
        if not isinstance(data, dict):
            return data
        if not data.keys() <= cls._known:  # a set test in C: most posts have no extras
            extra = {k: v for k, v in data.items() if k not in cls._known}
            if extra:
                data = {k: v for k, v in data.items() if k in cls._known}
                meta = data.get("meta")
                if isinstance(meta, dict):
                    data["meta"] = {**extra, **meta}
                else:  # a non-map meta would fail validation; keep the extras and let it
                    data["meta"] = extra if meta is None else meta
        post_id = data.get("id")
        if isinstance(post_id, int) and not isinstance(post_id, bool):
            data = {**data, "id": str(post_id)}
        return data

    @field_validator("created_at")
    @classmethod
    def _created_at_in_utc(cls, value: datetime | None) -> datetime | None:
        # Naive times are taken as UTC; aware ones are normalized so every record speaks UTC.
        if value is None:
            return None
        try:
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59-01:00 is in year 10000 in UTC
            raise PydanticCustomError("datetime_utc_range", "the time is out of range once given in UTC") from None

    @field_validator("text")
    @classmethod
    def _text_fits(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise PydanticCustomError("empty_text", "text is empty")
        limit = (info.context or {}).get("max_text_bytes")
        # A character takes at most 4 bytes: only a text that could be over the limit is encoded to count them.
        if limit is not None and 4 * len(value) > limit and len(value.encode("utf-8", "surrogatepass")) > limit:
            raise PydanticCustomError(
                "too_large", "text is longer than {limit} bytes (setting MODCASCADE_MAX_TEXT_BYTES)",
                {"limit": limit},
            )
        return value


class Verdict(Record):
    """The decision on a post (topic ``verdicts``, key = ``post_id``). ``final`` verdicts are the answer."""

    topic_role = "verdicts"

    verdict_id: str
    post_id: NonEmptyId
    decision: Decision
    category: str | None = Field(description="the deciding category; none when allowed")
    scores: Scores = Field(description="category → probability from the small model")
    route: Route
    final: bool = True
    model: str
    model_version: str
    policy: str
    policy_version: str
    latency_ms: float = Field(ge=0.0, allow_inf_nan=False, description="from the post's created_at, or from ingest")
    cost_usd: float = Field(ge=0.0, allow_inf_nan=False, description="estimated cost of producing this verdict")
    rationale: str | None = Field(default=None, description="frontier route only")
    flags: tuple[str, ...] = Field(default=(), description="e.g. 'frontier_unavailable' on fallback")
    supersedes: str | None = Field(
        default=None,
        description="route human only: the verdict_id of the earlier final verdict of this post that a reviewer "
        "overruled. Downstream keeps, per post_id, the latest final verdict; a verdict with `supersedes` set "
        "replaces the one whose verdict_id it names (and any verdict that one replaced), whatever order they "
        "arrive in: never let the superseded verdict_id win again. On the compacted verdicts topic it also is "
        "simply the later record under the same key.",
    )
    guard: str | None = Field(
        default=None,
        description="set when decided under a tripped action guard: the guarded category, whose would-be block was "
        "sent to adjudication or review instead (docs/guard.md); unset otherwise",
    )
    decided_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _supersedes_only_by_humans(self) -> Verdict:
        if (self.supersedes is not None) != (self.route == "human"):
            raise ValueError("a Verdict with route 'human' names the verdict it supersedes ('supersedes'), and "
                             "only such a verdict does")
        return self


def human_verdict_id(post_id: str, decision_id: str) -> str:
    """Deterministic id of the verdict a reviewer's decision ``decision_id`` makes for a post: re-publishing the
    same decision (the console's outbox after a crash) repeats the id, so consumers de-duplicate on it."""
    digest = hashlib.sha256(f"{post_id}\x1fhuman\x1f{decision_id}".encode()).hexdigest()
    return digest[:32]


class AuditedVerdict(BaseModel):
    """The published final verdict an audit judges again (what the audit's outcome agrees with or not)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    verdict_id: str
    decision: Decision
    category: str | None = Field(description="the verdict's deciding category; none when allowed")
    route: Route = Field(description="slm or cache: audits sample the small model's final verdicts")


class AdjudicationRequest(Record):
    """A post sent to the frontier model (topic ``adjudication``, key = post id): a borderline post to settle, or
    (``audit``) a final small-model verdict drawn into the audit sample, to judge again. An audit never makes a
    verdict: its outcome is a Label (``audit`` true, ``agrees``) and the published verdict stays."""

    topic_role = "adjudication"

    post: Post
    scores: Scores
    candidate_category: str | None = Field(description="the category whose band the post fell into")
    model: str
    model_version: str
    policy: str
    policy_version: str
    tier: UrgencyTier = "urgent"
    attempt: int = Field(default=0, ge=0)
    guard: str | None = Field(default=None, description="set when a tripped action guard sent the post here instead "
                              "of blocking it: the guarded category; the frontier's verdict carries it on")
    ingested_at: datetime = Field(description="when the pipeline first read the post")
    enqueued_at: datetime = Field(default_factory=utcnow)
    audit: bool = Field(default=False, description="an audit of the final verdict `audited`, not an escalation: "
                        "consumers that count escalations leave it out")
    audited: AuditedVerdict | None = Field(default=None, description="audit requests only: the verdict judged again")

    @model_validator(mode="after")
    def _audits_name_their_verdict(self) -> AdjudicationRequest:
        if self.audit != (self.audited is not None):
            raise ValueError("an audit request ('audit': true) names the verdict it audits ('audited'), and only "
                             "an audit request does")
        return self


class ShadowDecision(Record):
    """What a candidate policy would have decided for a post (topic ``shadow``, key = post id), next to what the
    live policy did. Never a verdict: ops read these to see a threshold change's effect before it goes live."""

    topic_role = "shadow"

    post_id: NonEmptyId
    scores: Scores
    model_version: str
    live_policy_version: str
    live_decision: Literal["allow", "block", "review", "escalate"]
    live_category: str | None
    shadow_policy: str
    shadow_policy_version: str
    shadow_decision: Literal["allow", "block", "review", "escalate"]
    shadow_category: str | None
    decided_at: datetime = Field(default_factory=utcnow)

    @property
    def agrees(self) -> bool:
        return (self.live_decision, self.live_category) == (self.shadow_decision, self.shadow_category)


class Label(Record):
    """A trusted label for a post (topic ``labels``): what the retraining dataset is made of."""

    topic_role = "labels"

    post_id: NonEmptyId
    text: str
    label: str | None = None
    labels: tuple[str, ...] | None = Field(default=None, description="multi-label data")
    source: LabelSource
    confidence: Probability | None = None
    model_scores: Scores | None = Field(default=None, description="small model's scores at the time")
    model_version: str | None = None
    policy_version: str | None = None
    labelled_at: datetime = Field(default_factory=utcnow)
    verdict_id: str | None = Field(default=None, description="the verdict this label judges (an audited verdict, "
                                   "or the verdict a reviewer decided on)")
    audit: bool = Field(default=False, description="from the audit sample: a seeded random share of final verdicts "
                        "judged again, so an unbiased sample for live precision")
    agrees: bool | None = Field(default=None, description="audit labels: whether the judge agreed with the audited "
                                "verdict (false puts the post in the review console's audit queue)")
    rationale: str | None = Field(default=None, description="the judge's reason (frontier labels)")
    audited: AuditedVerdict | None = Field(default=None, description="audit labels: the verdict judged (its "
                                           "decision, category and route), for live precision per category")
    cost_usd: float | None = Field(default=None, ge=0.0, description="what producing this label cost (audit labels: "
                                   "the frontier calls made for it)")

    @model_validator(mode="after")
    def _has_a_label(self) -> Label:
        if self.label is None and not self.labels:
            raise ValueError("a Label needs 'label' or a non-empty 'labels'")
        return self


DEAD_LETTER_MAX_BYTES = 65_536
"""Default cap on the original bytes a dead letter keeps (setting ``MODCASCADE_DEAD_LETTER_MAX_BYTES``)."""
DEAD_LETTER_KEY_BYTES = 1024
"""A dead letter keeps at most this many bytes of the original key (a key can be as large as a value)."""
DEAD_LETTER_MESSAGE_CHARS = 4096
"""A dead letter's error message is cut to this many characters (a validation error can list every field)."""


class DeadLetter(Record):
    """A record that could not be processed (topic ``dead-letter``), with its original bytes: all of them, or the
    first ``MODCASCADE_DEAD_LETTER_MAX_BYTES`` of them with the size and SHA-256 of the whole (``original_truncated``),
    so a dead letter is bounded whatever arrived."""

    topic_role = "dead-letter"

    original: str = Field(description="the original value (its first bytes when original_truncated): UTF-8 text, "
                          "or base64 when not UTF-8")
    original_encoding: Literal["utf-8", "base64"]
    original_size: int | None = Field(default=None, ge=0, description="size of the whole original value in bytes "
                                      "(unset in dead letters written before it existed)")
    original_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of the "
                                        "whole original value, to match a truncated dead letter with its source")
    original_truncated: bool = Field(default=False, description="original holds only the first bytes of the value "
                                     "(at most the cap; original_size says how many there were)")
    original_key: str | None = Field(default=None, description="the original key (its first "
                                     f"{DEAD_LETTER_KEY_BYTES} bytes when original_key_truncated)")
    original_key_truncated: bool = False
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    stage: str = Field(description="where it failed, e.g. 'classify.intake', or 'classify.publish' for an output "
                       "the producer or broker refused")
    error_type: str
    reason: str = Field(description="short tag, e.g. invalid_json, invalid_record, too_large, output_too_large")
    message: str
    attempts: int = Field(default=1, ge=1)
    failed_at: datetime = Field(default_factory=utcnow)

    @classmethod
    def of(
        cls,
        raw: bytes,
        *,
        stage: str,
        error: BaseException,
        reason: str,
        key: bytes | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        attempts: int = 1,
        message: str | None = None,
        max_original_bytes: int = DEAD_LETTER_MAX_BYTES,
    ) -> DeadLetter:
        """Wrap raw bytes that failed at ``stage``: byte-exact up to ``max_original_bytes`` (base64 when not UTF-8),
        beyond that their first bytes (cut at a character boundary when they are text), with size and SHA-256 of
        the whole. ``message`` defaults to ``str(error)``; either is cut to ``DEAD_LETTER_MESSAGE_CHARS``."""
        original, encoding = _prefix(raw, max(0, max_original_bytes))
        return cls(
            original=original,
            original_encoding=encoding,
            original_size=len(raw),
            original_sha256=hashlib.sha256(raw).hexdigest(),
            original_truncated=len(raw) > max_original_bytes,
            original_key=key[:DEAD_LETTER_KEY_BYTES].decode("utf-8", "replace") if key is not None else None,
            original_key_truncated=key is not None and len(key) > DEAD_LETTER_KEY_BYTES,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            stage=stage,
            error_type=type(error).__name__,
            reason=reason,
            message=_clip(str(error) if message is None else message, DEAD_LETTER_MESSAGE_CHARS),
            attempts=attempts,
        )

    def original_bytes(self) -> bytes:
        """The bytes that failed: all of them, or their first bytes when ``original_truncated``."""
        if self.original_encoding == "base64":
            return base64.b64decode(self.original)
        return self.original.encode("utf-8")


def _prefix(raw: bytes, limit: int) -> tuple[str, Literal["utf-8", "base64"]]:
    """The first ``limit`` bytes of ``raw`` as text when they are UTF-8 (a character cut in two at the limit is
    left out whole), else base64."""
    kept = raw[:limit]
    try:
        return kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if len(kept) < len(raw) and exc.end == len(kept) and exc.reason == "unexpected end of data":
            return kept[:exc.start].decode("utf-8"), "utf-8"  # valid up to the first error, which is the cut
        return base64.b64encode(kept).decode("ascii"), "base64"


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


# Worst-case encoded sizes, for the startup check of the size settings (pipeline.settings.check_message_sizes).
JSON_ESCAPE_FACTOR = 6
"""Bytes JSON may spend on one byte of text: a control character is written as ``\\u00XX``."""
RECORD_OVERHEAD_BYTES = 16_384
"""Room for everything in an output that does not grow with its input's text or value: ids (at most 512
characters), scores (one per policy category), names, versions, times, a 600-character rationale, the Kafka key
and record framing."""


def label_bound(max_text_bytes: int) -> int:
    """Largest encoded Label (or any output carrying a post's text and nothing else that grows)."""
    return JSON_ESCAPE_FACTOR * max_text_bytes + RECORD_OVERHEAD_BYTES


def adjudication_request_bound(max_post_bytes: int) -> int:
    """Largest encoded AdjudicationRequest for a post whose record had at most ``max_post_bytes``: the post is
    written again as compact JSON, which is no longer than the record it was read from, except where a producer
    wrote numbers in ``meta`` shorter than JSON writes them back (``1e15``); such an output is refused by the
    producer and dead-lettered at publish."""
    return max_post_bytes + RECORD_OVERHEAD_BYTES


def dead_letter_bound(max_original_bytes: int) -> int:
    """Largest encoded dead letter (with its Kafka key) that keeps at most ``max_original_bytes`` of a value."""
    return (JSON_ESCAPE_FACTOR * (max_original_bytes + DEAD_LETTER_KEY_BYTES + DEAD_LETTER_MESSAGE_CHARS + 64)
            + DEAD_LETTER_KEY_BYTES + RECORD_OVERHEAD_BYTES)


AlertKind = Literal["drift", "escalation_rate", "disagreement", "dead_letter_rate", "block_rate"]
"""What a monitor alert is about: a category's score distribution moved (population stability index), the
escalation rate jumped, the frontier disagrees with the small model too often, too many records are dead-lettered,
or a category's block rate jumped (the action guard's trigger)."""


def alert_id(policy: str, kind: str, category: str | None, window_start: datetime) -> str:
    """Deterministic id of an alert: a monitor that evaluates the same window again (after a restart) raises the
    same id, so consumers de-duplicate on it."""
    parts = (policy, kind, category or "", window_start.astimezone(UTC).isoformat())
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class Alert(Record):
    """A breach the monitor found in one window (topic ``alerts``, key = ``policy/category/kind``: a compacted
    reader keeps the latest alert of each series). The action guard reads ``block_rate`` alerts."""

    topic_role = "alerts"

    alert_id: str
    kind: AlertKind
    policy: str = Field(description="the policy whose verdicts breached (the monitor's own policy for dead letters)")
    category: str | None = Field(description="the category concerned; none for whole-stream alerts")
    window_start: datetime
    window_end: datetime
    value: float = Field(description="the measured value: PSI, a rate, or a block rate")
    reference: float | None = Field(description="the reference value it was compared with, when there is one")
    threshold: float = Field(description="the limit it crossed: a PSI or rate, or reference x factor")
    count: int = Field(ge=0, description="records the value was measured on (posts, frontier verdicts or blocks)")
    message: str
    raised_at: datetime = Field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return f"{self.policy}/{self.category or '*'}/{self.kind}"


GuardBy = Literal["monitor", "operator"]
"""Who changed a guard: the monitor (tripped it on a block-rate alert) or an operator (``modcascade guard clear``)."""


def guard_key(policy: str, category: str) -> str:
    """The control-topic key of a guard: ``policy/category``."""
    return f"{policy}/{category}"


class GuardState(Record):
    """The state of one category's action guard (compacted topic ``control``, key = ``policy/category``): the latest
    record per key is the state in force, and every classify worker reads the whole topic.

    While ``tripped`` (and ``expires_at`` is unset or still ahead), the classify workers send the category's would-be
    blocks to adjudication, or to the policy's ``review`` decision, instead of blocking them (docs/guard.md)."""

    topic_role = "control"

    policy: str = Field(min_length=1, description="the policy name whose verdicts the guard applies to")
    category: str = Field(min_length=1, description="the guarded category")
    tripped: bool = Field(description="true: the guard is in force; false: cleared")
    by: GuardBy = Field(description="who changed it: monitor or operator")
    reason: str = Field(default="", description="why, for people: the alert's message, or the operator's note")
    alert_id: str | None = Field(default=None, description="the block_rate alert that tripped it")
    block_rate: float | None = Field(default=None, ge=0.0, le=1.0, description="the window's block rate that "
                                     "tripped it")
    reference: float | None = Field(default=None, ge=0.0, le=1.0, description="the reference block rate it was "
                                    "compared with")
    window_start: datetime | None = Field(default=None, description="start of the window that tripped it")
    expires_at: datetime | None = Field(default=None, description="when a tripped guard resets by itself (the "
                                        "policy's guard.reset_after_s); none: until an operator clears it")
    changed_at: datetime = Field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return guard_key(self.policy, self.category)

    def in_force(self, now: datetime) -> bool:
        """Tripped and not yet expired at ``now``."""
        return self.tripped and (self.expires_at is None or now < self.expires_at)


BudgetName = Literal["escalation", "audit"]
"""The policy's budgets of frontier calls: escalations, and the audit sample's own."""


class BudgetLedger(Record):
    """The frontier spend booked on one partition of ``adjudication`` in the last hour (compacted topic ``budget``,
    key = ``budget/source_topic/partition``), published by the partition's owner with each batch's outputs, before
    its offsets are committed; the partition's next owner starts from it. So N adjudicate replicas together keep
    the policy's hourly caps (docs/adjudication.md, "Several replicas")."""

    topic_role = "budget"

    budget: BudgetName = Field(description="which of the policy's budgets")
    source_topic: str = Field(min_length=1)
    partition: int = Field(ge=0)
    entries: tuple[tuple[float, int, float], ...] = Field(description="(expires at, Unix seconds; requests; usd) "
                                                          "per booking bucket, oldest first")
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return ledger_key(self.budget, self.source_topic, self.partition)


def ledger_key(budget: str, source_topic: str, partition: int) -> str:
    """The ``budget``-topic key of one partition's ledger."""
    return f"{budget}/{source_topic}/{partition}"


RECORD_TYPES: tuple[type[Record], ...] = (Post, Verdict, AdjudicationRequest, Label, DeadLetter, ShadowDecision, Alert,
                                          GuardState, BudgetLedger)
