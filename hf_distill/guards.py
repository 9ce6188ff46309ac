"""Guards that stop a run early and say why: input checks made before any heavy work, a finite-loss check while
training, and an all-or-nothing save of the final model.

Every check raises a `ValueError` (`FloatingPointError` for a non-finite loss) whose message names the argument,
shows the value received and the value expected, and gives the fix.
"""

import dataclasses
import difflib
import math
import os
import pickle
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from datasets import DatasetDict
from safetensors import SafetensorError
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, Trainer, TrainingArguments

from .data import TaskSpec

T = TypeVar("T")

# The scripts' main process writes this file last, after every other file and the Hub upload: a folder without it
# holds no finished run (`cli.check_output_dir`). It is not `all_results.json`, which `Trainer.save_metrics` writes
# after training, before evaluation.
COMPLETION_MARKER = "run_complete.json"
# What the scripts write through `Trainer.save_metrics`/`save_state`: the final save removes a previous run's copies,
# or `save_metrics(..., combined=True)` would merge their keys into the new `all_results.json`.
RESULT_FILES = ("all_results.json", "train_results.json", "eval_results.json", "teacher_results.json")
# The final model is saved here, inside `output_dir` (same file system, so the moves below are renames).
STAGING_DIR_NAME = ".final-model.partial"
# Models whose position ids start after the padding id, so `max_position_embeddings` counts pad_token_id + 1
# positions that no token can use (RoBERTa: 514 embeddings, 512 tokens).
PADDING_OFFSET_MODEL_TYPES = ("roberta", "roberta-prelayernorm", "xlm-roberta", "xlm-roberta-xl", "camembert",
                              "data2vec-text")
# What a corrupted or missing checkpoint raises from `from_pretrained`: OSError (missing/invalid files, bad JSON),
# ValueError (unknown model type), SafetensorError (bad header), RuntimeError/UnpicklingError (bad .bin files).
_LOAD_ERRORS = (OSError, ValueError, RuntimeError, SafetensorError, pickle.UnpicklingError)


# -- inputs ---------------------------------------------------------------------------------------------------------
def check_config_file_keys(values: Any, dataclass_types: tuple[type, ...], source: str) -> None:
    """A JSON/YAML config must be a mapping whose keys are the script's arguments (flag names without `--`)."""
    if not isinstance(values, Mapping):
        raise ValueError(
            f"Config file {source!r} holds a {type(values).__name__}, not a mapping of argument names to values. "
            "Write one `name: value` entry per argument, e.g. `method: kd`."
        )
    known = {f.name for dataclass_type in dataclass_types for f in dataclasses.fields(dataclass_type) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        described = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), known, n=1)
            described.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
        raise ValueError(
            f"Config file {source!r} has unknown key(s): {', '.join(described)}. Keys are the script's flags "
            "without '--' (see `--help`): rename or remove them."
        )


def check_finite_settings(settings: Mapping[str, Any]) -> None:
    """Loss weights and temperatures must be finite: NaN passes every `<`/`>` range check and poisons the loss."""
    for name, value in settings.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"`{name}` is {value}, but loss settings must be finite numbers. Pass a finite `{name}`.")


def max_model_positions(config: PretrainedConfig) -> int | None:
    """Tokens a model can read at most (from `max_position_embeddings`), or None if it has no such limit."""
    positions = getattr(config, "max_position_embeddings", None)
    # DeBERTa-v2 without absolute position embeddings reads any length.
    if positions is None or getattr(config, "position_biased_input", True) is False:
        return None
    if getattr(config, "model_type", None) in PADDING_OFFSET_MODEL_TYPES:
        positions -= (config.pad_token_id or 0) + 1
    return positions


def check_max_seq_length(max_seq_length: int, config: PretrainedConfig, model: str) -> None:
    """`max_seq_length` must fit the position embeddings of `model` (described for the message, e.g. "the teacher
    (`teacher_model_name_or_path`)")."""
    if max_seq_length < 1:
        raise ValueError(f"`max_seq_length` is {max_seq_length}; expected a positive number of tokens, e.g. 128.")
    limit = max_model_positions(config)
    if limit is not None and max_seq_length > limit:
        raise ValueError(
            f"`max_seq_length` is {max_seq_length}, but {model} reads at most {limit} tokens "
            f"(max_position_embeddings={config.max_position_embeddings}). Pass `--max_seq_length {limit}` or less."
        )


