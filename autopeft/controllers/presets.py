"""Controller presets (controllers/<name>.yaml) and the registry of controller classes.

A preset file, strict: unknown keys anywhere are ConfigErrors naming file and YAML path.

    description: TPE over the whole space     # optional, free text
    controller: tpe                           # a registered controller name
    settings:                                 # optional; the controller's SETTINGS
      n_startup_trials: 10
    pruner:                                   # optional; see autopeft.pruners.make_pruner
      type: asha
      min_resource: 50
      eta: 3

The registry: every class in a module of this package that names itself with a string
class attribute (`name = "tpe"`) is a controller. CONTROLLERS finds them by reading the
modules' source (ast, once), not by importing them, and imports a controller's module only
when that controller is built. So a new controller is one file in autopeft/controllers/
(plus its line in the contract suite's list), and `import autopeft.controllers` stays
light: the LSTM's module imports torch, TPE's optuna, only when they are used.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from autopeft.controllers.base import Controller
from autopeft.exceptions import ConfigError

_NOT_CONTROLLERS = frozenset({"base", "presets"})


class _Registry(Mapping[str, type]):
    """Controller name -> class. Names come from the package's source files (read once);
    a class is imported when it is looked up."""

    _found: dict[str, tuple[str, str]] | None = None

    def _load(self) -> dict[str, tuple[str, str]]:
        if self._found is None:
            import ast

            here = Path(__file__).parent  # this package, read as files (no import)
            found: dict[str, tuple[str, str]] = {}
            for info in pkgutil.iter_modules([str(here)]):
                if info.name in _NOT_CONTROLLERS:
                    continue
                path = here / f"{info.name}.py"
                for node in ast.parse(path.read_text(encoding="utf-8")).body:
                    if not isinstance(node, ast.ClassDef):
                        continue
                    for item in node.body:
                        if (isinstance(item, ast.Assign) and len(item.targets) == 1
                                and isinstance(item.targets[0], ast.Name)
                                and item.targets[0].id == "name"
                                and isinstance(item.value, ast.Constant)
                                and isinstance(item.value.value, str)):
                            name = item.value.value
                            if name in found:
                                raise TypeError(f"two controllers are named {name!r}: "
                                                f"{found[name]} and {info.name}:{node.name}")
                            found[name] = (f"{__package__}.{info.name}", node.name)
            type(self)._found = found
        return self._found

    def __getitem__(self, name: str) -> type:
        module, attr = self._load()[name]
        return getattr(importlib.import_module(module), attr)

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._load()))

    def __len__(self) -> int:
        return len(self._load())


CONTROLLERS: Mapping[str, type] = _Registry()

_PRESET_KEYS = ("description", "controller", "settings", "pruner")


def _relocate(exc: ConfigError, file: str | None, prefix: str) -> ConfigError:
    """The same error, placed at `prefix`.<its path> inside `file`."""
    message = str(exc).split("\n")[0]
    if exc.path:
        message = message.replace(f"at {exc.path}: ", "", 1)
    path = f"{prefix}.{exc.path}" if exc.path else prefix
    return ConfigError(message, file=file, path=path, value=exc.value, fix=exc.fix)


def controller_class(name: str) -> type[Controller]:
    if name not in CONTROLLERS:
        raise ConfigError(f"unknown controller {name!r}", path="controller", value=name,
                          fix=f"use one of {sorted(CONTROLLERS)}")
    return CONTROLLERS[name]


@dataclass(frozen=True)
class Preset:
    name: str
    controller: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    pruner: Mapping[str, Any] | None = None
    description: str = ""
    source: str | None = None


def known_presets() -> list[str]:
    """Every name --controller takes: the shipped preset files and the bare controllers."""
    from autopeft.resources import shipped

    return sorted({Path(f).stem for f in shipped("controllers")} | set(CONTROLLERS))


def find_preset(name: str) -> Path | None:
    """The preset file for a path or a shipped preset name (with or without .yaml)."""
    from autopeft.resources import resolve

    try:
        return resolve(name, "controllers")
    except ConfigError:
        return None


def parse_preset(data: Any, *, name: str, source: str | None = None) -> Preset:
    """Validate a preset mapping; errors name `source` and the YAML path."""
    if not isinstance(data, Mapping):
        raise ConfigError("a controller preset must be a mapping", file=source, value=data,
                          fix="start the file with `controller: <name>`")
    unknown = sorted(set(data) - set(_PRESET_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}", file=source, path=unknown[0],
                          fix=f"known keys: {list(_PRESET_KEYS)}")
    if "controller" not in data:
        raise ConfigError("missing key 'controller'", file=source, path="controller",
                          fix="add e.g. `controller: tpe`")
    ctrl = data["controller"]
    if not isinstance(ctrl, str) or ctrl not in CONTROLLERS:
        raise ConfigError(f"unknown controller {ctrl!r}", file=source, path="controller",
                          value=ctrl, fix=f"use one of {sorted(CONTROLLERS)}")
    settings = data.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise ConfigError("settings must be a mapping", file=source, path="settings",
                          value=settings)
    try:
        from autopeft.controllers.base import resolve_settings

        resolve_settings(controller_class(ctrl), settings)
    except ConfigError as exc:
        raise _relocate(exc, source, "settings") from None
    pruner = data.get("pruner")
    if pruner is not None:
        from autopeft.pruners import make_pruner

        try:
            make_pruner(pruner)
        except ConfigError as exc:
            raise _relocate(exc, source, "pruner") from None
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError("description must be text", file=source, path="description")
    return Preset(name=name, controller=ctrl, settings=dict(settings),
                  pruner=dict(pruner) if pruner is not None else None,
                  description=description, source=source)


def load_preset(name_or_path: str) -> Preset:
    """A shipped preset name ("tpe"), a preset file, or a bare controller name."""
    path = find_preset(name_or_path)
    if path is None:
        if name_or_path in CONTROLLERS:  # a controller with no preset file: its defaults
            return Preset(name=name_or_path, controller=name_or_path)
        raise ConfigError(f"no controller preset {name_or_path!r}", value=name_or_path,
                          fix=f"give a preset file, or one of {known_presets()}")
    from autopeft import yamlio

    data, lines = yamlio.read_yaml_file(path, ConfigError)
    try:
        return parse_preset(data, name=path.stem, source=str(path))
    except ConfigError as exc:  # the schema's errors, given the line of their path
        raise yamlio.add_line(exc, str(path), lines) from None


def make_controller(name_or_preset: str | Preset, space: Any, seed: int, *,
                    recipes: bool = False, **overrides: Any) -> Controller:
    """Build a controller from a preset (name, file or Preset); overrides win over settings.
    recipes=True: propose the standard recipes first (autopeft.controllers.recipes; the
    wrapped controller's settings then carry recipes=True, so a resume wraps it again)."""
    preset = name_or_preset if isinstance(name_or_preset, Preset) else load_preset(name_or_preset)
    settings = {**preset.settings, **overrides}
    try:
        controller = controller_class(preset.controller)(space, seed=seed, **settings)
    except ConfigError as exc:
        if exc.file or preset.source is None:
            raise
        raise _relocate(exc, preset.source, "settings") from None
    controller.preset = preset  # the study reads preset.pruner (autopeft.pruners.make_pruner)
    if recipes:
        from autopeft.controllers.recipes import RecipesFirst

        controller = RecipesFirst(controller)
    return controller
