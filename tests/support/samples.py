"""Realistic instances of every record type, shared by unit and broker tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.records import (
    AdjudicationRequest,
    Alert,
    BudgetLedger,
    DeadLetter,
    GuardState,
    Label,
    Post,
    Record,
    ShadowDecision,
    Verdict,
    alert_id,
    verdict_id,
)

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
SCORES = {"safe": 0.31, "spam": 0.62, "harassment": 0.04, "hate": 0.01, "sexual": 0.01, "violence": 0.005,
          "self_harm": 0.005}


def sample_records() -> list[Record]:
    post = Post(id="post-1", text="WIN a free iPhone!!! click bit.ly/xyz 🎉", created_at=T0, source="web", lang="en",
                meta={"author": "u123", "thread": 9})
    return [
        post,
        Verdict(verdict_id=verdict_id(post.id, "3f2a9c1b0d4e"), post_id=post.id, decision="block", category="spam",
                scores=SCORES, route="slm", final=True, model="modcascade-minilm", model_version="m-20261124",
                policy="default", policy_version="3f2a9c1b0d4e", latency_ms=41.5, cost_usd=0.00001,
                decided_at=T0),
        AdjudicationRequest(post=post, scores=SCORES, candidate_category="spam", model="modcascade-minilm",
                            model_version="m-20261124", policy="default", policy_version="3f2a9c1b0d4e",
                            tier="deferrable", attempt=1, ingested_at=T0, enqueued_at=T0),
        Label(post_id=post.id, text=post.text, label="spam", source="frontier", confidence=0.97,
              model_scores=SCORES, model_version="m-20261124", policy_version="3f2a9c1b0d4e", labelled_at=T0),
        DeadLetter.of(b"\xff\xfenot utf8", stage="classify.decode", error=ValueError("not UTF-8"),
                      reason="invalid_utf8", key=b"post-2", topic="posts", partition=0, offset=5),
        ShadowDecision(post_id=post.id, scores=SCORES, model_version="m-20261124", live_policy_version="3f2a9c1b0d4e",
                       live_decision="escalate", live_category="spam", shadow_policy="default-candidate",
                       shadow_policy_version="9a8b7c6d5e4f", shadow_decision="block", shadow_category="spam",
                       decided_at=T0),
        Alert(alert_id=alert_id("default", "drift", "spam", T0), kind="drift", policy="default", category="spam",
              window_start=T0, window_end=T0 + timedelta(minutes=5), value=0.41, reference=None, threshold=0.25,
              count=1200, message="spam scores drifted: PSI 0.41 > 0.25", raised_at=T0),
        GuardState(policy="default", category="spam", tripped=True, by="monitor", reason="spam: 300 of 500 blocked",
                   alert_id=alert_id("default", "block_rate", "spam", T0), block_rate=0.6, reference=0.05,
                   window_start=T0, expires_at=T0 + timedelta(hours=1), changed_at=T0),
        BudgetLedger(budget="escalation", source_topic="adjudication", partition=2,
                     entries=((T0.timestamp() + 3600, 3, 0.012), (T0.timestamp() + 3660, 1, 0.004)), updated_at=T0),
    ]
