"""ranking tasks: the final ranking's metrics, read from the challenge file

Revision ID: 0004_ranking_tasks
Revises: 0003_api_tokens
Create Date: 2026-12-04 16:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_ranking_tasks"
down_revision = "0003_api_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision (existing challenges keep the COVID-19-20 tasks)."""
    with op.batch_alter_table("challenges", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "ranking_tasks",
                sa.String(length=200),
                nullable=False,
                server_default="dice,nsd,nave",
            )
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("challenges", schema=None) as batch_op:
        batch_op.drop_column("ranking_tasks")
