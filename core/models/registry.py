"""Models by name: `@register_model` and `create_model(name, **kwargs)` (timm's pattern)."""

from __future__ import annotations

from typing import Callable

from core.errors import ConfigError

_MODELS: dict[str, Callable] = {}


def register_model(fn: Callable) -> Callable:
    _MODELS[fn.__name__] = fn
    return fn


def create_model(name: str, **kwargs):
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; expected one of {', '.join(sorted(_MODELS))}")
    return _MODELS[name](**kwargs)


def list_models() -> list[str]:
    return sorted(_MODELS)
