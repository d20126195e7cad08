"""The audit draw: which final small-model verdicts are judged again by the frontier. Pure, no I/O, no clock.

A post is in the sample when ``audit_draw(seed, post_id) < rate``, its verdict's rate from the policy's
``audit`` section (:meth:`pipeline.policy.model.Audit.rate`). The draw is a stable hash, not a random number
generator, so:

- a post delivered again (a worker crashed before its commit) makes the same choice;
- every replica of the classify worker agrees, without sharing any state;
- the expected sample of a stream is computable in advance (tests assert it exactly);
- raising a rate keeps every post drawn at the lower rate (the samples are nested).

Over distinct post ids the draws behave as independent uniform numbers, so a rate ``r`` over ``n`` posts
audits Binomial(n, r) of them.
"""

from __future__ import annotations

import hashlib

from pipeline.policy.model import Audit

_SCALE = float(1 << 64)


def audit_draw(seed: int, post_id: str) -> float:
    """A number in [0, 1) fixed by ``(seed, post_id)``: the first 8 bytes of sha256 of both, over 2**64."""
    digest = hashlib.sha256(f"modcascade-audit\x1f{seed}\x1f{post_id}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def audited(audit: Audit, post_id: str, *, route: str, decision: str, category: str | None) -> bool:
    """Whether the final verdict of ``post_id`` (this route, decision and category) goes to the audit sample."""
    rate = audit.rate(route, decision, category)
    return rate > 0.0 and audit_draw(audit.seed, post_id) < rate
