"""The one strict YAML reader: every YAML file autopeft reads goes through here.

Search spaces, experiment files, controller presets and exported candidate files share
the same rules and the same messages:

- duplicate keys are errors that give both lines (yaml.safe_load keeps the last one);
- every value keeps its line, so an error raised later (at bind time, say) still says
  ``file:line: at yaml.path: what is wrong`` and ``fix: ...``;
- the reading is bounded, so a hostile or broken file is refused fast and small:
  a file size limit, a nesting limit and a budget of values that counts every alias
  expansion ("billion laughs": ten anchors of ten aliases each are 10^10 values).

Why a composer of our own: PyYAML's composer and constructor recurse once per nesting
level, so 1,000 levels raise RecursionError before any check on the built data could
run; and aliases are expanded only when the data is built, by then it is too late.
Here the checks run while the node tree is composed: each node learns its expanded
size and height as it is finished, an alias adds the size of the node it names, and the
first event past a limit stops the parse with a located error. Nothing is built until
the whole document is known to fit, so a bomb parked under an unknown key is refused
after composing a few dozen nodes.

Only safe tags are understood (SafeLoader's constructors build the scalars).
L0: PyYAML and the standard library only.
"""
from __future__ import annotations

import json
import os
from typing import Any

import yaml

from autopeft.exceptions import AutoPeftError, ConfigError

# Far above any real autopeft file (the shipped ones have under 200 values and nest at
# most 7 deep), far below anything that costs noticeable time or memory to read.
MAX_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 20_000

_MISSING = object()
_MERGE = "tag:yaml.org,2002:merge"
_PLAIN_TAGS = {yaml.MappingNode: "tag:yaml.org,2002:map",
               yaml.SequenceNode: "tag:yaml.org,2002:seq"}
_DEEP_FIX = "flatten it: autopeft files nest a few levels (a runaway generator?)"
_SYNTAX_FIX = ("fix the YAML syntax there (indentation, a missing ':' or an unclosed "
               "bracket or quote are the usual causes)")


def show(value: Any) -> str:
    """A short, YAML-ish rendering of a user value for messages."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 120 else repr(value[:100]) + "..."
    try:
        text = json.dumps(value, sort_keys=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def join(path: str, key: str | int) -> str:
    """The YAML path of `key` (a mapping key or a list index) under `path`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


class Lines(dict):
    """{YAML path: line} of every key and list item of a document ("" is the top)."""

    def at(self, path: str | None) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = "" if path in (None, "<top>") else path
        while path:
            if path in self:
                return self[path]
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                break
            path = path[:cut]
        return self.get(path, self.get(""))


def located(error: type[AutoPeftError], source: str, message: str, *,
            line: int | None = None, path: str | None = None, value: Any = _MISSING,
            fix: str | None = None) -> AutoPeftError:
    """An `error` whose text starts with ``source:line: at path:`` and ends with the fix.

    The attributes stay plain: `file` is the source without the line, `line` apart."""
    shown = f"{source}:{line}" if line else source
    if issubclass(error, ConfigError):
        err: AutoPeftError = error(message, file=shown, path=path or None,
                                   value=None if value is _MISSING else value, fix=fix)
    else:  # ExportError and friends take a finished text
        where = f"{shown}: at {path}: " if path else f"{shown}: "
        err = error(where + message + (f"\n  fix: {fix}" if fix else ""))
        err.path = path or None  # type: ignore[attr-defined]
        err.value = None if value is _MISSING else value  # type: ignore[attr-defined]
        err.fix = fix  # type: ignore[attr-defined]
    err.file = source  # type: ignore[attr-defined]
    err.line = line  # type: ignore[attr-defined]
    return err


