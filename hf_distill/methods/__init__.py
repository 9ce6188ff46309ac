"""Distillation methods as registered plug-ins: one module per method, one `register_method` call each.

`get_method(name)` returns a method's class; `DistillationTrainer`, `DistillationConfig`, the teacher cache, the
model card and the scripts ask it what they need to know (see `DistillationMethod`).
"""

# Importing the built-in methods registers them.
from . import bilstm, kd, peakd, pkd, tinybert  # noqa: E402, F401
from .base import LABELLED_TERMS, DistillationMethod, LossInputs, LossTerms
from .registry import (
    ENTRY_POINT_GROUP,
    METHOD_NAMES,
    MODULES_ENVIRONMENT_VARIABLE,
    field_readers,
    get_method,
    load_method_plugins,
    register_method,
)

DEFAULT_METHOD = kd.KD.name

__all__ = [
    "DEFAULT_METHOD",
    "ENTRY_POINT_GROUP",
    "LABELLED_TERMS",
    "METHOD_NAMES",
    "MODULES_ENVIRONMENT_VARIABLE",
    "DistillationMethod",
    "LossInputs",
    "LossTerms",
    "field_readers",
    "get_method",
    "load_method_plugins",
    "register_method",
]
