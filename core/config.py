"""Frozen typed configs: unknown keys raise, values are type-checked, the resolved config hashes to an id."""

from __future__ import annotations

import dataclasses
import typing

from core.errors import ConfigError
from core.io import stable_hash

T = typing.TypeVar("T")


def from_dict(cls: type[T], d: dict, where: str = "config") -> T:
    """Build dataclass `cls` from `d`, refusing unknown keys and values of the wrong type."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; expected one of {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for k, v in d.items():
        t = hints.get(k)
        if t is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if t in (int, float, str, bool) and not (isinstance(v, t) and not (t is int and isinstance(v, bool))):
            raise ConfigError(f"{where}: {k}={v!r}; expected {t.__name__}")
        if t is tuple or typing.get_origin(t) is tuple:
            v = tuple(v)
        kwargs[k] = v
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def config_hash(cfg, n: int = 16) -> str:
    """Run id: hash of the fully resolved config."""
    return stable_hash(to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, n)
