"""What `run_glue_teacher.py` and `run_distill.py` share: data arguments, config-file parsing, checks made before
any heavy work and the closing summary table (result files are written with `hf_distill.io`)."""

import json
import logging as py_logging
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml
from datasets.utils import logging as datasets_logging
from transformers import (
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    HfArgumentParser,
    PreTrainedModel,
    TrainingArguments,
)
from transformers.trainer_utils import EvalPrediction
from transformers.utils import logging

from .classifier_trainer import ClassifierTrainer
from .data import TaskSpec, build_compute_metrics, load_task_dataset, tokenize_dataset
from .data.collation import TwoTokenizerCollator
from .data.task_spec import TRANSFER_COLUMN
from .data.tokenization import MODEL_INPUT_COLUMNS, STUDENT_PREFIX, tokenize_for_student
from .data.transfer import add_transfer_rows, load_transfer_dataset
from .ensemble import TeacherEnsemble, task_loss
from .export import ExportArguments, evaluate_onnx, export_onnx, load_onnx_session, onnx_latency
from .guards import (
    COMPLETION_MARKER,
    check_config_file_keys,
    check_config_file_types,
    check_distributed_launch,
    check_label_values,
    launched_processes,
    load_pretrained,
)
from .io import write_json_atomic
from .peft_utils import is_token_classifier, load_teacher_tokenizer
from .summary import count_parameters, directory_size_mb, format_markdown_table, make_latency_batch, measure_latency
from .trainer import has_default_label_names

logger = logging.get_logger(__name__)

CONFIG_FILE_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass
class DataArguments:
    """Which task and data to train and evaluate on."""

    _argument_group_name = "Data"

    task_name: str | None = field(
        default=None,
        metadata={
            "help": "A named task: GLUE (sst2, mrpc, rte, cola, stsb, qqp, mnli, qnli, wnli; GLUE spellings accepted) "
            "or conll2003 (NER). Unset for any other dataset (`--dataset_name`, `--train_file`)."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "A local folder in the named task's original layout: GLUE TSVs (train.tsv, dev.tsv) or CoNLL-2003 "
            "text files (train.txt, valid.txt)."
        },
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Any dataset `datasets.load_dataset` reads: a Hub id or a local dataset folder (also one written "
            "by `save_to_disk`). Default: the named task's Hub dataset (nyu-mll/glue, eriktks/conll2003)."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "The configuration of `--dataset_name`, when it has several."}
    )
    train_file: str | None = field(default=None, metadata={"help": "A csv/tsv/json(l) training file."})
    validation_file: str | None = field(default=None, metadata={"help": "A csv/tsv/json(l) validation file."})
    text_columns: str | None = field(
        default=None,
        metadata={
            "help": "One or two comma-separated text column names (token classification: the column of word "
            "lists). Default: the task's, else the usual names (sentence, text, tokens, sentence1,sentence2, ...).",
            "aliases": ["--text_column_names"],
        },
    )
    label_column: str | None = field(
        default=None,
        metadata={
            "help": "The label column: ids or names; lists of them for multi-label (one label list per row) and "
            "token classification (one tag per word). Default: the task's, else label, labels or ner_tags.",
            "aliases": ["--label_column_name"],
        },
    )
    transfer_file: str | None = field(
        default=None,
        metadata={
            "help": "run_distill.py: unlabelled transfer rows (csv/tsv/json(l) with the text columns) added to the "
            "training set; the teacher labels them, the hard-label CE skips them."
        },
    )
    transfer_dataset_name: str | None = field(
        default=None,
        metadata={"help": "run_distill.py: transfer rows from any `datasets.load_dataset` source (its text columns)."},
    )
    transfer_dataset_config_name: str | None = field(
        default=None, metadata={"help": "The configuration of `--transfer_dataset_name`."}
    )
    transfer_split: str = field(default="train", metadata={"help": "The split of `--transfer_dataset_name` read."})
    max_transfer_samples: int | None = field(default=None, metadata={"help": "Keep the first n transfer rows."})
    label_all_tokens: bool = field(
        default=False,
        metadata={
            "help": "Token classification: label every sub-token of a word (B-X continuations as I-X), not only its "
            "first one (run_ner.py's option)."
        },
    )
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated."})
    student_max_seq_length: int | None = field(
        default=None,
        metadata={"help": "With a student tokenizer of its own: its side's max length (default: max_seq_length)."},
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={
            "help": "Pad every batch to `max_seq_length` instead of to its longest row (as run_glue.py; TinyBERT's "
            "reference does, which its unmasked loss means need: `--tinybert_hidden_mask false "
            "--tinybert_attention_masked_mean false`)."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first n training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first n validation examples."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output_dir that already holds a finished run."}
    )

    def has_transfer_data(self) -> bool:
        return self.transfer_file is not None or self.transfer_dataset_name is not None

    def text_column_list(self) -> tuple[str, ...] | None:
        if not self.text_columns:
            return None
        return tuple(name.strip() for name in self.text_columns.split(",") if name.strip())