def check_label_values(dataset: DatasetDict, task: TaskSpec) -> None:
    """Every label must be a class id in `[0, num_labels)` (GLUE test splits use -1 for "no label"), or a finite
    score for regression: such labels would otherwise fail deep inside the loss, or turn it into NaN."""
    for split, data in dataset.items():
        labels = np.asarray(data.with_format("numpy")["label"], dtype=np.float64)
        if task.is_regression:
            bad = ~np.isfinite(labels)
            expected = "finite scores (the task is a regression)"
        else:
            bad = ~np.isfinite(labels) | (labels < 0) | (labels >= task.num_labels)
            expected = f"class ids in [0, {task.num_labels - 1}] ({task.num_labels} labels)"
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"The `label` column of the {split} split holds {labels[row]} at row {row} ({int(bad.sum())} such "
                f"row(s)), but task {task.name!r} needs {expected}. Drop or fix those rows in your data, or check "
                "`task_name` / `label_column`."
            )


def check_resume_checkpoint(path: str | None) -> None:
    """`resume_from_checkpoint` must be a complete Trainer checkpoint: `trainer_state.json` is written last, so a
    folder without it was cut short while saving."""
    if path is None:
        return
    if not (Path(path) / "trainer_state.json").is_file():
        raise ValueError(
            f"`resume_from_checkpoint` is {path!r}, which is not a complete checkpoint folder (no "
            "trainer_state.json; a run killed while saving leaves such folders). Pass a `checkpoint-N` folder of "
            "an earlier run's `output_dir`, or drop the flag to start afresh."
        )


def launched_processes() -> int:
    """How many processes the launcher started (`torchrun`, `accelerate launch`: `WORLD_SIZE`); 1 without one."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_distributed_launch(args: TrainingArguments) -> None:
    """Each process a launcher started must be one rank of one job. Under `torchrun` on a machine without GPUs and
    without `use_cpu`, Accelerate sets up no distributed backend: every process is then "process 0 of 1", trains on
    all the data alone, and all of them write the same `output_dir` at once (a half-deleted staging folder, result
    files and the closing table once per process)."""
    launched = launched_processes()
    if launched > 1 and args.world_size != launched:
        raise ValueError(
            f"The launcher started {launched} processes (WORLD_SIZE={launched}), but this one sees a world of "
            f"{args.world_size} (`use_cpu`={args.use_cpu}, device {args.device}): no distributed backend was set "
            "up, so every process would train alone and write the same `output_dir`. Pass `--use_cpu true` to run "
            "the processes on CPU with gloo, or launch one process per GPU on a machine that has them."
        )


def load_pretrained(loader: Callable[..., T], name_or_path: str, argument: str, **kwargs) -> T:
    """`loader(name_or_path, **kwargs)` (a `from_pretrained`), with a failure re-raised naming `argument`."""
    try:
        return loader(name_or_path, **kwargs)
    except _LOAD_ERRORS as error:
        if isinstance(error, ValueError) and f"`{argument}`" in str(error):
            raise  # the loader's own check, which already names the argument
        raise ValueError(
            f"`{argument}` is {str(name_or_path)!r}, which could not be loaded: {type(error).__name__}: {error} "
            "Pass a Hub model id or a folder written by `save_pretrained` (config.json, model.safetensors and the "
            "tokenizer files); if a file there is truncated or corrupted, save or download it again."
        ) from error


def check_patient_student(teacher: PreTrainedModel, student: nn.Module, method: str) -> None:
    """The patient loss compares teacher and student [CLS] vectors layer by layer, without a projection: the
    student must be a transformer of the teacher's width with at least one intermediate layer."""
    config = getattr(student, "config", None)
    layers = getattr(config, "num_executed_layers", None) or getattr(config, "num_hidden_layers", None)
    if layers is None:
        raise ValueError(
            f"`method`={method!r} matches intermediate [CLS] states, but the student is a {type(student).__name__}, "
            "which has no transformer layers. Use `method='kd'` (or 'bilstm') for this student."
        )
    width, teacher_width = config.hidden_size, teacher.config.hidden_size
    if width != teacher_width:
        raise ValueError(
            f"`method`={method!r} compares [CLS] vectors directly, but the student's hidden_size is {width} and the "
            f"teacher's {teacher_width}. Build the student at hidden_size={teacher_width}, or use `method='kd'`."
        )
    if layers < 2:
        raise ValueError(
            f"`method`={method!r} matches student layers 1 … M−1 to the teacher, but the student runs {layers} "
            "layer, so the patient term would silently vanish. Use a student with 2 or more layers, or `method='kd'`."
        )


