"""``modcascade backtest``: labelled history replayed through the cascade's own stages, and its learning loop.

    outcome.py       what one replayed post ended as (HistoryPost in, PostOutcome out), JSON both ways (pure)
    windows.py       consecutive windows over the history; the labelled seed at its start (pure)
    metrics.py       escalation rate, kept accuracy, per-category precision/recall, macro-F1, cost (pure)
    diff.py          the posts whose decision changes between two policies (pure)
    mixing.py        how new frontier labels join the training set (escalations are a biased sample) (pure)
    curve.py         the learning-curve table (markdown, JSON) and its PNG (pure)
    labels_judge.py  ``--adjudicator labels``: the history's own labels answer as the frontier, priced at zero
    checkpoint.py    one file per finished window/round in the out folder: an interrupted run resumes there
    history.py       the labelled history read through the batch file sources, in time order (stage layer)
    replay.py        posts through the stream's ClassifyStage and AdjudicationStage (stage layer)
    command.py       the app shell: settings → classifier, frontier, the runs, the report; loop.py: ``--loop``
"""