def add_line(exc: AutoPeftError, source: str, lines: Lines) -> AutoPeftError:
    """Put the line of its YAML path into an error raised after reading `source`.

    Schema checks (config, presets) raise ``file: at path: ...``; this turns it into
    ``file:line: at path: ...`` in place, so the message is the same one, located."""
    if getattr(exc, "file", None) != source or getattr(exc, "line", None):
        return exc
    line = lines.at(getattr(exc, "path", None))
    text = str(exc)
    if line and text.startswith(f"{source}: "):
        exc.args = (f"{source}:{line}: " + text[len(source) + 2:],) + exc.args[1:]
        exc.line = line  # type: ignore[attr-defined]
    return exc


def read_file(path: str | os.PathLike, error: type[AutoPeftError] = ConfigError,
              max_bytes: int = MAX_BYTES) -> str:
    """The text of a YAML file: refused when missing, unreadable, not UTF-8 or too big."""
    source = str(path)
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            raise located(error, source, f"the file is {size:,} bytes; autopeft reads YAML "
                          f"files of at most {max_bytes:,} bytes",
                          fix="point at the right file (these files are a few kB)")
        with open(path, "rb") as fh:  # read at most the limit, whatever stat said
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise located(error, source, f"cannot read the file: {exc.strerror or exc}",
                      fix="check the path and its permissions") from None
    if len(raw) > max_bytes:
        raise located(error, source, f"the file is more than {max_bytes:,} bytes",
                      fix="point at the right file (these files are a few kB)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise located(error, source, f"the file is not UTF-8 text (byte {exc.start})",
                      line=line, fix="save it as UTF-8 text") from None


def read_yaml_file(path: str | os.PathLike, error: type[AutoPeftError] = ConfigError
                   ) -> tuple[Any, Lines]:
    """read_file, then read_yaml; messages name the file as given."""
    return read_yaml(read_file(path, error), str(path), error)


def read_yaml(text: str, source: str = "<string>",
              error: type[AutoPeftError] = ConfigError, *, max_depth: int = MAX_DEPTH,
              max_values: int = MAX_VALUES, fast: bool | None = None) -> tuple[Any, Lines]:
    """Parse one YAML document; return (plain data, Lines). Raises `error`, located.

    `fast`: libyaml's parser (the default when PyYAML has it) or the pure-Python one;
    the two give the same data and the same rules (tests run both)."""
    if len(text) > MAX_BYTES:
        raise located(error, source, f"the text is {len(text):,} characters; autopeft "
                      f"reads YAML of at most {MAX_BYTES:,}", fix="check what was passed")
    loader = None
    try:
        loader = _loader(text, fast)  # the pure-Python reader checks characters here
        loader._start(source, error, max_depth, max_values)
        node = loader.get_single_node()
        lines = Lines()
        if node is None:
            return None, lines
        lines[""] = node.start_mark.line + 1
        return _Builder(loader, source, error, lines).build(node, ""), lines
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, source, error, max_depth) from None
    except yaml.reader.ReaderError as exc:  # a control character: no mark, a position
        # libyaml counts bytes of the UTF-8 text, PyYAML characters
        in_c = _CParser is not None and isinstance(loader, _CParser)
        line = (text.encode("utf-8").count(b"\n", 0, exc.position) if in_c
                else text.count("\n", 0, exc.position)) + 1
        raise located(error, source, f"invalid YAML: {exc.reason} "
                      f"(character #x{exc.character:04x}, line {line})", line=line,
                      fix="remove the control character (or write it as an escape in a "
                          "double-quoted string)") from None
    except yaml.YAMLError as exc:
        raise located(error, source, f"invalid YAML: {exc}", fix=_SYNTAX_FIX) from None
    finally:
        if loader is not None:
            loader.dispose()


