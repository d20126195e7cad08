"""The classify stage of the cascade: what happens to a batch of posts between the topic and the verdicts.

    cache.py   ScoreCache: exact repeats (normalized text) reuse scores, keyed by model and policy version
    route.py   pure: a post, its scores and the policy's outcome → Verdict or AdjudicationRequest
    stage.py   ClassifyStage: intake → cache → classify (backing off while the backend is down) → decide → route

The Kafka side (batching, publishing, committing) is :mod:`pipeline.kafka.stream`; the worker that wires the
two together is :mod:`pipeline.services.classify`.
"""
