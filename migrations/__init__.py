"""Alembic environment and revisions, installed as ``monitor.migrations``."""
