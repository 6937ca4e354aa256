"""Shipped files resolve by name from any directory; an existing path wins."""
from __future__ import annotations

from pathlib import Path

import pytest

from autopeft import resources
from autopeft.exceptions import ConfigError, SpaceError

REPO = Path(__file__).resolve().parents[1]


def test_shipped_lists_the_spaces() -> None:
    names = resources.shipped("search_spaces")
    assert "default.yaml" in names and names == sorted(names)
    assert all(n.endswith(".yaml") for n in names)


@pytest.mark.parametrize("name", ["default.yaml", "default"])
def test_shipped_name_resolves_from_another_directory(name, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = resources.resolve(name, "search_spaces")
    assert path.is_file() and path.name == "default.yaml"
    assert path.read_bytes() == (REPO / "search_spaces" / "default.yaml").read_bytes()


def test_an_existing_file_wins(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default.yaml").write_text("space: mine\nmodules: {lora: {}}\n")
    assert resources.resolve("default.yaml", "search_spaces") == Path("default.yaml")


def test_unknown_name_lists_the_shipped_ones(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        resources.resolve("nosuch.yaml", "search_spaces")
    text = str(info.value)
    assert "'nosuch.yaml'" in text
    for name in resources.shipped("search_spaces"):
        assert name in text


def test_a_missing_path_with_a_folder_is_not_looked_up_among_shipped(tmp_path,
                                                                      monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpaceError, match="no file 'spaces/default.yaml'"):
        resources.resolve("spaces/default.yaml", "search_spaces", error=SpaceError)


def test_a_directory_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="directory"):
        resources.resolve(str(tmp_path), "experiments")


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="search_spaces"):
        resources.resolve("x", "spaces")


def test_package_data_links_point_at_the_repository_folders() -> None:
    data = REPO / "autopeft" / "data"
    for kind in resources.KINDS:
        link = data / kind
        assert link.is_symlink(), link
        assert link.resolve() == (REPO / kind).resolve()
        assert resources.shipped_dir(kind).resolve() == (REPO / kind).resolve()


def test_pyproject_package_data_globs_cover_every_kind() -> None:
    text = (REPO / "pyproject.toml").read_text()
    for kind in resources.KINDS:
        assert f'"data/{kind}/*.yaml"' in text
