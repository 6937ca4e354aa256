"""Alembic environment for autopeft's schema.

autopeft runs migrations itself (autopeft.storage.schema.upgrade, behind
`autopeft db upgrade`), handing over an open connection in config.attributes. A developer
adding a revision can do the same from Python:

    from alembic import command
    from autopeft.storage.engine import make_engine, resolve_url
    from autopeft.storage.schema import alembic_config
    with make_engine(resolve_url("sqlite:///scratch.db")).begin() as conn:
        command.upgrade(alembic_config(conn), "head")
        command.revision(alembic_config(conn), "what changed", autogenerate=True)

and then edit the generated file (name it NNNN_what.py, revision "NNNN").
"""
from __future__ import annotations

from alembic import context

from autopeft.storage.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("autopeft migrations run with a connection passed in "
                       "config.attributes['connection']; see this file's docstring")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=config.attributes.get("version_table", "autopeft_alembic_version"),
    # SQLite cannot ALTER most things in place; batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)

with context.begin_transaction():
    context.run_migrations()
