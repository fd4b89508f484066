"""member states, focal points, reconfirmation, open windows

``member.country`` becomes an ISO 3166-1 alpha-2 code: free text that names one country without doubt
in English, French or Spanish ("Chile", "Chili") is rewritten as its code (``CL``); anything else is
left as written for ``listserv members check`` to list. New: ``member.affiliation``, the yearly
reconfirmation (``member.confirmed_at``, ``member.reconfirm_sent_at``), why delivery stopped
(``subscription.disabled_reason``), and ``held.publish_at`` for a post approved while its room is closed.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-06 13:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import listserv.store.db
from listserv.store import countries

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("affiliation", sa.String(length=200), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("confirmed_at", listserv.store.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("reconfirm_sent_at", listserv.store.db.UTCDateTime(), nullable=True))
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_reason", sa.String(length=16), nullable=True))
    with op.batch_alter_table("held", schema=None) as batch_op:
        batch_op.add_column(sa.Column("publish_at", listserv.store.db.UTCDateTime(), nullable=True))
    map_countries(op.get_bind())


def map_countries(connection: sa.Connection) -> None:
    """Free text → code where the text names exactly one country; the rest stays for an operator."""
    member = sa.table("member", sa.column("id", sa.Integer), sa.column("country", sa.String))
    written = {row.country for row in connection.execute(sa.select(member.c.country).distinct())}
    for text in written:
        code = countries.from_name(text or "")
        if code and code != text:
            connection.execute(member.update().where(member.c.country == text).values(country=code))


def downgrade() -> None:
    with op.batch_alter_table("held", schema=None) as batch_op:
        batch_op.drop_column("publish_at")
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.drop_column("disabled_reason")
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.drop_column("reconfirm_sent_at")
        batch_op.drop_column("confirmed_at")
        batch_op.drop_column("affiliation")