def parse_arguments(dataclass_types: tuple[type, ...], argv: list[str] | None = None) -> tuple[Any, ...]:
    """Flags, or a JSON/YAML file holding the same keys, optionally followed by flags that override it
    (`python run_distill.py examples/kd_sst2.yaml --output_dir students/kd`)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = HfArgumentParser(dataclass_types)
    takes_training_arguments = any(issubclass(cls, TrainingArguments) for cls in dataclass_types)
    if takes_training_arguments and launched_processes() > 1 and not has_distributed_accelerator():
        # torchrun on a machine without GPUs: without `use_cpu` Accelerate would set up no distributed backend and
        # each process would run the whole job alone (`guards.check_distributed_launch`). A file or flag may still
        # say `use_cpu: false`; the check below then refuses the launch.
        parser.set_defaults(use_cpu=True)
    if argv and argv[0].endswith(CONFIG_FILE_SUFFIXES):
        path = os.path.abspath(argv[0])
        if not os.path.isfile(path):
            raise ValueError(f"Config file {argv[0]!r} does not exist. Pass an existing .json/.yaml file or flags.")
        text = Path(path).read_text(encoding="utf-8")
        values = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        check_config_file_keys(values, dataclass_types, argv[0])
        check_config_file_types(values, dataclass_types, argv[0])
        # The file's values become the defaults, so flags after it override them and it may hold required ones.
        parser.set_defaults(**values)
        for action in parser._actions:
            if action.dest in values:
                action.required = False
        argv = argv[1:]
    parsed = parser.parse_args_into_dataclasses(args=argv)
    for arguments in parsed:
        if isinstance(arguments, TrainingArguments):
            check_distributed_launch(arguments)
    return parsed


def has_distributed_accelerator() -> bool:
    """Whether Accelerate finds a device here with a distributed backend (CUDA: nccl, XPU: xccl, ...), as it does
    to choose one under a launcher; without one, multi-process training needs `use_cpu` (gloo)."""
    try:
        from accelerate.utils.imports import get_distributed_backend, get_torch_accelerator_backend
    except ImportError:  # an Accelerate without these helpers
        import torch

        return torch.cuda.is_available()
    device_type, _ = get_torch_accelerator_backend()
    return get_distributed_backend(device_type) is not None


def setup_logging(args: TrainingArguments) -> None:
    """Show this library's and the scripts' log lines, not only transformers' (as transformers' run_glue.py does).

    Our loggers (`hf_distill.*`, `run_distill`, ...) are outside the `transformers` logger tree, so
    `transformers.utils.logging.set_verbosity_*` alone would silently drop them.
    """
    level = args.get_process_log_level()
    py_logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[py_logging.StreamHandler(sys.stdout)],
    )
    for name in ("hf_distill", "run_distill", "run_glue_teacher", "__main__"):
        py_logging.getLogger(name).setLevel(level)
    logging.set_verbosity(level)
    datasets_logging.set_verbosity(level)


def is_finished_run(output_dir: str | os.PathLike) -> bool:
    """Whether `output_dir` holds a finished run of the scripts: their completion marker, or the `all_results.json`
    alone that hf_distill wrote last before the marker existed (a run of today writes `train_results.json` beside
    it right after training, long before it is finished)."""
    folder = Path(output_dir)
    if (folder / COMPLETION_MARKER).is_file():
        return True
    return (folder / "all_results.json").is_file() and not (folder / "train_results.json").exists()


def check_output_dir(output_dir: str, overwrite: bool) -> None:
    """Refuse to mix a new run into a finished one; an unfinished one (no marker) is accepted, to resume into it."""
    if is_finished_run(output_dir) and not overwrite:
        found = COMPLETION_MARKER if (Path(output_dir) / COMPLETION_MARKER).is_file() else "all_results.json"
        raise ValueError(
            f"`output_dir` {output_dir!r} already holds a finished run ({found}). Choose another "
            "`--output_dir` or pass `--overwrite_output_dir`."
        )


def write_completion_marker(args: TrainingArguments, script: str, accelerator) -> None:
    """Mark `args.output_dir` finished: called last by every process, once all of them are done (`accelerator`'s
    barrier); only the saving process writes the marker."""
    accelerator.wait_for_everyone()
    if args.should_save:
        payload = {
            "script": script,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "world_size": args.world_size,
        }
        write_json_atomic(Path(args.output_dir) / COMPLETION_MARKER, payload)


def load_data(data_args: DataArguments, tokenizer, seed: int, student_tokenizer=None):
    """Load the task's splits and tokenise them: returns `(raw, tokenized, task)`. With a `student_tokenizer` (a
    cross-tokenizer run), each row also holds the student's tokenization (`student_input_ids`, ...)."""
    raw, task = load_task_dataset(
        data_args.task_name,
        data_dir=data_args.data_dir,
        train_file=data_args.train_file,
        validation_file=data_args.validation_file,
        text_columns=data_args.text_column_list(),
        label_column=data_args.label_column,
        dataset_name=data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        max_train_samples=data_args.max_train_samples,
        max_eval_samples=data_args.max_eval_samples,
        seed=seed,
    )
    check_label_values(raw, task)
    if data_args.has_transfer_data():
        transfer = load_transfer_dataset(
            task,
            transfer_file=data_args.transfer_file,
            transfer_dataset_name=data_args.transfer_dataset_name,
            transfer_dataset_config_name=data_args.transfer_dataset_config_name,
            transfer_split=data_args.transfer_split,
            text_columns=data_args.text_column_list(),
            max_transfer_samples=data_args.max_transfer_samples,
        )
        raw = add_transfer_rows(raw, transfer)
    tokenized = tokenize_dataset(raw, tokenizer, task, data_args.max_seq_length, data_args.label_all_tokens)
    if student_tokenizer is None and data_args.student_max_seq_length is not None:
        raise ValueError(
            f"`student_max_seq_length` is {data_args.student_max_seq_length}, but the student reads the teacher's "
            "tokens (no student tokenizer of its own), truncated at `max_seq_length`. Drop it, or set "
            "`max_seq_length`."
        )
    if student_tokenizer is not None:
        if data_args.label_all_tokens:
            raise ValueError(
                "`label_all_tokens` labels every sub-token, but the student has its own tokenizer, which splits the "
                "words into other sub-tokens: teacher and student are compared word by word, on each word's first "
                "sub-token. Drop `--label_all_tokens`, or use the teacher's tokenizer for the student."
            )
        tokenized = tokenize_for_student(tokenized, raw, student_tokenizer, task,
                                         data_args.student_max_seq_length or data_args.max_seq_length, tokenizer)
    return raw, tokenized, task


