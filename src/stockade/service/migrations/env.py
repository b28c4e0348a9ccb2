"""Alembic environment: runs on the connection the Store hands over (see
Store.migrate_sync), or on STOCKADE_DATABASE_URL when run from the alembic CLI."""

from alembic import context
from sqlalchemy import create_engine

connection = context.config.attributes.get("connection")


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=None, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    from stockade.settings import Settings

    with create_engine(Settings.load().sqlalchemy_url).begin() as own_connection:
        run(own_connection)
