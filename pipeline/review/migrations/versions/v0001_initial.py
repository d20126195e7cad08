"""The review console's first schema: posts, items, decisions, outbox.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.review.db import UtcDateTime

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "posts",
        sa.Column("post_id", sa.String(512), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("verdict", sa.Text(), nullable=True, comment="the post's current final verdict (Verdict JSON)"),
        sa.Column("seen_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("post_id", name="pk_posts"),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_key", sa.String(600), nullable=False),
        sa.Column("queue", sa.String(16), nullable=False),
        sa.Column("post_id", sa.String(512), nullable=False),
        sa.Column("verdict_id", sa.String(64), nullable=True,
                  comment="the verdict under review (audit: the audited one)"),
        sa.Column("verdict", sa.Text(), nullable=True, comment="the verdict that queued the item (Verdict JSON)"),
        sa.Column("label", sa.Text(), nullable=True, comment="the audit label that queued the item (Label JSON)"),
        sa.Column("frontier_label", sa.String(128), nullable=True,
                  comment="the frontier's label, where it judged the post"),
        sa.Column("reviews_needed", sa.Integer(), nullable=False),
        sa.Column("reviews_done", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("claim_expires_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_items"),
        sa.UniqueConstraint("item_key", name="uq_items_item_key"),
    )
    op.create_index("ix_items_post_id", "items", ["post_id"])
    op.create_index("ix_items_state_queue", "items", ["state", "queue", "id"])
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uid", sa.String(32), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("decided_at", UtcDateTime(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("previous_verdict_id", sa.String(64), nullable=False),
        sa.Column("previous_decision", sa.String(16), nullable=False),
        sa.Column("previous_category", sa.String(128), nullable=True),
        sa.Column("outcome_changed", sa.Boolean(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False,
                  comment="false for the second, blind review of a QA item"),
        sa.Column("new_verdict_id", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_decisions_item_id_items"),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
        sa.UniqueConstraint("uid", name="uq_decisions_uid"),
        sa.UniqueConstraint("item_id", "reviewer", name="uq_decisions_item_reviewer"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"], name="fk_outbox_decision_id_decisions"),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_pending", "outbox", ["sent_at", "id"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("decisions")
    op.drop_index("ix_items_state_queue", table_name="items")
    op.drop_index("ix_items_post_id", table_name="items")
    op.drop_table("items")
    op.drop_table("posts")