def training_row_counts(train) -> dict[str, int]:
    """`{"labelled": …, "transfer": …}` rows of a training split (transfer rows are marked `transfer`)."""
    transfer = sum(train[TRANSFER_COLUMN]) if TRANSFER_COLUMN in train.column_names else 0
    return {"labelled": len(train) - transfer, "transfer": transfer}


def local_dataset(dataset_name: str | None) -> str | None:
    """`dataset_name` when it names a local folder (the model card then names no Hub dataset), else None."""
    return dataset_name if dataset_name and Path(dataset_name).is_dir() else None


def make_collator(tokenizer, data_args: DataArguments, task: TaskSpec, student_tokenizer=None,
                  max_length: int | None = None):
    """Pads each batch to its longest row, or to `max_length` (default `max_seq_length`) with `pad_to_max_length`
    (token classification: its per-token labels too, with -100); with a `student_tokenizer`, each model's inputs with
    its own tokenizer (the student's to `student_max_seq_length`)."""
    collator_class = DataCollatorForTokenClassification if task.is_token_classification else DataCollatorWithPadding
    if data_args.pad_to_max_length:
        collator = collator_class(tokenizer, padding="max_length", max_length=max_length or data_args.max_seq_length)
    else:
        collator = collator_class(tokenizer)
    if student_tokenizer is None:
        return collator
    return TwoTokenizerCollator(collator, student_tokenizer, data_args.student_max_seq_length)


def report_metrics(trainer, split: str, metrics: dict[str, Any]) -> None:
    """Print and save `metrics` as `<split>_results.json` (merged into `all_results.json`), as run_glue.py does."""
    trainer.log_metrics(split, metrics)
    trainer.save_metrics(split, metrics)


