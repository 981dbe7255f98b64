"""Persistence: SQLAlchemy tables, one repository per aggregate, Alembic migrations."""
