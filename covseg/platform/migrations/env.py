"""Alembic environment: runs on the connection handed over by ``covseg.platform.db.upgrade``."""

from alembic import context
from sqlalchemy import create_engine

from covseg.platform.models import Base

config = context.config


def run() -> None:
    """Run the migrations online, on the given connection or on ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
