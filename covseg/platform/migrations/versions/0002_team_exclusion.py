"""team exclusion: organizers take a team off the boards and the ranking without deleting it

Revision ID: 0002_team_exclusion
Revises: 0001
Create Date: 2026-12-04 15:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_team_exclusion"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("excluded_at", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("exclusion_reason", sa.Text(), nullable=False, server_default="")
        )


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_column("exclusion_reason")
        batch_op.drop_column("excluded_at")
