"""`autopeft db upgrade` and `autopeft db current`: the storage schema version."""
from __future__ import annotations

import argparse

STORAGE_HELP = ("database URL: sqlite:///PATH.db or postgresql://USER@HOST:5432/DBNAME "
                "(default: sqlite:///autopeft.db in the current directory)")


def register(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser(
        "db", help="show or upgrade the storage schema version",
        description="autopeft keeps its tables' layout under version control (Alembic). "
                    "New databases are created at the newest version automatically; a "
                    "database written by an older autopeft needs `autopeft db upgrade`.")
    actions = db.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    up = actions.add_parser("upgrade", help="bring the database to the newest schema version "
                                            "(creates it if absent)")
    up.add_argument("--storage", metavar="URL", help=STORAGE_HELP)
    up.set_defaults(func=run_upgrade)
    cur = actions.add_parser("current", help="show the database's schema version (reads only)")
    cur.add_argument("--storage", metavar="URL", help=STORAGE_HELP)
    cur.set_defaults(func=run_current)


def run_upgrade(args: argparse.Namespace) -> int:
    from autopeft.storage import upgrade_database

    before, after = upgrade_database(args.storage)
    if before == after:
        print(f"schema already at the newest revision {after}")
    elif before is None:
        print(f"created the autopeft schema at revision {after}")
    else:
        print(f"upgraded the schema from revision {before} to {after}")
    return 0


def run_current(args: argparse.Namespace) -> int:
    from autopeft.storage import database_revision

    state, where = database_revision(args.storage)
    print(f"database: {where}")
    if state.current is None:
        tables = "autopeft tables without a version" if state.has_tables else "no autopeft schema"
        print(f"revision: none ({tables}; the first search creates the schema at revision "
              f"{state.head})")
    elif state.at_head:
        print(f"revision: {state.current} (the newest)")
    elif state.behind:
        print(f"revision: {state.current}, older than this autopeft's {state.head}: run "
              f"`autopeft db upgrade --storage {where}`")
    else:
        print(f"revision: {state.current}, unknown to this autopeft (newest {state.head}): "
              f"a newer autopeft wrote it")
    return 0
