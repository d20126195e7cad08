"""``modcascade batch``: the moderation cascade over files and topic ranges, resumable from checkpoints.

    command.py      the app-level shell: settings → sources, stages and the run; prints the report
    runner.py       BatchRun: puts a run together from the parts below (transport-neutral: no Kafka client)
    chunk_loop.py   the input chunk by chunk through the stream's stages; urgent escalations adjudicated at once
    deferred_batches.py  deferrable escalations through Message Batches: submit, poll, recover, merge
    deferred.py     what each Message Batches result becomes (pure)
    checkpointer.py the outputs, journals, tally and checkpoint kept in step; checkpoint.py: the checkpoint file
    journal.py      append-only JSONL journals whose durable length is a checkpoint mark
    options.py      where a run writes and how it runs
    progress.py     the run's clock and progress bar
    report.py       the tally and the closing report
    memory.py       the peak-memory instrument a caller injects
    sources/        post sources: JSONL, CSV and Parquet files and topic ranges, read in chunks (streaming) with a
                    resume cursor after each chunk
    sinks.py        append-only outputs (JSONL, Parquet of verdicts) whose durable length is a checkpoint mark
    io.py           sources and sinks in one import (loads the Kafka client: for the command and tests)
"""
