"""CI fails, not skips, when PostgreSQL is down.

`.ci/run` promised a stopped server "fails loudly here rather than as skips", but never
set AUTOPEFT_REQUIRE_POSTGRES, so every PostgreSQL storage test turned into a skip.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEAD_SERVER = "postgresql://postgres@127.0.0.1:1/postgres"  # nothing listens on port 1


def test_ci_run_makes_postgres_required(tmp_path):
    """Run the real script with stand-ins for make and pg_isready: it must hand
    AUTOPEFT_REQUIRE_POSTGRES=1 to the test run. The copy runs from tmp_path, so the
    script's `ray stop` (which would stop every Ray cluster here) cannot fire."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "seen"
    (bin_dir / "make").write_text(
        f"#!/bin/sh\necho \"$* REQUIRE=${{AUTOPEFT_REQUIRE_POSTGRES:-unset}}\" > {seen}\n")
    (bin_dir / "pg_isready").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "AUTOPEFT_REQUIRE_POSTGRES"}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    subprocess.run(["bash", str(tmp_path / ".ci" / "run")], env=env, check=True, timeout=60)
    assert seen.read_text().split() == ["test", "REQUIRE=1"]


def _pytest_storage(tmp_path: Path, require: bool) -> subprocess.CompletedProcess:
    (tmp_path / "test_pg.py").write_text(textwrap.dedent("""\
        from autopeft.storage.testing import pg_database, storage_url  # noqa: F401


        def test_opens(storage_url):
            assert storage_url
        """))
    env = dict(os.environ, AUTOPEFT_TEST_POSTGRES=DEAD_SERVER)
    env.pop("AUTOPEFT_REQUIRE_POSTGRES", None)
    if require:
        env["AUTOPEFT_REQUIRE_POSTGRES"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-rs", str(tmp_path / "test_pg.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_postgres_fixture_fails_when_required_and_skips_otherwise(tmp_path):
    required = _pytest_storage(tmp_path, require=True)
    assert required.returncode != 0, required.stdout
    assert "PostgreSQL not reachable" in required.stdout and "1 error" in required.stdout
    optional = _pytest_storage(tmp_path, require=False)
    assert optional.returncode == 0, optional.stdout
    assert "1 passed, 1 skipped" in optional.stdout