def check_same_tokenizer(tokenizer, teacher_paths: list[str]) -> None:
    """Every teacher of an ensemble reads the token ids of the first one's tokenizer."""
    for k, path in enumerate(teacher_paths[1:], start=1):
        other = load_pretrained(load_teacher_tokenizer, path, "teacher_model_name_or_path")
        if other.get_vocab() != tokenizer.get_vocab():
            raise ValueError(
                f"`teacher_model_name_or_path` {path!r} (teacher {k}) has another vocabulary than "
                f"{teacher_paths[0]!r} (teacher 0): the teachers of an ensemble read the same token ids. Pass "
                "teachers that share their tokenizer."
            )


def check_labels_match_task(model: PreTrainedModel, task: TaskSpec, argument: str) -> None:
    """A fine-tuned model must be a classifier of the task's type and predict the task's labels in the dataset's
    order (MNLI orders differ by source)."""
    if is_token_classifier(model) != task.is_token_classification:
        have = "a token classifier" if is_token_classifier(model) else "a sequence classifier"
        raise ValueError(
            f"`{argument}` is {have} ({type(model).__name__}), but task {task.name!r} is {task.task_type}. Use a "
            "model fine-tuned on this task (run_glue_teacher.py with the same data arguments)."
        )
    config = model.config
    if task.is_multi_label != (config.problem_type == "multi_label_classification"):
        raise ValueError(
            f"`{argument}` has problem_type {config.problem_type!r}, but task {task.name!r} is {task.task_type}: its "
            "logits would be read as the wrong kind of prediction. Use a model fine-tuned on this task "
            "(run_glue_teacher.py with the same data arguments)."
        )
    if config.num_labels != task.num_labels:
        raise ValueError(
            f"`{argument}` predicts {config.num_labels} labels but task {task.name!r} has {task.num_labels}. "
            "Use a model fine-tuned on this task (run_glue_teacher.py)."
        )
    if task.label_names is None or has_default_label_names(config.id2label):
        return
    model_names = [config.id2label[i] for i in range(config.num_labels)]
    if [name.lower() for name in model_names] != [name.lower() for name in task.label_names]:
        raise ValueError(
            f"`{argument}` labels are {model_names} (id2label order) but the dataset's are {list(task.label_names)}. "
            "The label ids would be compared in the wrong order: fine-tune the model on this dataset, or fix its "
            "config's id2label/label2id."
        )


def evaluate_model(model: PreTrainedModel, args: TrainingArguments, eval_dataset, data_collator, task: TaskSpec):
    """Dev metrics of a model that is not being trained (the teacher), through a `ClassifierTrainer`."""
    trainer = ClassifierTrainer(
        model=model,
        args=args,
        eval_dataset=eval_dataset,
        data_collator=data_collator,
        compute_metrics=build_compute_metrics(task),
    )
    return trainer.evaluate(metric_key_prefix="eval")


