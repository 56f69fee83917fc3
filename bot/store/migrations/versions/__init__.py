"""Alembic revisions, oldest first by id: `0001_baseline.py` is the schema before Alembic."""