def _syntax_error(exc: yaml.MarkedYAMLError, source: str, error: type[AutoPeftError],
                  max_depth: int) -> AutoPeftError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    at = f" (line {line}, column {mark.column + 1})" if mark else ""
    if "maximum nesting depth" in str(exc.problem):
        # libyaml's own limit (1,000 levels) can fire before our composer sees the events
        return located(error, source, f"the document nests deeper than {max_depth} levels"
                       f"{at}", line=line, fix=_DEEP_FIX)
    if "duplicate anchor" in str(exc.context) and exc.context_mark and mark:
        name = str(exc.context).split("'")[1] if "'" in str(exc.context) else "?"
        return located(error, source, f"duplicate anchor &{name} (first at line "
                       f"{exc.context_mark.line + 1}, again at line {line})", line=line,
                       fix="give each anchor its own name")
    problem = exc.problem or exc.context or "cannot parse"
    if exc.problem and exc.context and at:  # "but found another document": say what was expected
        cmark = exc.context_mark
        at = at[:-1] + f"; {exc.context}" + (f" from line {cmark.line + 1}" if cmark else "") + ")"
    fix = _SYNTAX_FIX
    if isinstance(exc, yaml.constructor.ConstructorError):
        fix = "remove the tag: autopeft reads plain YAML (no !!python/... or custom tags)"
    elif isinstance(exc, yaml.composer.ComposerError) and "alias" in str(exc.problem):
        fix = "define the anchor (&name) before the alias (*name) that uses it"
    elif isinstance(exc, yaml.composer.ComposerError) and "document" in str(exc.problem):
        fix = "keep one YAML document per file (remove the second `---`)"
    return located(error, source, f"invalid YAML: {problem}{at}", line=line, fix=fix)


class _Bounded(yaml.composer.Composer):
    """PyYAML's composer, refusing while it composes what is too deep or too big."""

    def _start(self, source: str, error: type[AutoPeftError], max_depth: int,
               max_values: int) -> None:
        self._source, self._error = source, error
        self._max_depth, self._max_values = max_depth, max_values
        self._path: list[str] = [""]   # YAML path of the node being composed
        self._total = 0                # values so far, each alias counted expanded
        self._reach = 0                # deepest level reached, aliases expanded
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        path = self._child_path(parent, index)
        depth = len(self._path)  # the top node is at depth 1
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None:
                size = getattr(node, "_ap_size", None)
                if size is None:  # the anchor is still open: it contains itself
                    raise self._refuse(event, path, f"alias *{event.anchor} refers to a "
                                       "node that contains it (a recursive alias)",
                                       "write the values out instead of the alias")
                self._aliases += 1
                self._count(event, path, size, depth + node._ap_height - 1)
            return super().compose_node(parent, index)  # PyYAML's undefined-alias error
        event = self.peek_event()
        self._count(event, path, 1, depth)
        outer_reach, self._reach = self._reach, depth
        before = self._total
        self._path.append(path)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._path.pop()
        node._ap_size = self._total - before + 1
        node._ap_height = self._reach - depth + 1
        self._reach = max(outer_reach, self._reach)
        return node

    def _child_path(self, parent: Any, index: Any) -> str:
        here = self._path[-1]
        if isinstance(parent, yaml.SequenceNode):
            return join(here, int(index))
        if isinstance(index, yaml.ScalarNode):
            return join(here, index.value)
        return here  # the top node, or a mapping key (located at its mapping)

    def _count(self, event: Any, path: str, size: int, depth: int) -> None:
        self._total += size
        self._reach = max(self._reach, depth)
        if depth > self._max_depth:
            raise self._refuse(event, path, f"the document nests deeper than "
                               f"{self._max_depth} levels", _DEEP_FIX)
        if self._total > self._max_values:
            if self._aliases:
                what = " once its aliases are expanded (a YAML 'billion laughs'?)"
                fix = "write the values out with fewer aliases"
            else:
                what, fix = "", "check that this is the right file"
            raise self._refuse(event, path, f"the document holds more than "
                               f"{self._max_values:,} values{what}",
                               f"{fix}; autopeft files hold a few hundred values")

    def _refuse(self, event: Any, path: str, message: str, fix: str) -> AutoPeftError:
        if len(path) > 80:  # 64 levels of `[0]` say nothing more than the first few
            path = path[:60] + "..."
        return located(self._error, self._source, message, line=event.start_mark.line + 1,
                       path=path, fix=fix)