def evaluate_ensemble(
    ensemble: TeacherEnsemble, args: TrainingArguments, eval_dataset, data_collator, task: TaskSpec
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Dev metrics of a `TeacherEnsemble` and of each of its teachers, from one pass: the ensemble's forward runs
    every teacher and returns their logits (`member_logits`). A teacher's `eval_loss` is its task loss averaged over
    all rows; it has no timings of its own (the pass is the ensemble's)."""
    compute_metrics = build_compute_metrics(task)
    trainer = ClassifierTrainer(model=ensemble, args=args, data_collator=data_collator,
                                compute_metrics=compute_metrics)
    output = trainer.predict(eval_dataset, metric_key_prefix="eval")
    _, member_logits = output.predictions
    labels = torch.from_numpy(output.label_ids)
    members = []
    for logits in member_logits:
        loss = task_loss(torch.from_numpy(logits), labels, ensemble.config.problem_type)
        metrics = compute_metrics(EvalPrediction(predictions=logits, label_ids=output.label_ids))
        members.append({"eval_loss": loss.item(), **{f"eval_{name}": value for name, value in metrics.items()}})
    return output.metrics, members


LATENCY_SEQ_LENGTH = 64  # tokens in each row of the closing table's timed batch


def summary_row(
    name: str, metrics: dict[str, float], task: TaskSpec, args, *, parameters: int, size_mb: float | None,
    latency_ms: float,
) -> dict[str, Any]:
    """One row of the closing table: dev metric, parameters, size on disk and milliseconds per eval batch."""
    return {
        "model": name,
        task.main_metric: metrics.get(f"eval_{task.main_metric}"),
        "parameters (M)": parameters / 1e6,
        "size on disk (MB)": size_mb,
        f"latency / batch of {args.per_device_eval_batch_size}×{LATENCY_SEQ_LENGTH} (ms)": latency_ms,
    }


def latency_batch(tokenizer, task: TaskSpec, args, device) -> dict[str, Any]:
    """The closing table's timed batch: `per_device_eval_batch_size` rows of `LATENCY_SEQ_LENGTH` real tokens."""
    return make_latency_batch(tokenizer, args.per_device_eval_batch_size, LATENCY_SEQ_LENGTH, device,
                              pair=task.is_pair)


def model_summary_row(
    name: str, model: PreTrainedModel, metrics: dict[str, float], task: TaskSpec, tokenizer, args, saved_dir
) -> dict[str, Any]:
    """The `summary_row` of a PyTorch model, timed on its device (`summary.measure_latency`); its size is that of
    the weight files in `saved_dir` (None without one)."""
    size = directory_size_mb(saved_dir) if saved_dir and Path(saved_dir).is_dir() else None
    latency = measure_latency(model, latency_batch(tokenizer, task, args, model.device))
    return summary_row(name, metrics, task, args, parameters=count_parameters(model), size_mb=size, latency_ms=latency)


def onnx_summary_rows(
    student: PreTrainedModel, export_args: ExportArguments, task: TaskSpec, tokenizer, eval_dataset, data_collator,
    args,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Export the student saved in `args.output_dir` to `<output_dir>/onnx` (`export.export_onnx`: model.onnx, with
    `--quantize dynamic` also model_quantized.onnx) and return the `summary_row`s "student (ONNX fp32)" (and
    "student (ONNX int8)"), with the metrics for the result files: `onnx_fp32_eval_*` (`onnx_int8_eval_*`) and the
    export's checks against PyTorch (`onnx_max_abs_diff_fp32`, ...).

    Each variant is scored on `eval_dataset` (`export.evaluate_onnx`, batches of `per_device_eval_batch_size` padded
    by `data_collator`, which pads `tokenizer`'s inputs) and timed by onnxruntime on the CPU on the batch the PyTorch
    rows are timed on (`export.onnx_latency`); its size is the .onnx file's. `student` is the trained model (its
    parameter count).
    """
    result = export_onnx(args.output_dir, quantize=export_args.quantize is not None)
    # A cross-tokenizer dataset holds the student's own tokenization (and token labels) as `student_*` columns beside
    # the teacher's.
    student_columns = {STUDENT_PREFIX + name: name for name in (*MODEL_INPUT_COLUMNS, "labels")
                       if STUDENT_PREFIX + name in eval_dataset.column_names}
    if student_columns:
        teacher_columns = [name for name in student_columns.values() if name in eval_dataset.column_names]
        eval_dataset = eval_dataset.remove_columns(teacher_columns).rename_columns(student_columns)
    batch = latency_batch(tokenizer, task, args, "cpu")
    compute_metrics = build_compute_metrics(task)
    variants = [("fp32", result["onnx_path"], result["size_mb_fp32"])]
    if result["quantized_path"] is not None:
        variants.append(("int8", result["quantized_path"], result["size_mb_int8"]))
    checks = ("max_abs_diff_fp32", "max_abs_diff_int8", "argmax_agreement_int8")
    metrics = {f"onnx_{key}": result[key] for key in checks if result[key] is not None}
    rows = []
    for variant, path, size in variants:
        session = load_onnx_session(path)
        values = evaluate_onnx(session, eval_dataset, data_collator, compute_metrics,
                               batch_size=args.per_device_eval_batch_size)
        metrics.update({f"onnx_{variant}_{key}": value for key, value in values.items()})
        rows.append(summary_row(f"student (ONNX {variant})", values, task, args, parameters=count_parameters(student),
                                size_mb=size, latency_ms=onnx_latency(session, batch)))
    return rows, metrics


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the rows plus a speed-up column relative to the first row (the teacher)."""
    latency_key = next(key for key in rows[0] if key.startswith("latency"))
    for row in rows:
        row["speed-up"] = rows[0][latency_key] / row[latency_key]
    return format_markdown_table(rows, list(rows[0]))

