"""A method's whole run, as the scripts drive it: its extra arguments, its stage before distillation and its
training (one `DistillationTrainer`, or its own stages). Imports flow one way: scripts -> pipeline -> trainer ->
methods, so methods get the trainer class passed in rather than importing it."""

import dataclasses
from typing import Any

from transformers import PreTrainedModel
from transformers.trainer_utils import TrainOutput

from .guards import check_fields_apply
from .methods import METHOD_NAMES, get_method
from .trainer import DistillationTrainer


def method_argument_classes() -> tuple[type, ...]:
    """The registered methods' extra argument dataclasses (`DistillationMethod.arguments`), each once."""
    classes = [get_method(name).arguments for name in METHOD_NAMES]
    return tuple(dict.fromkeys(cls for cls in classes if cls is not None))


def check_method_arguments(method: str, parsed: list[Any]) -> None:
    """Refuse a set field of another method's argument dataclass (e.g. `--ptp_threshold` without peakd)."""
    readers: dict[type, list[str]] = {}
    for name in METHOD_NAMES:
        arguments = get_method(name).arguments
        if arguments is not None:
            readers.setdefault(arguments, []).append(name)
    for arguments in parsed:
        names = readers.get(type(arguments))
        if names is not None:
            fields = {spec.name: tuple(names) for spec in dataclasses.fields(arguments)}
            check_fields_apply(arguments, fields, method, "method")


def prepare_student(
    student: PreTrainedModel, teacher: PreTrainedModel, args, method_arguments, task, train_dataset, eval_dataset,
    data_collator,
) -> PreTrainedModel:
    """The method's stage before distillation (PeaKD's PTP), if it has one."""
    return get_method(args.method).before_training(
        student, teacher, args, method_arguments, task, train_dataset, eval_dataset, data_collator
    )


def train_student(student, teacher, args, **trainer_kwargs) -> tuple[DistillationTrainer, TrainOutput]:
    """Distil `teacher` into `student` as `args.method` does: one `DistillationTrainer`, or the method's own stages
    (TinyBERT's two). `trainer_kwargs` go to each trainer (datasets, collator, processing_class, compute_metrics).
    Returns the last trainer, whose `save_model()` writes the final student, and its TrainOutput."""
    return get_method(args.method).train(DistillationTrainer, student, teacher, args, **trainer_kwargs)
