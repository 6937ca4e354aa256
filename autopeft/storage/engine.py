"""Storage URLs and engines: validation, SQLite crash-safety settings, clear driver errors.

Only two backends are supported, the two the test-suite runs against: SQLite (a file) and
PostgreSQL. A bare ``postgresql://`` URL uses psycopg2 (what ``autopeft[storage]``
installs); SQLAlchemy 2.1 itself would default to psycopg 3.
"""
from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url

from autopeft.exceptions import MissingDependencyError, StorageError

logger = logging.getLogger(__name__)

DEFAULT_FILE = "autopeft.db"
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
URL_EXAMPLES = "sqlite:///autopeft.db (a file) or postgresql://USER@HOST:5432/DBNAME"
# Seconds a PostgreSQL connection attempt may take before we give up (a wrong host must
# fail fast, not hang the CLI).
CONNECT_TIMEOUT_S = 10
# Seconds SQLite waits for another writer's lock before reporting "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30
# Execution option that makes a SQLite transaction take the write lock at BEGIN.
WRITE_OPTION = "autopeft_write"


def resolve_url(url: str | None) -> URL:
    """Parse and check a storage URL; None means ``autopeft.db`` in the working directory.

    Raises StorageError naming the problem and the accepted forms; touches nothing on disk.
    """
    if url is None:
        return URL.create("sqlite", database=str(Path.cwd() / DEFAULT_FILE))
    if not isinstance(url, str) or not url.strip():
        raise StorageError(f"the storage URL is empty.\n  fix: pass --storage with e.g. "
                           f"{URL_EXAMPLES}")
    text = url.strip()
    shown = mask_url(text)
    scheme = text.split(":", 1)[0]
    try:
        parsed = make_url(text)
    except sa.exc.NoSuchModuleError:
        raise StorageError(_unsupported(scheme, shown)) from None
    except (sa.exc.ArgumentError, ValueError) as exc:
        # The parser's words quote pieces of the URL; with credentials in it those pieces
        # may be the password (or part of it), so they are not repeated then.
        said = (str(exc) if shown == text else
                "it does not parse (is the port a number? are '@', ':' and '/' in the "
                "password %-encoded?)")
        raise StorageError(
            f"malformed storage URL {shown!r}: {said}.\n  fix: use {URL_EXAMPLES}") from None
    if parsed.password:  # whatever form the URL took, its parsed password never shows
        shown = shown.replace(str(parsed.password), "***")
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise StorageError(_unsupported(backend, shown))
    if backend == "sqlite":
        return _resolve_sqlite(parsed, shown)
    return _resolve_postgresql(parsed, shown)


def display_url(url: URL) -> str:
    """The URL as shown to people: password hidden."""
    return url.render_as_string(hide_password=True)


# user:password@ in a URL that may not parse: "scheme://" then a user part, a colon, and
# everything up to the last "@" before the path (a password may itself hold "@" or ":").
_CREDENTIALS = re.compile(r"^(?P<head>[^:/?#]*://[^:/?#@]*):(?P<secret>[^/?#]*)@")


def mask_url(text: str) -> str:
    """A URL string with its password replaced by ***, also when it is malformed.

    Every message that quotes the text the user typed goes through this: a URL that
    SQLAlchemy cannot parse is exactly the one whose password display_url cannot hide.
    """
    return _CREDENTIALS.sub(lambda m: f"{m['head']}:***@", text, count=1)


def _unsupported(backend: str, text: str) -> str:
    return (f"unsupported database {backend!r} in storage URL {text!r}; autopeft stores "
            f"studies in {' or '.join(SUPPORTED_BACKENDS)}.\n  fix: use {URL_EXAMPLES}")


