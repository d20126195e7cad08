"""The records on our topics (DESIGN.md, "Topics and records").

Every record is a frozen pydantic model with ``schema_version``. They are encoded and decoded only by
:mod:`pipeline.codec`; JSON Schemas generated from these models are published in
``pipeline/schemas/`` for producers in other languages.

Compatibility rules: producers may omit ``schema_version`` (it defaults to the current one); unknown
fields of a Post are kept in ``meta`` (never a crash); every other record ignores unknown fields, so a
newer producer does not break an older consumer.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1

Decision = Literal["allow", "block", "review"]
"""What happens to a post. ``review`` sends it to human review (a policy action)."""

Route = Literal["slm", "cache", "frontier", "fallback"]
"""Which path produced a verdict: the small model, the score cache, the frontier model, or the
policy's fallback when the frontier was unavailable or over budget."""

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
    def _keep_unknown_in_meta(cls, data: Any) -> Any:
        if isinstance(data, dict):
            extra = {k: v for k, v in data.items() if k not in cls._known}
            if extra:
                data = {k: v for k, v in data.items() if k in cls._known}
                meta = data.get("meta")
                if isinstance(meta, dict):
                    data["meta"] = {**extra, **meta}
                else:  # a non-map meta would fail validation; keep the extras and let it
                    data["meta"] = extra if meta is None else meta
        return data

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_string(cls, value: Any) -> Any:
        # Producers in other languages often send numeric ids; the contract is a string.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("created_at")
    @classmethod
    def _created_at_in_utc(cls, value: datetime | None) -> datetime | None:
        # Naive times are taken as UTC; aware ones are normalized so every record speaks UTC.
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_validator("text")
    @classmethod
    def _text_fits(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise PydanticCustomError("empty_text", "text is empty")
        limit = (info.context or {}).get("max_text_bytes")
        if limit is not None and len(value.encode("utf-8", "surrogatepass")) > limit:
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
    latency_ms: float = Field(ge=0.0, description="from the post's created_at, or from ingest")
    cost_usd: float = Field(ge=0.0, description="estimated cost of producing this verdict")
    rationale: str | None = Field(default=None, description="frontier route only")
    flags: tuple[str, ...] = Field(default=(), description="e.g. 'frontier_unavailable' on fallback")
    decided_at: datetime = Field(default_factory=utcnow)


class AdjudicationRequest(Record):
    """A borderline post sent to the frontier model (topic ``adjudication``, key = post id)."""

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
    ingested_at: datetime = Field(description="when the pipeline first read the post")
    enqueued_at: datetime = Field(default_factory=utcnow)


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

    @model_validator(mode="after")
    def _has_a_label(self) -> Label:
        if self.label is None and not self.labels:
            raise ValueError("a Label needs 'label' or a non-empty 'labels'")
        return self


class DeadLetter(Record):
    """A record that could not be processed (topic ``dead-letter``), with its original bytes."""

    topic_role = "dead-letter"

    original: str = Field(description="the original value: UTF-8 text, or base64 when not UTF-8")
    original_encoding: Literal["utf-8", "base64"]
    original_key: str | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    stage: str = Field(description="where it failed, e.g. 'classify.decode'")
    error_type: str
    reason: str = Field(description="short tag, e.g. invalid_json, invalid_record, too_large")
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
    ) -> DeadLetter:
        """Wrap raw bytes that failed at ``stage``; keeps them byte-exact (base64 when not UTF-8)."""
        encoding: Literal["utf-8", "base64"]
        try:
            original, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            original, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        return cls(
            original=original,
            original_encoding=encoding,
            original_key=key.decode("utf-8", "replace") if key is not None else None,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            stage=stage,
            error_type=type(error).__name__,
            reason=reason,
            message=str(error),
            attempts=attempts,
        )

    def original_bytes(self) -> bytes:
        """The exact bytes that failed."""
        if self.original_encoding == "base64":
            return base64.b64decode(self.original)
        return self.original.encode("utf-8")


RECORD_TYPES: tuple[type[Record], ...] = (Post, Verdict, AdjudicationRequest, Label, DeadLetter, ShadowDecision)
