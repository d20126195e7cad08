"""Frontier adjudication: borderline posts to a frontier model (Claude), safely, within budget, without loss.

    prompt.py    pure: the request for one post (cached system prompt from the policy; the post as delimited data;
                 one tool whose enums are the policy's categories and decisions)
    answer.py    pure: the reply checked against the policy → Judgement, or the problem
    limits.py    pure: token bucket, circuit breaker, escalation budget (clock-injected)
    backends.py  Adjudicator protocol; AnthropicAdjudicator (official SDK, no SDK retries, errors translated)
    stage.py     AdjudicationStage: the per-request flow, retries, fallback, verdicts + labels

The worker that runs it is :mod:`workers.adjudicate`.
"""
