"""Alembic migrations of the review console's database (run by :func:`pipeline.review.db.upgrade`)."""
