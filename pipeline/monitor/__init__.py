"""The drift monitor (``modcascade worker monitor``): what the cascade decided, watched in tumbling time windows.

    tally     records (verdicts, adjudication requests, dead letters) -> counts per window and statistic
    stats     one window's counts -> its statistics (decision mix, escalation and block rates, score histograms,
              frontier/small-model disagreement, dead-letter rate); the population stability index
    baseline  the reference a window is compared with: the trailing windows, or a baseline file
    rules     a window's statistics against its reference and the policy's ``monitor:`` thresholds -> Alerts
    windows   which windows are closed and due for evaluation
    layout    which policy edits a running monitor takes (thresholds) and which need a restart (its windows)
    app       the faust-streaming app: changelog-backed window tables, the evaluation timer, the alerts topic

Everything but ``app`` is pure (no faust, no Kafka), so the statistics and rules are unit-tested directly.
"""
