"""gateway tables: outbox, OAuth clients, used client-assertion ids

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("position", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("envelope", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
    )
    op.create_table(
        "oauth_client",
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column("orgnr", sa.String(length=9), nullable=False),
        sa.Column("agency_type", sa.String(length=50), nullable=False),
        sa.Column("scopes", sa.String(length=500), nullable=False),
        sa.Column("jwks", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_oauth_client")),
    )
    op.create_index(op.f("ix_oauth_client_orgnr"), "oauth_client", ["orgnr"])
    op.create_table(
        "oauth_used_jti",
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column("jti", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti", name=op.f("pk_oauth_used_jti")),
    )
    op.create_index(op.f("ix_oauth_used_jti_expires_at"), "oauth_used_jti", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_oauth_used_jti_expires_at"), table_name="oauth_used_jti")
    op.drop_table("oauth_used_jti")
    op.drop_index(op.f("ix_oauth_client_orgnr"), table_name="oauth_client")
    op.drop_table("oauth_client")
    op.drop_table("outbox")
