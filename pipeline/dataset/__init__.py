"""The retraining dataset: labels from the ``labels`` topic, de-duplicated on disk, exported for training.

    pii.py       pure: scrub emails, phones, URLs and @handles from text (the policy's dataset.scrub_pii)
    files.py     durable, atomic file writes (temp file, fsync, rename, fsync the folder)
    store.py     DatasetStore: day-partitioned Parquet, append-only, precedence human > frontier > import
    feedback.py  FeedbackStage: labels topic → decode → scrub → append (the feedback worker's processor)
    stats.py     pure: counts by label / source / day, small model vs adjudicator disagreement; rich output
    export.py    train / val / test split by a stable hash of the post id, a pinned golden set, a manifest
    command.py   the `modcascade dataset` commands

The worker that runs the stage is :mod:`pipeline.services.feedback`.
"""
