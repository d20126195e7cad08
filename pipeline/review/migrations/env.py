"""Alembic environment: runs migrations on the connection :func:`pipeline.review.db.upgrade` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from pipeline.review.db import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run the review console's migrations through pipeline.review.db.upgrade (or "
                       "`modcascade review migrate`)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
