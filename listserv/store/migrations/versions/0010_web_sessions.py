"""web sessions: signing out ends the session on the server

The cookie used to hold the member and a fingerprint of their password, signed: a copy of it kept working
after "sign out" until it expired. Now it holds a random token whose SHA-256 is the key of a row here;
signing out sets ``ended_at``. Existing cookies carry no token: everyone signs in once more after the
upgrade.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 11:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import listserv.store.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("password_fingerprint", sa.String(length=16), nullable=False),
        sa.Column("created_at", listserv.store.db.UTCDateTime(), nullable=False),
        sa.Column("ended_at", listserv.store.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_session_member_id"), ["member_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_session_member_id"))
    op.drop_table("web_session")
