"""Frontier adjudication: borderline posts to a frontier model (Claude), safely, within budget, without loss.

    prompt.py         pure: the request for one post (cached system prompt from the policy; the post as
                      delimited data; one tool whose enums are the policy's categories and decisions)
    answer.py         pure: the reply checked against the policy → Judgement, or the problem
    limits.py         pure: token bucket, circuit breaker, escalation budget (clock-injected)
    backends.py       Adjudicator protocol, FrontierRouter (the policy's provider), HTTP errors translated
    anthropic_api.py  Claude through the official SDK (Messages API, tool use, prompt caching; no SDK retries)
    openai_chat.py    an OpenAI-compatible chat API (e.g. a larger model on vLLM) through the official SDK
    stage.py          AdjudicationStage: the per-request flow, retries, fallback, verdicts + labels

The worker that runs it is :mod:`pipeline.services.adjudicate`.
"""
