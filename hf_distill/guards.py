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
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import torch
from datasets import DatasetDict
from safetensors import SafetensorError
from transformers import PretrainedConfig, PreTrainedModel, Trainer, TrainingArguments

from .data import TaskSpec
from .io import move_files_into

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


def check_config_file_types(values: Mapping[str, Any], dataclass_types: tuple[type, ...], source: str) -> None:
    """Numbers and booleans in a JSON/YAML config must have the field's type: the parser converts only strings,
    so `max_steps: [1, 2]` or `per_device_train_batch_size: 8.5` would otherwise fail deep inside training."""
    for dataclass_type in dataclass_types:
        try:
            hints = typing.get_type_hints(dataclass_type)
        except (NameError, TypeError):  # an annotation this Python cannot evaluate: leave it to the parser
            continue
        for f in dataclasses.fields(dataclass_type):
            if not f.init or f.name not in values or isinstance(values[f.name], str):
                continue  # strings go through the parser's own conversion and error message
            hint = hints[f.name]
            options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
            allowed = {option for option in options if option is not type(None)}
            if not allowed or not allowed <= {int, float, bool}:
                continue
            value = values[f.name]
            if value is None and type(None) in options:
                continue
            if bool in allowed:
                fits = isinstance(value, bool) or (isinstance(value, int) and value in (0, 1))
                expected, example = "true or false", "true"
            elif float in allowed:
                fits = isinstance(value, (int, float)) and not isinstance(value, bool)
                expected, example = "a number", "0.5"
            else:
                fits = isinstance(value, int) and not isinstance(value, bool)
                expected, example = "a whole number", "8"
            if not fits:
                raise ValueError(
                    f"Config file {source!r} sets `{f.name}` to {value!r} ({type(value).__name__}), but `{f.name}` "
                    f"takes {expected}. Write e.g. `{f.name}: {example}`."
                )


def check_training_arguments(args: Any) -> None:
    """Batch sizes, accumulation steps, learning rate and run length that would fail only once training starts
    (after the teacher's evaluation), or, for a run of 0 steps, save an untrained model as a finished run."""
    for name, example in (
        ("per_device_train_batch_size", 32),
        ("per_device_eval_batch_size", 64),
        ("gradient_accumulation_steps", 1),
    ):
        value = getattr(args, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"`{name}` is {value!r}; expected a positive whole number. Pass e.g. `--{name} {example}`."
            )
    if not math.isfinite(args.learning_rate) or args.learning_rate < 0:
        raise ValueError(
            f"`learning_rate` is {args.learning_rate}; expected a finite number ≥ 0. Pass e.g. `--learning_rate 5e-5`."
        )
    if args.max_steps <= 0 and args.num_train_epochs <= 0:
        raise ValueError(
            f"`num_train_epochs` is {args.num_train_epochs} and `max_steps` is {args.max_steps}, so the run would "
            "take 0 training steps and save the untrained model as a finished run. Pass `--num_train_epochs 3` (or "
            "any number > 0), or `--max_steps` > 0."
        )


def check_finite_settings(settings: Mapping[str, Any]) -> None:
    """Loss weights and temperatures must be finite: NaN passes every `<`/`>` range check and poisons the loss."""
    for name, value in settings.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"`{name}` is {value}, but loss settings must be finite numbers. Pass a finite `{name}`.")


def check_fields_apply(arguments: Any, users: Mapping[str, tuple[str, ...]], value: str, argument: str) -> None:
    """Refuse fields of the dataclass `arguments` that only `users[field]` (methods or student kinds) read, when this
    run's `argument` is `value`, another one, and the field is set away from its default: such a setting would
    silently do nothing. A field left at its default (also when a config file spells the default out) changes
    nothing and passes."""
    for spec in dataclasses.fields(arguments):
        readers = users.get(spec.name)
        if readers is None or value in readers:
            continue
        default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
        if getattr(arguments, spec.name) != default:
            raise ValueError(
                f"`{spec.name}`={getattr(arguments, spec.name)!r} applies only to `{argument}` "
                f"{' / '.join(repr(reader) for reader in readers)}, but this run's `{argument}` is {value!r}, which "
                f"ignores it. Drop `{spec.name}`, or set `--{argument} {readers[0]}`."
            )


def max_model_positions(config: PretrainedConfig) -> int | None:
    """Tokens a model can read at most (from `max_position_embeddings`), or None if it has no such limit."""
    positions = getattr(config, "max_position_embeddings", None)
    # DeBERTa-v2 without absolute position embeddings reads any length.
    if positions is None or getattr(config, "position_biased_input", True) is False:
        return None
    if getattr(config, "model_type", None) in PADDING_OFFSET_MODEL_TYPES:
        positions -= (config.pad_token_id or 0) + 1
    return positions


def check_max_seq_length(max_seq_length: int, config: PretrainedConfig, model: str,
                         argument: str = "max_seq_length") -> None:
    """`max_seq_length` (the value of `argument`) must fit the position embeddings of `model` (described for the
    message, e.g. "the teacher (`teacher_model_name_or_path`)")."""
    if max_seq_length < 1:
        raise ValueError(f"`{argument}` is {max_seq_length}; expected a positive number of tokens, e.g. 128.")
    limit = max_model_positions(config)
    if limit is not None and max_seq_length > limit:
        raise ValueError(
            f"`{argument}` is {max_seq_length}, but {model} reads at most {limit} tokens "
            f"(max_position_embeddings={config.max_position_embeddings}). Pass `--{argument} {limit}` or less."
        )


