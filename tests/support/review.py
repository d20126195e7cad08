"""Records and settings for the review console's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.records import Label, Post, Verdict, verdict_id
from pipeline.settings import ReviewSettings

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECRET = "test-secret-0123456789abcdef"


def review_settings(url: str, **overrides: Any) -> ReviewSettings:
    return ReviewSettings(database_url=url, secret=SECRET, **overrides)


def post(post_id: str, text: str = "some post") -> Post:
    return Post(id=post_id, text=text)


def verdict(post_id: str, *, decision: str = "allow", category: str | None = None, route: str = "slm",
            at: datetime = T0, policy_version: str = "pv1", **extra: Any) -> Verdict:
    return Verdict.model_validate({
        "verdict_id": verdict_id(post_id, policy_version), "post_id": post_id, "decision": decision,
        "category": category, "scores": {"safe": 0.4, "harassment": 0.35, "spam": 0.25}, "route": route,
        "model": "minilm", "model_version": "mv1", "policy": "default", "policy_version": policy_version,
        "latency_ms": 5.0, "cost_usd": 0.0, "decided_at": at, **extra,
    })


def audit_label(post_id: str, judged: str, *, audited: str, text: str = "audited post") -> Label:
    return Label(post_id=post_id, text=text, label=judged, source="frontier", audit=True, agrees=False,
                 verdict_id=audited, rationale="the judge's reason", labelled_at=T0 + timedelta(seconds=1))
