"""YAML configuration validated into dataclasses.

Every configuration file of the project (regions, camera models, export recipes, training
configs, map manifests) is loaded through :func:`load_config`, so that an unknown key, a wrong
type or an impossible value fails the same way everywhere: with the file, the line, the key
and what was expected.

Range checks live next to the field they constrain, as dataclass field metadata::

    size_m: float = field(metadata=check(lambda v: v > 0, "a positive number"))
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or mapping that does not match its schema."""


def check(predicate: Callable[[Any], bool], expected: str) -> dict[str, Any]:
    """Field metadata: ``predicate(value)`` must hold; ``expected`` says what a good value is."""
    return {"check": (predicate, expected)}


class _LineMap(dict):
    """A mapping that remembers the source line of each key (1-based)."""

    lines: dict[str, int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that keeps the line of every mapping key, for error messages."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineMap:
    loader.flatten_mapping(node)
    out = _LineMap()
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise ConfigError(f"{loader.name}:{key_node.start_mark.line + 1}: key {key!r} appears twice")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[str(key)] = key_node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_text_file(path: str | Path, expected: str) -> str:
    """A file's text (UTF-8), or a :class:`ConfigError` naming the file, what is wrong and ``expected``
    (a folder, a missing file, binary bytes: a user's bad path is one clear line, never a codec traceback)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (expected {expected})") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder (expected {expected})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or err}; expected {expected})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not a text file (byte 0x{data[err.start]:02x} is not UTF-8; expected {expected})"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ConfigError(f"{path}:{line}: not a text file (a NUL byte; expected {expected})")
    return text


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, remembering key lines; syntax errors name the file and line."""
    path = Path(path)
    text = read_text_file(path, "a YAML file")
    loader = None
    try:
        loader = _LineLoader(text)  # its reader refuses control characters already here
        loader.name = str(path)
        return loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        if isinstance(err, yaml.reader.ReaderError):  # a control character: name its line, not its offset
            line = text[: err.position].count("\n") + 1
            raise ConfigError(
                f"{path}:{line}: not valid YAML: control character #x{err.character:04x} (expected a text file)"
            ) from None
        raise ConfigError(f"{where}: not valid YAML: {getattr(err, 'problem', err)}") from None
    except (TypeError, RecursionError) as err:  # an unhashable (list or mapping) key; nesting past the stack
        raise ConfigError(f"{path}: not a YAML file of settings ({type(err).__name__}: {err})") from None
    finally:
        if loader is not None:
            loader.dispose()


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        inner = _type_name(args[0]) if args else "values"
        return f"a list of {inner}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value: Any, tp: Any, where: str, key: str) -> Any:
    """Convert one YAML value to ``tp`` or raise a ConfigError naming ``key``."""

    def fail(extra: str = "") -> ConfigError:
        return ConfigError(f"{where}: key '{key}': expected {_type_name(tp)}, got {value!r}{extra}")

    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:  # Optional[X]: X's own error (e.g. an unknown key inside a section) is the useful one
            return _convert(value, others[0], where, key)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where, key)
            except ConfigError:
                continue
        raise fail()
    if origin is typing.Literal:
        if value in get_args(tp):
            return value
        raise fail()
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise fail()
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise fail(f" ({len(args)} values expected)")
            return tuple(_convert(v, a, where, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_convert(v, inner, where, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail()
        _, vt = get_args(tp) or (Any, Any)
        return {k: _convert(v, vt, where, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise fail()
        return _build(tp, value, where.split(":")[0], prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise fail(" (a finite number)" if isinstance(value, float) else "")
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail()
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise fail()


def _build(cls: type[T], data: Mapping[str, Any], source: str, prefix: str = "") -> T:
    lines = getattr(data, "lines", {})

    def where(key: str | None = None) -> str:
        line = lines.get(key) if key is not None else None
        return f"{source}:{line}" if line else source

    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = str(unknown[0])
        raise ConfigError(f"{where(key)}: unknown key '{prefix}{key}' (expected one of: {', '.join(sorted(fields))})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where()}: missing key '{prefix}{name}' ({_type_name(hints[name])})")
            continue
        value = _convert(data[name], hints[name], where(name), prefix + name)
        if "check" in f.metadata and value is not None:
            predicate, expected = f.metadata["check"]
            if not predicate(value):
                raise ConfigError(f"{where(name)}: key '{prefix}{name}': expected {expected}, got {data[name]!r}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:  # a check across fields (__post_init__): the line of the key it names
        named = next((str(k) for k in data if re.search(rf"\b{re.escape(str(k))}\b", str(err))), None)
        raise ConfigError(f"{where(named)}: key '{prefix}{named}': {err}" if named else f"{where()}: {err}") from None


def from_mapping(cls: type[T], data: Mapping[str, Any], source: str = "<mapping>") -> T:
    """Validate a mapping (for example a YAML document already read) into dataclass ``cls``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(data).__name__}")
    return _build(cls, data, source)


def load_config(cls: type[T], path: str | Path) -> T:
    """Read the YAML file ``path`` and validate it into dataclass ``cls``."""
    return from_mapping(cls, read_yaml(path) or {}, str(path))


def to_mapping(obj: Any) -> Any:
    """A dataclass (nested) as plain YAML-friendly values: tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_mapping(v) for k, v in obj.items()}
    return obj


def dump_config(obj: Any, path: str | Path) -> None:
    """Write a dataclass as YAML (keys in field order)."""
    Path(path).write_text(yaml.safe_dump(to_mapping(obj), sort_keys=False))


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float (numpy scalars too) replaced by None, tuples as lists: what
    strict JSON can hold (a value that is not known is null, never ``NaN``)."""
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, float) or (type(obj).__module__ == "numpy" and hasattr(obj, "dtype")):
        if getattr(obj, "ndim", 0):
            return finite_or_none(obj.tolist())
        value = obj.item() if hasattr(obj, "item") else obj
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    return obj


def strict_json(obj: Any, **options: Any) -> str:
    """JSON text that every strict parser reads (JavaScript's ``JSON.parse``, jq, Go): NaN and infinities
    become null (:func:`finite_or_none`) and ``allow_nan=False`` guards the rest. Every JSON the project
    writes (fixes, summaries, reports, benchmark tables) goes through here."""
    return json.dumps(finite_or_none(obj), allow_nan=False, **options)


def pick(namespace: Any, *names: str) -> dict[str, Any]:
    """``{name: namespace.name}`` for each name: a command's parsed options passed on as keyword arguments
    under the same names (every CLI forwards its ``argparse`` options this way)."""
    return {name: getattr(namespace, name) for name in names}
