"""Alembic environment: run against the connection ``listserv.store.schema.upgrade`` hands us."""

from typing import Any

from alembic import context

from listserv.store.models import Base


def _ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """The search index (migration 0007, owned by listserv/archive/index.py, not the ORM) is not a table
    autogenerate should propose to drop; nor are FTS5's shadow tables."""
    return not (type_ == "table" and name is not None and name.startswith("post_search"))


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    include_object=_ours,
)
with context.begin_transaction():
    context.run_migrations()
