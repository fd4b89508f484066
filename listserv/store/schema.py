"""Create or upgrade the schema with Alembic; the same call serves ``init``, tests and benchmarks.

Alembic is imported inside the functions: it costs ~0.2 s, and ``serve`` only needs the cheap check.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect, text

MIGRATIONS = Path(__file__).with_name("migrations")
VERSIONS = MIGRATIONS / "versions"


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest revision; a no-op when it is already there."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def newest_revision() -> str:
    """Revision files are named ``NNNN_description.py`` with ``NNNN`` as their revision id."""
    return max(path.name.split("_", 1)[0] for path in VERSIONS.glob("[0-9]*_*.py"))


def is_current(engine: Engine) -> bool:
    """True when the database is at the newest revision (``serve`` refuses to start otherwise)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return False
        return connection.scalar(text("SELECT version_num FROM alembic_version")) == newest_revision()
