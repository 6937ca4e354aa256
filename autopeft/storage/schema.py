"""Schema versions, managed with Alembic, run from inside the package (no alembic.ini).

A database with no autopeft tables is created at the newest revision ("head") the first
time it is opened. A database at an older revision is refused with a message naming
``autopeft db upgrade``; one at a revision this autopeft does not know (written by a
newer autopeft) is refused too. Upgrades run in one transaction on both backends.
"""
from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from autopeft.exceptions import StorageError
from autopeft.storage.engine import WRITE_OPTION, describe_error
from autopeft.storage.models import Base

logger = logging.getLogger(__name__)

VERSION_TABLE = "autopeft_alembic_version"
# Alembic keeps the running migration in module globals (alembic.op, alembic.context), so
# two threads migrating at once in one process would send each other's statements to the
# wrong connection and deadlock. Processes have their own globals; threads take turns.
_MIGRATION_LOCK = threading.Lock()
# Read at call time, so a test can point it at a copy with an extra revision.
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


@dataclass(frozen=True)
class SchemaState:
    current: str | None       # revision stored in the database; None: no autopeft schema
    head: str                  # newest revision this autopeft knows
    known: tuple[str, ...]     # every revision this autopeft knows, newest first
    has_tables: bool           # any autopeft_* table exists (besides the version table)

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    @property
    def behind(self) -> bool:
        return self.current is not None and self.current in self.known and not self.at_head

    @property
    def unknown(self) -> bool:
        return self.current is not None and self.current not in self.known


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    cfg.attributes["version_table"] = VERSION_TABLE
    return cfg


@functools.lru_cache(maxsize=4)
def _revisions(script_location: str) -> tuple[str, ...]:
    cfg = Config()
    cfg.set_main_option("script_location", script_location)
    script = ScriptDirectory.from_config(cfg)
    heads = script.get_heads()
    if len(heads) != 1:  # a packaging mistake, not a user error
        raise RuntimeError(f"autopeft migrations in {script_location} have {len(heads)} heads")
    return tuple(rev.revision for rev in script.walk_revisions())


def known_revisions() -> tuple[str, ...]:
    """Every revision this autopeft knows, newest (head) first."""
    return _revisions(str(MIGRATIONS_DIR))


def schema_state(connection: Connection) -> SchemaState:
    known = known_revisions()
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    current = context.get_current_revision()
    ours = set(Base.metadata.tables)
    has_tables = any(t in ours for t in sa.inspect(connection).get_table_names())
    return SchemaState(current=current, head=known[0], known=known, has_tables=has_tables)


def ensure_schema(engine: Engine, where: str) -> SchemaState:
    """Create a fresh database at head, accept one at head, refuse anything else."""
    state = read_state(engine, where)
    if state.current is None and not state.has_tables:
        logger.info("creating the autopeft schema (revision %s) in %s", state.head, where)
        try:
            upgrade(engine, where)
        except StorageError:
            # Another process may have created it at the same moment: accept its work.
            state = read_state(engine, where)
            if not state.at_head:
                raise
            logger.info("another process created the schema in %s at the same moment", where)
        return read_state(engine, where)
    check_usable(state, where)
    return state


def check_usable(state: SchemaState, where: str) -> None:
    """Refuse a schema this autopeft cannot use (no version, older, newer)."""
    if state.at_head:
        return
    if state.current is None:
        raise StorageError(
            f"the database {where} has autopeft tables but no schema version "
            f"({VERSION_TABLE} is missing or empty), so autopeft cannot tell what they hold.\n"
            f"  fix: point --storage at another database, or drop the autopeft_* tables")
    if state.unknown:
        raise StorageError(
            f"the database {where} is at schema revision {state.current!r}, which this "
            f"autopeft does not know (its newest is {state.head!r}); a newer autopeft wrote it."
            f"\n  fix: upgrade autopeft (pip install -U autopeft), or use another database")
    raise StorageError(
        f"the database {where} is at schema revision {state.current!r}, older than the "
        f"{state.head!r} this autopeft needs.\n  fix: back it up, then run "
        f"`autopeft db upgrade --storage {where}`")


def read_state(engine: Engine, where: str) -> SchemaState:
    try:
        with engine.connect() as connection:
            return schema_state(connection)
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(describe_error(exc, where, "read the schema version",
                                          engine.url.password)) from exc


def upgrade(engine: Engine, where: str) -> tuple[str | None, str]:
    """Bring the database to head in one transaction; returns (before, after) revisions.

    Threads of one process check and upgrade one at a time (the lock covers the read
    too): under load, a reader racing a thread that is creating the schema in a new
    SQLite file could wait out the busy timeout. Processes rely on the database's locks.
    """
    with _MIGRATION_LOCK:
        before = read_state(engine, where)
        if before.unknown:
            check_usable(before, where)  # raises: never "upgrade" a newer schema
        if before.current is None and before.has_tables:
            check_usable(before, where)  # raises: tables we did not version
        if before.at_head:
            return before.current, before.head
        try:
            with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
                command.upgrade(alembic_config(connection), "head")
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(describe_error(exc, where, "upgrade the schema",
                                              engine.url.password)) from exc
    logger.info("upgraded %s from schema revision %s to %s", where, before.current, before.head)
    return before.current, before.head
