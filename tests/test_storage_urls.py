"""A storage URL's password never shows: not in messages, logs or stored fields.

The three malformed forms below printed the password before it was masked (SQLAlchemy
cannot parse them, so its own password hiding never ran).
"""
from __future__ import annotations

import logging

import pytest

from autopeft.cli import main
from autopeft.exceptions import StorageError
from autopeft.storage import open_storage
from autopeft.storage.engine import mask_url

SECRET = "s3cretPW"


@pytest.mark.parametrize("url, message", [
    (f"postgresql://u:{SECRET}@127.0.0.1:notaport/db", "malformed storage URL"),
    (f"foo://u:{SECRET}@bar/db", "unsupported database 'foo'"),
    (f"postgresql://u:{SECRET}@127.0.0.1:5432", "names no database"),
    (f"postgresql://u:{SECRET}@127.0.0.1:1/db", "cannot connect"),  # parses, server down
    (f"postgresql://u:p@{SECRET}:x@127.0.0.1/db", "malformed storage URL"),  # '@' in it
    (f"sqlite://u:{SECRET}@/:memory:", "in-memory SQLite"),
])
def test_the_password_is_masked_everywhere(url, message, tmp_path, monkeypatch, capsys,
                                           caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StorageError, match=message) as err:
        open_storage(url)
    assert SECRET not in str(err.value) and "***" in str(err.value)
    for argv in (["ls", "--storage", url], ["db", "current", "--storage", url],
                 ["-vv", "db", "upgrade", "--storage", url]):
        assert main(argv) == StorageError.exit_code
        out = capsys.readouterr()
        assert message.split("'")[0] in out.err
        assert SECRET not in out.out + out.err
    assert SECRET not in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_mask_url_hides_only_the_password():
    assert mask_url("postgresql://me:pw@h:5432/db") == "postgresql://me:***@h:5432/db"
    assert mask_url("postgresql://me@h/db") == "postgresql://me@h/db"  # nothing to hide
    assert mask_url("sqlite:///a:b@c.db") == "sqlite:///a:b@c.db"  # a path, not a password
    assert mask_url("x://u:a@b@h/db") == "x://u:***@h/db"

