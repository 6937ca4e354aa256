"""Where studies and trials are kept: SQLite by default, PostgreSQL through a URL.

    storage = open_storage(None)                        # ./autopeft.db
    storage = open_storage("postgresql://me@db:5432/autopeft")

See autopeft.storage.rdb.Storage for the methods and the invariants they keep. SQLAlchemy
and Alembic are imported only when a storage is opened, so `import autopeft.storage`
stays cheap and works without the `storage` extra (the records below need neither).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from autopeft._imports import require
from autopeft.storage.snapshots import STUDY_STATUSES, ArtifactRecord, StudyInfo, StudySpec

if TYPE_CHECKING:  # pragma: no cover
    from autopeft.storage.rdb import Storage
    from autopeft.storage.schema import SchemaState

__all__ = [
    "STUDY_STATUSES",
    "ArtifactRecord",
    "StudyInfo",
    "StudySpec",
    "open_storage",
    "upgrade_database",
    "database_revision",
]


def open_storage(url: str | None = None, *, create: bool = True,
                 study: str | None = None) -> "Storage":
    """Open (and, if it holds no autopeft schema yet, create) the storage at `url`.

    None means ``sqlite:///autopeft.db`` in the current directory. Raises StorageError for
    a malformed or unsupported URL, an unreachable server, or a schema at another revision
    (the message names `autopeft db upgrade`); nothing is written in any of those cases.

    create=False is for commands that only read an existing study (ls, show, export,
    report, resume): a missing SQLite file or a database without the autopeft schema
    raises NoDatabaseError ("no database at PATH") and nothing is created; `study`, the
    name the command was given, is named in that message.
    """
    require("sqlalchemy")
    require("alembic")
    from autopeft.storage.engine import display_url, make_engine, resolve_url
    from autopeft.storage.rdb import Storage
    from autopeft.storage.schema import check_usable, ensure_schema, read_state

    resolved = resolve_url(url)
    where = display_url(resolved)
    if not create and resolved.get_backend_name() == "sqlite":
        if not Path(resolved.database).is_file():  # connecting would create the file
            raise _no_database(f"no database at {resolved.database}", study)
    engine = make_engine(resolved)
    try:
        if create:
            ensure_schema(engine, where)
        else:
            state = read_state(engine, where)
            if state.current is None and not state.has_tables:
                raise _no_database(f"the database {where} holds no autopeft studies (no "
                                   f"autopeft schema)", study)
            check_usable(state, where)
    except BaseException:
        engine.dispose()
        raise
    return Storage(engine, where)


def _no_database(what: str, study: str | None) -> Exception:
    from autopeft.exceptions import NoDatabaseError

    head = f"no study named {study!r}: {what}" if study is not None else (
        f"{what}, so it holds no study")
    error = NoDatabaseError(
        f"{head}; nothing was created.\n  fix: run the command in "
        f"the folder that holds autopeft.db, pass --storage URL, or start a study with "
        f"`autopeft search --space default.yaml`")
    error.what = what
    return error


def upgrade_database(url: str | None = None) -> tuple[str | None, str]:
    """Bring the schema at `url` to the newest revision (creating it if absent).

    Returns (revision before, revision after); before is None for a new database.
    """
    require("sqlalchemy")
    require("alembic")
    from autopeft.storage.engine import display_url, make_engine, resolve_url
    from autopeft.storage.schema import upgrade

    resolved = resolve_url(url)
    engine = make_engine(resolved)
    try:
        return upgrade(engine, display_url(resolved))
    finally:
        engine.dispose()


def database_revision(url: str | None = None) -> tuple["SchemaState", str]:
    """The schema state at `url` (current and newest revision) and the URL as displayed.

    Reads only: a database without the autopeft schema is left as it is.
    """
    require("sqlalchemy")
    require("alembic")
    from autopeft.storage.engine import display_url, make_engine, resolve_url
    from autopeft.storage.schema import SchemaState, known_revisions, read_state

    resolved = resolve_url(url)
    where = display_url(resolved)
    if resolved.get_backend_name() == "sqlite" and not Path(resolved.database).exists():
        known = known_revisions()  # connecting would create the file
        return SchemaState(current=None, head=known[0], known=known, has_tables=False), where
    engine = make_engine(resolved)
    try:
        return read_state(engine, where), where
    finally:
        engine.dispose()


def __getattr__(name: str):
    # `from autopeft.storage import Storage` works, importing SQLAlchemy only then.
    if name == "Storage":
        require("sqlalchemy")
        from autopeft.storage.rdb import Storage

        return Storage
    raise AttributeError(f"module 'autopeft.storage' has no attribute {name!r}")
