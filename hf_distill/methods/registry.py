"""The method registry: names to `DistillationMethod` classes, filled by `register_method` (PEFT style).

Built-in methods register when `hf_distill.methods` is imported. Methods from outside the package register when
their module is imported; `load_method_plugins()` imports those declared in the `hf_distill.methods` entry-point
group of installed packages and the modules named in the `HF_DISTILL_METHOD_MODULES` environment variable
(comma-separated importable module paths), so `run_distill.py --method <name>` finds them.
"""

import importlib
import os
from importlib.metadata import entry_points

from .base import DistillationMethod

ENTRY_POINT_GROUP = "hf_distill.methods"
MODULES_ENVIRONMENT_VARIABLE = "HF_DISTILL_METHOD_MODULES"
PRESET_SETTINGS = ("alpha", "temperature", "beta")

_METHODS: dict[str, type[DistillationMethod]] = {}
# The registered names in order; `DistillationConfig.method` offers this very list as its `--method` choices, so
# methods registered after the import (plug-ins) are accepted too.
METHOD_NAMES: list[str] = []


def register_method(method: type[DistillationMethod]) -> type[DistillationMethod]:
    """Register `method` under `method.name` and return it (usable as a class decorator).

    Refuses what would fail later: a class that is not a `DistillationMethod`, an empty or taken name, or presets of
    unknown settings (its `default_student` is checked when a student is built). Registering the same class again
    is a no-op (module reloads).
    """
    if not (isinstance(method, type) and issubclass(method, DistillationMethod)):
        raise ValueError(f"`register_method` takes a `DistillationMethod` subclass, got {method!r}.")
    name = method.name
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"{method.__name__}.name must be a non-empty name without spaces around it, got {name!r}.")
    known = _METHODS.get(name)
    if known is not None:
        if known.__qualname__ == method.__qualname__ and known.__module__ == method.__module__:
            _METHODS[name] = method
            return method
        raise ValueError(
            f"A method named {name!r} is already registered ({known.__module__}.{known.__qualname__}). Give "
            f"{method.__module__}.{method.__qualname__} another `name`."
        )
    unknown = sorted(set(method.presets) - set(PRESET_SETTINGS))
    if unknown:
        raise ValueError(f"{method.__name__}.presets sets {unknown}; presets hold only {list(PRESET_SETTINGS)}.")
    _METHODS[name] = method
    METHOD_NAMES.append(name)
    return method


def load_method_plugins() -> None:
    """Import the method modules of the `hf_distill.methods` entry points and of `HF_DISTILL_METHOD_MODULES`."""
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as error:
            package = getattr(entry_point.dist, "name", "an installed package")
            raise ValueError(
                f"The `{ENTRY_POINT_GROUP}` entry point {entry_point.name!r} of {package} ({entry_point.value}) fails "
                f"to load: {type(error).__name__}: {error}. Fix or uninstall that package."
            ) from error
    for module in os.environ.get(MODULES_ENVIRONMENT_VARIABLE, "").split(","):
        if module.strip():
            try:
                importlib.import_module(module.strip())
            except Exception as error:
                raise ValueError(
                    f"`{MODULES_ENVIRONMENT_VARIABLE}` names {module.strip()!r}, which fails to import "
                    f"({type(error).__name__}: {error}). "
                    "Name importable modules (on PYTHONPATH) that call `hf_distill.methods.register_method`."
                ) from error


def get_method(name: str) -> type[DistillationMethod]:
    """The registered method `name` (plug-ins are loaded first if it is not built in)."""
    if name not in _METHODS:
        load_method_plugins()
    if name not in _METHODS:
        raise ValueError(
            f"`method`={name!r} is not a known distillation method. Choose one of {sorted(_METHODS)}, or register "
            "yours with `hf_distill.methods.register_method` (for the scripts: from a module named in "
            f"`{MODULES_ENVIRONMENT_VARIABLE}` or the `{ENTRY_POINT_GROUP}` entry-point group)."
        )
    return _METHODS[name]


def field_readers() -> dict[str, tuple[str, ...]]:
    """`{config field: the methods that read it}` over the fields some method lists in `fields`."""
    readers: dict[str, list[str]] = {}
    for name, method in _METHODS.items():
        for field_name in method.fields:
            readers.setdefault(field_name, []).append(name)
    return {field_name: tuple(names) for field_name, names in readers.items()}
