"""Typed configs: dataclasses with defaults, loaded from YAML, overridden by ``--set a.b=value``.

Every key is declared by a dataclass field; an unknown key is an error that names it. The resolved
config is plain data (:func:`to_dict`) so it can be saved beside a run and inside a checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vitdeca.errors import VitdecaError

T = TypeVar("T")

PRECISIONS = ("fp32", "bf16")
"""Inference precisions of the networks (:func:`vitdeca.model.inference_autocast`; the geometry is always
float32). Here, not in :mod:`vitdeca.model`, so the command line can offer them without importing torch."""


def to_dict(config: Any) -> dict[str, Any]:
    """A nested dataclass as nested plain dicts (YAML- and pickle-safe)."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from nested dicts, refusing keys the dataclass does not declare."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise VitdecaError(f"unknown config key '{where}{unknown[0]}' (known here: {known})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}{name}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise VitdecaError(f"config key {key!r} must be a mapping, got {value!r}")
        return from_dict(hint, value, where=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except VitdecaError:
                continue
        raise VitdecaError(f"config key {key!r}: {value!r} does not fit {hint}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise VitdecaError(f"config key {key!r} must be a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(inner, v, key) for v in value]
        return items if origin is list else tuple(items)
    if origin is dict or origin is typing.Literal:
        if origin is typing.Literal and value not in args:
            raise VitdecaError(f"config key {key!r} must be one of {list(args)}, got {value!r}")
        return value
    if hint is float and isinstance(value, str):  # YAML reads "1e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise VitdecaError(f"config key {key!r} must be a number, got {value!r}") from None
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and not isinstance(value, hint):
        raise VitdecaError(f"config key {key!r} must be {hint.__name__}, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise VitdecaError(f"config key {key!r} must be int, got {value!r}")
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` → (["a", "b"], value parsed as YAML)."""
    if "=" not in text:
        raise VitdecaError(f"--set {text!r}: expected KEY=VALUE, e.g. optim.lr=1e-4")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to nested dicts in place (validation happens in :func:`from_dict`)."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise VitdecaError(f"--set {text!r}: {part!r} is not a section")
        node[path[-1]] = value
    return data


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise VitdecaError(f"{path}: no such config file") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise VitdecaError(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VitdecaError(f"{path}: a config must be a YAML mapping")
    return data


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: list[str] = ()) -> T:
    """Defaults of ``cls``, then the YAML file (if any), then ``--set`` overrides, with keys and types
    checked (:func:`from_dict`). Range checks are the config's own ``validated()``, which the caller runs
    (e.g. ``vitdeca fit`` and ``reconstruct`` on their :class:`~vitdeca.fit.FitConfig`)."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, list(overrides))
    try:
        return from_dict(cls, data)
    except VitdecaError as exc:
        raise VitdecaError(f"{path or 'config'}: {exc}") from exc


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    from vitdeca.storage import atomic_write_bytes

    atomic_write_bytes(path, yaml.safe_dump(to_dict(config), sort_keys=False).encode())
