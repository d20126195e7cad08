"""``modcascade batch``: the moderation cascade over files and topic ranges, resumable from checkpoints.

    sources.py  post sources: JSONL, CSV and Parquet files and topic ranges, read in chunks (streaming) with a
                resume cursor after each chunk
    sinks.py    append-only outputs (JSONL, Parquet of verdicts) whose durable length is a checkpoint mark
    io.py       both of the above in one import
"""