# -- training -------------------------------------------------------------------------------------------------------
def check_finite_loss(
    loss: torch.Tensor,
    terms: Mapping[str, tuple[float, torch.Tensor]],
    step: int,
    outputs: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Stop training on a NaN/inf loss, naming the terms at fault, the step and which outputs are not finite.

    Args:
        loss: the scalar training loss.
        terms: `{name: (weight, value)}` as summed into `loss`.
        step: the optimizer step being computed (1-based).
        outputs: named tensors to inspect on failure, e.g. `{"student logits": ..., "teacher logits": ...}`.

    One host-device synchronisation per call, only on the total; the terms are inspected only after a failure.
    (`Trainer` already synchronises on every step's loss for `logging_nan_inf_filter`, which would otherwise
    silently drop the NaN from the logs and go on training.)
    """
    if torch.isfinite(loss):
        return
    described = [
        f"`{name}` = {value.item():.4g} (weight {weight})"
        for name, (weight, value) in terms.items()
        if not torch.isfinite(weight * value)
    ]
    bad_outputs = [name for name, tensor in (outputs or {}).items() if not torch.isfinite(tensor).all()]
    raise FloatingPointError(
        f"The training loss is {loss.item()} at step {step}: "
        f"{', '.join(described) or 'the weighted sum overflows'}."
        f"{' Non-finite values in: ' + ', '.join(bad_outputs) + '.' if bad_outputs else ''} "
        "Lower `learning_rate`, set `max_grad_norm`, check the inputs and labels for NaN/inf, or train in fp32 or "
        "bf16 instead of fp16; resume from the last checkpoint with `resume_from_checkpoint`."
    )


# -- outputs --------------------------------------------------------------------------------------------------------
def save_final_model(trainer: Trainer, output_dir: str | os.PathLike | None = None) -> None:
    """`trainer.save_model(output_dir)` such that no reader ever sees a half-written model file. Call it on every
    process (saving may gather weights); only the processes that save (`args.should_save`) touch the folder.

    The completion marker (`run_complete.json`, written last by the scripts) and the previous run's result files are
    removed first, so from here until the script writes the marker again the folder reads as unfinished. The model is
    saved into a hidden folder inside `output_dir`, then each file is moved in with `os.replace`, an atomic rename. In
    a run killed midway each file is the old one or the new one, never a truncated one, and the missing marker says
    the folder is unfinished. Every process returns only once the folder holds the new model.
    """
    output = Path(output_dir if output_dir is not None else trainer.args.output_dir)
    staging = output / STAGING_DIR_NAME
    if trainer.args.should_save:
        for name in (COMPLETION_MARKER, *RESULT_FILES):
            (output / name).unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)  # left by a run killed while saving
    trainer.accelerator.wait_for_everyone()
    # `_internal_call` stops `save_model` from pushing the unfinished folder to the Hub; the scripts push at the end.
    trainer.save_model(str(staging), _internal_call=True)
    if trainer.args.should_save:
        for path in sorted(staging.iterdir()):
            target = output / path.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(path, target)
        staging.rmdir()
    trainer.accelerator.wait_for_everyone()
