"""gateway tables: the audit chain and its signed heads

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# INTEGER PRIMARY KEY on SQLite makes the sequence number the rowid.
AuditSeq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_entry",
        sa.Column("seq", AuditSeq, autoincrement=False, nullable=False),
        sa.Column("participant_id", sa.String(length=36), nullable=False),
        sa.Column("caller_orgnr", sa.String(length=9), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_entry")),
    )
    op.create_index(op.f("ix_audit_entry_participant_id"), "audit_entry", ["participant_id"])
    op.create_index(op.f("ix_audit_entry_caller_orgnr"), "audit_entry", ["caller_orgnr"])
    op.create_table(
        "audit_signed_head",
        sa.Column("id", AuditSeq, autoincrement=True, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kid", sa.String(length=100), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_signed_head")),
    )
    op.create_index(op.f("ix_audit_signed_head_seq"), "audit_signed_head", ["seq"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_signed_head_seq"), table_name="audit_signed_head")
    op.drop_table("audit_signed_head")
    op.drop_index(op.f("ix_audit_entry_caller_orgnr"), table_name="audit_entry")
    op.drop_index(op.f("ix_audit_entry_participant_id"), table_name="audit_entry")
    op.drop_table("audit_entry")
