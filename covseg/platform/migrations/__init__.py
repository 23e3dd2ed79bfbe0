"""Alembic migrations of the platform schema (run by :func:`covseg.platform.db.upgrade`)."""
