"""Storage URLs, schema versions (Alembic) and `autopeft db`, on SQLite and PostgreSQL."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("sqlalchemy")

import sqlalchemy as sa  # noqa: E402
from alembic.autogenerate import compare_metadata  # noqa: E402
from alembic.migration import MigrationContext  # noqa: E402

from autopeft.cli import main  # noqa: E402
from autopeft.exceptions import MissingDependencyError, StorageError  # noqa: E402
from autopeft.storage import database_revision, open_storage, upgrade_database  # noqa: E402
from autopeft.storage import schema  # noqa: E402
from autopeft.storage.models import Base  # noqa: E402
from autopeft.storage.testing import pg_database, storage_url  # noqa: E402,F401 (fixtures)

SPEC = dict(name="s", space_text="x", space_fingerprint="f", experiment={"model": "m"},
            controller="random", seed=1)


def engine_for(url: str) -> sa.Engine:
    from autopeft.storage.engine import make_engine, resolve_url

    return make_engine(resolve_url(url))


def tables(url: str) -> set[str]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


# -- schema --------------------------------------------------------------------------------
def test_the_migrations_build_exactly_the_models(storage_url):  # noqa: F811
    with open_storage(storage_url):
        pass
    engine = engine_for(storage_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": schema.VERSION_TABLE, "compare_type": True,
                            "compare_server_default": True})
            assert compare_metadata(context, Base.metadata) == []
            assert schema.schema_state(conn).at_head
    finally:
        engine.dispose()


def test_a_new_database_is_created_at_head(storage_url):  # noqa: F811
    state, _ = database_revision(storage_url)
    assert state.current is None and not state.has_tables
    with open_storage(storage_url):
        pass
    state, _ = database_revision(storage_url)
    assert state.current == state.head == schema.known_revisions()[0]
    assert tables(storage_url) == set(Base.metadata.tables) | {schema.VERSION_TABLE}


@pytest.fixture
def newer_autopeft(tmp_path, monkeypatch):
    """This autopeft with one more revision (0002) than the installed migrations."""
    copy = tmp_path / "migrations"
    shutil.copytree(schema.MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "versions" / "0002_trial_notes.py").write_text(textwrap.dedent('''
        """Trials get a free-text note."""
        import sqlalchemy as sa
        from alembic import op

        revision = "0002"
        down_revision = "0001"
        branch_labels = None
        depends_on = None


        def upgrade():
            with op.batch_alter_table("autopeft_trials") as batch:
                batch.add_column(sa.Column("note", sa.Text(), nullable=True))


        def downgrade():
            with op.batch_alter_table("autopeft_trials") as batch:
                batch.drop_column("note")
    '''))
    monkeypatch.setattr(schema, "MIGRATIONS_DIR", copy)
    return copy


def test_drivers_opening_a_new_database_at_once_both_succeed(storage_url):  # noqa: F811
    import threading

    barrier = threading.Barrier(3)
    results: list[object] = []

    def open_it() -> None:
        barrier.wait()
        try:
            with open_storage(storage_url) as storage:
                results.append(storage.list_studies())
        except BaseException as exc:  # reported by the assert below
            results.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [[], [], []]
    assert database_revision(storage_url)[0].at_head


def test_processes_opening_a_new_database_at_once_all_succeed(storage_url):  # noqa: F811
    start_at = time.time() + 2.0  # after every interpreter has started
    code = textwrap.dedent(f"""
        import sys, time
        import autopeft.storage.rdb, autopeft.storage.schema  # import before the start line
        from autopeft.storage import open_storage
        time.sleep(max(0.0, {start_at!r} - time.time()))
        with open_storage(sys.argv[1]) as storage:
            print(len(storage.list_studies()))
    """)
    children = [subprocess.Popen([sys.executable, "-c", code, storage_url],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(3)]
    outputs = [c.communicate(timeout=120) for c in children]
    assert [(c.returncode, out.strip()) for c, (out, _) in zip(children, outputs)] == [
        (0, "0")] * 3, [err for _, err in outputs]
    assert database_revision(storage_url)[0].at_head


def test_an_older_schema_is_refused_until_db_upgrade(
        storage_url, newer_autopeft, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setattr(schema, "MIGRATIONS_DIR", schema.Path(schema.__file__).with_name(
        "migrations"))
    with open_storage(storage_url) as old:  # written by the older autopeft, at 0001
        old.create_study(**SPEC)
        old.create_trial("s", {"a": 1}, {})
    monkeypatch.setattr(schema, "MIGRATIONS_DIR", newer_autopeft)

    with pytest.raises(StorageError) as err:
        open_storage(storage_url)
    assert "revision '0001', older than the '0002'" in str(err.value)
    assert "autopeft db upgrade --storage" in str(err.value)
    capsys.readouterr()

    assert main(["db", "current", "--storage", storage_url]) == 0
    assert "0001, older than this autopeft's 0002" in capsys.readouterr().out
    assert main(["db", "upgrade", "--storage", storage_url]) == 0
    assert "upgraded the schema from revision 0001 to 0002" in capsys.readouterr().out
    assert main(["db", "upgrade", "--storage", storage_url]) == 0
    assert "already at the newest revision 0002" in capsys.readouterr().out

    with open_storage(storage_url) as new:  # the data survived the upgrade
        assert [t.assignment for t in new.get_trials("s")] == [{"a": 1}]
    engine = engine_for(storage_url)
    try:
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("autopeft_trials")}
    finally:
        engine.dispose()
    assert "note" in columns


def test_a_schema_from_a_newer_autopeft_is_refused(
        storage_url, newer_autopeft, capsys, monkeypatch):  # noqa: F811
    with open_storage(storage_url):  # written by the newer autopeft, at 0002
        pass
    monkeypatch.setattr(schema, "MIGRATIONS_DIR", schema.Path(schema.__file__).with_name(
        "migrations"))
    for attempt in (lambda: open_storage(storage_url), lambda: upgrade_database(storage_url)):
        with pytest.raises(StorageError, match="'0002', which this autopeft does not know"):
            attempt()
    assert main(["db", "current", "--storage", storage_url]) == 0
    assert "unknown to this autopeft" in capsys.readouterr().out


def test_unversioned_autopeft_tables_are_refused(storage_url):  # noqa: F811
    engine = engine_for(storage_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE autopeft_studies (id INTEGER PRIMARY KEY)")
    finally:
        engine.dispose()
    with pytest.raises(StorageError, match="autopeft tables but no schema version"):
        open_storage(storage_url)
    assert schema.VERSION_TABLE not in tables(storage_url)


def test_other_tools_tables_are_left_alone(storage_url):  # noqa: F811
    engine = engine_for(storage_url)
    try:
        with engine.begin() as conn:  # e.g. Optuna's storage in the same database
            conn.exec_driver_sql("CREATE TABLE studies (study_id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql("INSERT INTO studies VALUES (42)")
    finally:
        engine.dispose()
    with open_storage(storage_url) as storage:
        storage.create_study(**SPEC)
    engine = engine_for(storage_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT study_id FROM studies").scalar() == 42
    finally:
        engine.dispose()


# -- URLs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("url, message", [
    ("sqlite:/x", "malformed storage URL 'sqlite:/x'"),
    ("not a url", "malformed storage URL"),
    ("nosuchdb://", "unsupported database 'nosuchdb'"),
    ("mysql://u@h/db", "unsupported database 'mysql'"),
    ("", "the storage URL is empty"),
    ("sqlite://", "in-memory SQLite"),
    ("sqlite:///:memory:", "in-memory SQLite"),
    ("sqlite:///no/such/dir/s.db", "the directory .*no/such/dir does not exist"),
    ("postgresql://u@127.0.0.1:5432", "names no database"),
])
def test_bad_urls_fail_clearly_and_write_nothing(url, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError, match=message) as err:
        open_storage(url)
    assert "fix:" in str(err.value) and err.value.exit_code == 4
    for command in (["db", "upgrade", "--storage", url], ["db", "current", "--storage", url]):
        assert main(command) == StorageError.exit_code
        assert "error:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_directory_is_not_a_database(tmp_path):
    with pytest.raises(StorageError, match="points at a directory"):
        open_storage(f"sqlite:///{tmp_path}")


def test_an_unreachable_server_fails_fast_with_the_exit_code(capsys):
    url = "postgresql://autopeft:s3cret@127.0.0.1:1/x"
    start = time.monotonic()
    with pytest.raises(StorageError) as err:
        open_storage(url)
    assert time.monotonic() - start < 15
    text = str(err.value)
    assert text.startswith("cannot connect to the database postgresql+psycopg2://autopeft:***@")
    assert "s3cret" not in text and "server is running" in text
    assert main(["db", "upgrade", "--storage", url]) == 4
    assert "cannot connect" in capsys.readouterr().err


def test_a_host_that_does_not_answer_times_out():
    # 192.0.2.0/24 is reserved for documentation: nothing answers there.
    url = "postgresql://u@192.0.2.1:5432/x?connect_timeout=1"
    start = time.monotonic()
    with pytest.raises(StorageError, match="cannot connect"):
        open_storage(url)
    assert time.monotonic() - start < 10


def test_a_missing_driver_names_the_package_to_install():
    if __import__("importlib").util.find_spec("pg8000") is not None:
        pytest.skip("pg8000 is installed here")
    with pytest.raises(MissingDependencyError, match="pip install pg8000"):
        open_storage("postgresql+pg8000://u@127.0.0.1/x")


def test_default_storage_is_autopeft_db_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_storage(None) as storage:
        storage.create_study(**SPEC)
        assert storage.url == f"sqlite:///{tmp_path / 'autopeft.db'}"
    assert (tmp_path / "autopeft.db").is_file()
    relative = tmp_path / "sub"
    relative.mkdir()
    with open_storage("sqlite:///sub/other.db") as storage:  # relative to the cwd
        assert storage.list_studies() == []
    assert (relative / "other.db").is_file()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    with open_storage(f"sqlite:///{tmp_path / 's.db'}") as storage:
        with storage._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000


# -- the CLI -------------------------------------------------------------------------------
def test_cli_db_upgrade_creates_and_db_current_reports(storage_url, capsys):  # noqa: F811
    assert main(["db", "current", "--storage", storage_url]) == 0
    out = capsys.readouterr().out
    assert "revision: none (no autopeft schema" in out
    if storage_url.startswith("sqlite"):  # `current` only reads: no file appears
        assert not schema.Path(storage_url.removeprefix("sqlite:///")).exists()
    assert main(["db", "upgrade", "--storage", storage_url]) == 0
    head = schema.known_revisions()[0]
    assert f"created the autopeft schema at revision {head}" in capsys.readouterr().out
    assert main(["db", "current", "--storage", storage_url]) == 0
    assert f"revision: {head} (the newest)" in capsys.readouterr().out
    with open_storage(storage_url) as storage:
        assert storage.list_studies() == []


def test_cli_db_defaults_to_autopeft_db_here(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "autopeft.db").is_file()
    assert main(["db", "current"]) == 0
    assert str(tmp_path / "autopeft.db") in capsys.readouterr().out


def test_importing_autopeft_and_its_cli_does_not_import_sqlalchemy():
    code = ("import sys, autopeft, autopeft.storage, autopeft.cli; "
            "autopeft.cli.build_parser(); "
            "from autopeft.storage import StudySpec, StudyInfo; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic'));"
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