class _PyLoader(_Bounded, yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
                yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """yaml.SafeLoader with the bounded composer (the pure-Python parser)."""

    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


try:  # libyaml's parser makes the events 5-10x faster; the composing stays ours
    from yaml._yaml import CParser as _CParser
except ImportError:  # PyYAML built without libyaml
    _CParser = None

if _CParser is not None:
    class _CLoader(_Bounded, _CParser, yaml.constructor.SafeConstructor,
                   yaml.resolver.Resolver):
        """The same loader on libyaml's event parser (_Bounded's composer comes first)."""

        def __init__(self, text: str) -> None:
            _CParser.__init__(self, text)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)


def _loader(text: str, fast: bool | None) -> Any:
    use_c = _CParser is not None if fast is None else fast
    return _CLoader(text) if use_c else _PyLoader(text)


class _Builder:
    """Plain dicts and lists from a composed tree, refusing duplicate and non-text keys.

    Aliased nodes are built again at each use (the composer bounded the total and the
    depth, so this recursion is bounded too), and no two places share one mutable dict."""

    def __init__(self, loader: _Bounded, source: str, error: type[AutoPeftError],
                 lines: Lines) -> None:
        self.loader, self.source, self.error, self.lines = loader, source, error, lines

    def fail(self, path: str, line: int, message: str, value: Any = _MISSING,
             fix: str | None = None) -> AutoPeftError:
        if value is not _MISSING and show(value) not in message:
            message = f"{message} (got {show(value)})"
        return located(self.error, self.source, message, line=line, path=path or None,
                       value=value, fix=fix)

    def build(self, node: Any, path: str) -> Any:
        plain = _PLAIN_TAGS.get(type(node))
        if plain is not None and node.tag != plain:  # `!!python/...` on a list or mapping
            raise self.fail(path, node.start_mark.line + 1, f"the tag {node.tag!r} is not "
                            "understood", fix="remove the tag: autopeft reads plain YAML "
                            "(no !!python/... or custom tags)")
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                child = join(path, i)
                self.lines[child] = item.start_mark.line + 1
                items.append(self.build(item, child))
            return items
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: Any, path: str) -> dict[str, Any]:
        first: dict[str, int] = {}
        own, merges = [], []
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            merge = isinstance(key_node, yaml.ScalarNode) and key_node.tag == _MERGE
            key = "<<" if merge else self._key(key_node, path, line)
            if key in first:
                raise self.fail(join(path, key), line, f"duplicate key {key!r} (first at "
                                f"line {first[key]}, again at line {line})", key,
                                fix="keep one of them: YAML would silently drop the first")
            first[key] = line
            (merges if merge else own).append((key, line, value_node))
        # merged mappings first, so that the keys written here own their lines
        out: dict[str, Any] = {}
        for _, line, value_node in merges:
            self._merge(value_node, path, line, out)
        for key, line, value_node in own:
            child = join(path, key)
            self.lines[child] = line
            out[key] = self.build(value_node, child)  # overrides a merged key (YAML's rule)
        return out

    def _key(self, key_node: Any, path: str, line: int) -> str:
        if not isinstance(key_node, yaml.ScalarNode):
            raise self.fail(path, line, "a key must be a plain word, not a list or mapping",
                            fix="write key: value")
        key = self.loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise self.fail(path, line, f"key {key_node.value!r} is read by YAML as "
                            f"{show(key)}, not as a name", key_node.value,
                            fix=f"quote it: '{key_node.value}'")
        return key

    def _merge(self, node: Any, path: str, line: int, into: dict[str, Any]) -> None:
        """`<<: *anchor` or `<<: [*a, *b]`: earlier mappings win over later ones."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for src in sources:
            if not isinstance(src, yaml.MappingNode):
                raise self.fail(join(path, "<<"), line, "a merge key `<<` takes a mapping "
                                "or a list of mappings", fix="write `<<: *anchor` where "
                                "the anchor names a mapping")
            # built under this mapping's path, so merged keys keep the anchor's lines
            for key, value in self._mapping(src, path).items():
                into.setdefault(key, value)
