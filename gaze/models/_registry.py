"""The model registry: ``register_model``, ``create_model``, ``list_models`` (torchvision ``_api`` size).

Keys are lowercase method names ('baseline', 'gat', 'kfn', ...); every registered class gets
the key as its ``name`` attribute. Model modules register themselves when imported below.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

_MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a model under ``name``; a second model with that name raises."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered ({_MODELS[name].__qualname__})")
        cls.name = name
        _MODELS[name] = cls
        return cls

    return wrap


def model_class(name: str) -> type[nn.Module]:
    """The registered class ``name`` (its class attributes state the method's facts)."""
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _MODELS[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with constructor ``kwargs``."""
    return model_class(name)(**kwargs)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)
