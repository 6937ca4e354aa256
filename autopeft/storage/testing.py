"""Helpers for testing against a real PostgreSQL server (used by tests/test_storage*.py).

A test session gets its own throw-away database (autopeft_test_<random>), and each test
its own schema inside it, reached through the URL's search_path: every test starts from an
empty database and nothing is left behind on the server.

Environment:
    AUTOPEFT_TEST_POSTGRES    admin URL (default postgresql://postgres@127.0.0.1:5432/postgres)
    AUTOPEFT_REQUIRE_POSTGRES=1   fail instead of skipping when the server is unreachable (CI)
"""
from __future__ import annotations

import contextlib
import os
import secrets
from typing import Iterator
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

DEFAULT_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def admin_url() -> URL:
    url = make_url(os.environ.get("AUTOPEFT_TEST_POSTGRES", DEFAULT_ADMIN_URL))
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    return url


def postgres_unreachable_reason(url: URL | None = None) -> str | None:
    """None if the server answers within 3 s, else why not (for pytest.skip)."""
    url = url or admin_url()
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return None
    except sa.exc.SQLAlchemyError as exc:
        first = (str(getattr(exc, "orig", exc)).strip().splitlines() or ["?"])[0]
        return (f"PostgreSQL not reachable at {url.render_as_string(hide_password=True)}: "
                f"{first} (set AUTOPEFT_TEST_POSTGRES to another server)")
    finally:
        engine.dispose()


def _autocommit(url: URL) -> sa.Engine:
    return sa.create_engine(url, isolation_level="AUTOCOMMIT",
                            connect_args={"connect_timeout": 5})


@contextlib.contextmanager
def temporary_database(url: URL | None = None) -> Iterator[URL]:
    """Create autopeft_test_<random>, yield its URL, then drop it (closing stray sessions)."""
    url = url or admin_url()
    name = f"autopeft_test_{secrets.token_hex(4)}"
    admin = _autocommit(url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield url.set(database=name)
    finally:
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.dispose()


@contextlib.contextmanager
def temporary_schema(database_url: URL) -> Iterator[str]:
    """Create a schema in the database and yield a URL string whose connections use it
    (search_path); the schema and everything in it is dropped afterwards."""
    schema = f"t_{secrets.token_hex(6)}"
    admin = _autocommit(database_url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        options = quote(f"-csearch_path={schema}", safe="")
        base = database_url.set(drivername="postgresql").render_as_string(hide_password=False)
        yield f"{base}?options={options}"
    finally:
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            admin.dispose()


# -- pytest fixtures (import them into a test module to use them) ----------------------------
try:
    import pytest
except ImportError:  # pragma: no cover - only the test-suite imports this module
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="session")
    def pg_database() -> Iterator[URL]:
        """A throw-away PostgreSQL database for the test session (skips if unreachable)."""
        reason = postgres_unreachable_reason()
        if reason:
            if os.environ.get("AUTOPEFT_REQUIRE_POSTGRES") == "1":
                pytest.fail(reason)
            pytest.skip(reason)
        with temporary_database() as url:
            yield url

    @pytest.fixture(params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ])
    def storage_url(request, tmp_path) -> Iterator[str]:
        """An empty database on each backend: a SQLite file, or a fresh PostgreSQL schema."""
        if request.param == "sqlite":
            yield f"sqlite:///{tmp_path / 'studies.db'}"
            return
        with temporary_schema(request.getfixturevalue("pg_database")) as url:
            yield url
