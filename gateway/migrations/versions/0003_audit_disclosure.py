"""gateway tables: the audit log's index of disclosures by organisation

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AuditSeq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_disclosure",
        sa.Column("orgnr", sa.String(length=9), nullable=False),
        sa.Column("seq", AuditSeq, nullable=False),
        sa.PrimaryKeyConstraint("orgnr", "seq", name=op.f("pk_audit_disclosure")),
    )


def downgrade() -> None:
    op.drop_table("audit_disclosure")
