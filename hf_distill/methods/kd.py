"""Vanilla knowledge distillation (Hinton et al. 2015, methods.md §1): `(1 − α)·CE + α·T²·KL(teacher ‖ student)`."""

from .base import DistillationMethod
from .registry import register_method


@register_method
class KD(DistillationMethod):
    name = "kd"
    summary = "Hinton's KD: hard-label CE plus the temperature-scaled KL to the teacher's soft labels."
    # Presets and the loss are `DistillationMethod`'s: PKD's shipped run (α = 0.7, T = 10), so that KD and PKD
    # compare at the same α and T, as in the PKD paper.