def check_label_values(dataset: DatasetDict, task: TaskSpec) -> None:
    """Every label must be a class id in `[0, num_labels)` (GLUE test splits use -1 for "no label"), or a finite
    score for regression: such labels would otherwise fail deep inside the loss, or turn it into NaN."""
    for split, data in dataset.items():
        column = data.data.column("label").combine_chunks()
        unit = "row"
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            column, unit = column.flatten(), "value"  # token tags / multi-label ids: every value is a class id
        labels = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
        if task.is_regression:
            bad = ~np.isfinite(labels)
            expected = "finite scores (the task is a regression)"
        else:
            bad = ~np.isfinite(labels) | (labels < 0) | (labels >= task.num_labels)
            expected = f"class ids in [0, {task.num_labels - 1}] ({task.num_labels} labels)"
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"The `label` column of the {split} split holds {labels[row]} at {unit} {row} ({int(bad.sum())} such "
                f"{unit}(s)), but task {task.name!r} needs {expected}. Drop or fix those rows in your data, or check "
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


def looks_like_a_local_path(name_or_path: str) -> bool:
    """Whether `name_or_path` can only be a local path, not a Hub id (`namespace/name`)."""
    return os.path.isabs(name_or_path) or name_or_path.startswith((".", "~")) or name_or_path.count("/") > 1


def _local_folder_problem(name_or_path: str) -> str | None:
    """What is visibly wrong with `name_or_path` as a local folder, for a load failure's message, or None."""
    path = Path(name_or_path).expanduser()
    if not path.exists():
        if looks_like_a_local_path(name_or_path):
            return "there is no such folder"
        return "no local folder has that name, so it was looked up as a Hub id"
    if not path.is_dir():
        return "it is a file, not a folder"
    if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        files = sorted(child.name for child in path.iterdir())[:8]
        return f"the folder holds no config.json (its files: {', '.join(files) or 'none'})"
    return None


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
        problem = _local_folder_problem(str(name_or_path))
        raise ValueError(
            f"`{argument}` is {str(name_or_path)!r}, which could not be loaded: {f'{problem}; ' if problem else ''}"
            f"{type(error).__name__}: {error} "
            "Pass a Hub model id or a folder written by `save_pretrained` (config.json, model.safetensors and the "
            "tokenizer files); if a file there is truncated or corrupted, save or download it again."
        ) from error


def check_tokenizer_vocabulary(
    tokenizer: Any, name_or_path: str, argument: str, source: str = "the model it was trained from", fix: str = ""
) -> None:
    """A folder without tokenizer files still "loads": transformers builds an empty tokenizer of the config's type,
    which reads every word as the unknown token, so a run would silently train on `[CLS] [UNK] … [SEP]`.
    `source` names where the right tokenizer comes from, `fix` adds another way out to the message."""
    vocabulary = set(tokenizer.get_vocab())
    if vocabulary - set(tokenizer.all_special_tokens) - set(tokenizer.get_added_vocab()):
        return
    raise ValueError(
        f"`{argument}` is {str(name_or_path)!r}, whose tokenizer has no vocabulary (only the special tokens "
        f"{sorted(vocabulary)}): the folder holds no tokenizer files (tokenizer.json, vocab.txt, ...), so every word "
        f"would be read as {tokenizer.unk_token!r}. Save the model's tokenizer into the folder "
        f"(`AutoTokenizer.from_pretrained(<{source}>).save_pretrained(folder)`){fix}."
    )


def check_loaded_weights(
    model: PreTrainedModel, loading_info: Mapping[str, Any], name_or_path: str, argument: str, *, new_head_ok: bool
) -> None:
    """Tensors missing from a checkpoint are randomly initialised by `from_pretrained` with only a log line: a bare
    `BertModel` loaded as a teacher gets a random classifier, weights of another architecture leave all of it random.

    `new_head_ok`: the task head (every tensor outside the base model, and the pooler) may be new, as when fine-tuning
    a pre-trained checkpoint or giving a general-distillation student the task's labels.
    """
    missing = sorted(loading_info["missing_keys"])
    prefix = f"{model.base_model_prefix}." if model.base_model is not model else ""
    body = [key for key in missing if key.startswith(prefix) and ".pooler." not in f".{key}"]
    head = [key for key in missing if key not in body]
    total = len(model.state_dict())
    if body:
        shown = ", ".join(body[:3]) + (f" and {len(body) - 3} more" if len(body) > 3 else "")
        raise ValueError(
            f"`{argument}` is {str(name_or_path)!r}, but its weights do not fit its config.json "
            f"({type(model).__name__}): {len(body)} of {total} tensors are missing from the checkpoint ({shown}) and "
            "would be randomly initialised. The weights file belongs to another architecture or model: save the "
            "checkpoint again with `save_pretrained`, or pass the folder it came from."
        )
    if head and not new_head_ok:
        raise ValueError(
            f"`{argument}` is {str(name_or_path)!r}, but the checkpoint has no trained task head ({', '.join(head)} "
            f"missing; its config's architectures: {getattr(model.config, 'architectures', None)}): it is not a "
            "fine-tuned sequence classifier, and its classifier would be random. Fine-tune it on the task first "
            f"(`python run_glue_teacher.py --model_name_or_path {name_or_path} ...`) and pass the result."
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
    saved into a hidden folder inside `output_dir`, then each file is moved in by `io.move_files_into` (atomic
    renames). In a run killed midway each file is the old one or the new one, never a truncated one, and the missing
    marker says the folder is unfinished. Every process returns only once the folder holds the new model.
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
        move_files_into(staging, output)
    trainer.accelerator.wait_for_everyone()
