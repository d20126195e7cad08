"""The console's database: the schema (SQLAlchemy Core, portable between SQLite and PostgreSQL), the engine, and
the migrations (Alembic, in ``migrations/``; ``upgrade`` runs them to the newest revision).

    posts      recent posts: text and current final verdict (JSON), pruned after the retention unless queued
    items      queue items: which queue, which post and verdict, the claim (who, until when), reviews done
    decisions  every decision, final: who, when, what they chose, what the post's outcome was and whether it changed
    outbox     the records each decision publishes, until Kafka acknowledged them

Times are stored as UTC (timezone-aware in PostgreSQL; SQLite keeps them naive and :class:`UtcDateTime` puts the
zone back), so claims compare correctly in SQL on both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).parent / "migrations"

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the review database: pass an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


posts = Table(
    "posts", metadata,
    Column("post_id", String(512), primary_key=True),
    Column("text", Text, nullable=True),
    Column("verdict", Text, nullable=True, comment="the post's current final verdict (Verdict JSON)"),
    Column("seen_at", UtcDateTime, nullable=False),
)

items = Table(
    "items", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_key", String(600), nullable=False, unique=True),
    Column("queue", String(16), nullable=False),
    Column("post_id", String(512), nullable=False, index=True),
    Column("verdict_id", String(64), nullable=True, comment="the verdict under review (audit: the audited one)"),
    Column("verdict", Text, nullable=True, comment="the verdict that queued the item (Verdict JSON)"),
    Column("label", Text, nullable=True, comment="the audit label that queued the item (Label JSON)"),
    Column("frontier_label", String(128), nullable=True, comment="the frontier's label, where it judged the post"),
    Column("reviews_needed", Integer, nullable=False),
    Column("reviews_done", Integer, nullable=False, default=0),
    Column("state", String(16), nullable=False, default="open"),
    Column("claimed_by", String(128), nullable=True),
    Column("claim_expires_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_items_state_queue", "state", "queue", "id"),
)

decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uid", String(32), nullable=False, unique=True),
    Column("item_id", Integer, ForeignKey("items.id"), nullable=False),
    Column("reviewer", String(128), nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("label", String(128), nullable=False),
    Column("previous_verdict_id", String(64), nullable=False),
    Column("previous_decision", String(16), nullable=False),
    Column("previous_category", String(128), nullable=True),
    Column("outcome_changed", Boolean, nullable=False),
    Column("published", Boolean, nullable=False, comment="false for the second, blind review of a QA item"),
    Column("new_verdict_id", String(64), nullable=True),
    UniqueConstraint("item_id", "reviewer", name="uq_decisions_item_reviewer"),
)

outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decision_id", Integer, ForeignKey("decisions.id"), nullable=False),
    Column("role", String(32), nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    Index("ix_outbox_pending", "sent_at", "id"),
)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout (the web threads and the consumer share it), and
    its folder is created."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` (idempotent: an up-to-date database is left alone)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
