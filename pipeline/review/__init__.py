"""The human review console (``modcascade review``): queues filled from the topics, claims, decisions, statistics.

    rules      pure: which verdicts and labels become queue items, the seeded QA sample, claims and their expiry
    decision   pure: a reviewer's choice, what it changes, and the Label / superseding Verdict it publishes
    stats      pure: items per hour per reviewer, agreement with the frontier and between reviewers
    auth       pure: scrypt password hashes, the configured reviewers, CSRF tokens
    db         the schema (SQLAlchemy Core) and the engine; migrations/ holds its Alembic history
    store      the console's state in the database: ingest, queues, claims, decisions, outbox, statistics rows
    ingest     the stream stage that fills the queues (posts, verdicts, labels → the database, then commit)
    outbox     drains decisions' records to Kafka after the database commit
    web        the Starlette app: login, queue, item, stats pages (Jinja2, autoescaped; CSRF-checked forms)
    command    `modcascade review`: database, consumer, outbox and web server in one process

State lives in the database only, so a restart loses no decision and no claim. Offsets are committed after the
database commit (a re-delivered record finds its item already there); records are published from the outbox
after the decision is committed (a crash in between publishes late, never loses).
"""