def _resolve_sqlite(parsed: URL, text: str) -> URL:
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise StorageError(
            f"storage URL {text!r} names an in-memory SQLite database, which would lose the "
            f"study when the process exits.\n  fix: name a file, e.g. sqlite:///autopeft.db")
    path = Path(database).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if path.is_dir():
        raise StorageError(f"storage URL {text!r} points at a directory ({path}), not a "
                           f"database file.\n  fix: sqlite:///{path / DEFAULT_FILE}")
    if not path.parent.is_dir():
        raise StorageError(f"cannot create the SQLite database {path}: the directory "
                           f"{path.parent} does not exist.\n  fix: create it first "
                           f"(mkdir -p {path.parent}) or choose another path")
    return parsed.set(database=str(path))


def _resolve_postgresql(parsed: URL, text: str) -> URL:
    if not parsed.database:
        raise StorageError(f"storage URL {text!r} names no database.\n  fix: add it after "
                           f"the host, e.g. postgresql://USER@HOST:5432/DBNAME")
    if parsed.drivername == "postgresql":
        for module, driver in (("psycopg2", "postgresql+psycopg2"),
                               ("psycopg", "postgresql+psycopg")):
            if importlib.util.find_spec(module) is not None:
                return parsed.set(drivername=driver)
        raise MissingDependencyError(
            "PostgreSQL storage needs a driver, and neither psycopg2 nor psycopg is "
            "installed.\n  fix: pip install 'autopeft[storage]'")
    return parsed


def make_engine(url: URL) -> Engine:
    """An engine for a URL from resolve_url, with the settings storage relies on."""
    backend = url.get_backend_name()
    try:
        if backend == "sqlite":
            engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
            _configure_sqlite(engine)
            return engine
        connect_args = {"application_name": "autopeft"}
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        return sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            f"the database driver {exc.name!r} for {display_url(url)} is not installed.\n"
            f"  fix: pip install {exc.name}, or use postgresql://... (psycopg2, installed "
            f"with 'autopeft[storage]')") from None
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(describe_error(exc, display_url(url), "open the database",
                                          url.password)) from exc


def _configure_sqlite(engine: Engine) -> None:
    """WAL journal, foreign keys, and transactions that begin when we say so.

    pysqlite opens transactions lazily and never for a plain SELECT, so two writers can both
    read the next trial number before either writes. We take over BEGIN instead: write
    scopes issue BEGIN IMMEDIATE (the write lock is taken up front, others wait up to the
    busy timeout), read scopes a plain BEGIN. WAL lets readers run while one process
    writes and keeps every committed transaction after a kill -9; synchronous=NORMAL is
    the setting SQLite documents as safe with WAL against application crashes.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, connection_record):  # noqa: ARG001
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def describe_error(exc: BaseException, where: str, action: str,
                   secret: object = None) -> str:
    """One clear message for a driver error: what we tried, where, what the driver said.

    `secret` (the URL's password) is masked if the driver's words quote it back."""
    orig = getattr(exc, "orig", None) or exc
    said = mask_url((str(orig).strip().splitlines() or [type(orig).__name__])[0])
    if secret:
        said = said.replace(str(secret), "***")
    text = str(orig).lower()
    if isinstance(exc, sa.exc.OperationalError) and _is_connect_failure(text):
        return (f"cannot connect to the database {where} to {action}: {said}\n"
                f"  fix: check that the server is running and reachable and that the URL "
                f"(host, port, user, database name) is right")
    if "database is locked" in text:
        return (f"the SQLite database {where} stayed locked by another process for "
                f"{SQLITE_BUSY_TIMEOUT_S} s while trying to {action}.\n  fix: stop the other "
                f"autopeft process using it, or use PostgreSQL for parallel drivers")
    return f"database error while trying to {action} in {where}: {type(orig).__name__}: {said}"


_CONNECT_HINTS = (
    "could not connect", "connection refused", "connection to server", "timeout expired",
    "could not translate host name", "name or service not known", "network is unreachable",
    "no route to host", "password authentication failed",
    "unable to open database file", "server closed the connection",
)


_MISSING_TARGET = re.compile(r'(database|role) "[^"]*" does not exist')


def _is_connect_failure(text: str) -> bool:
    return any(h in text for h in _CONNECT_HINTS) or bool(_MISSING_TARGET.search(text))
