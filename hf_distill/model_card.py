"""The model card (README.md) of a distilled student: the Hub's YAML metadata, then the teacher, the method and its
settings, teacher-vs-student dev results with parameters and speed-up, and how to load the student.

`DistillationTrainer.create_model_card` writes it (so `trainer.push_to_hub()` publishes it from any code), from a
template (`templates/model_card.md`) through `huggingface_hub`'s `ModelCard`; `run_distill.py` adds the task, the
closing table and the data source to what the trainer knows.
"""

import os
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData, metadata_load
from torch import nn
from transformers import TrainingArguments

from .data import TaskSpec
from .methods import get_method
from .summary import format_cell, format_markdown_table

# Marks cards written here; also a Hub tag that lists the models made with this library.
MODEL_CARD_TAG = "hf_distill"

_GLUE_DATASETS = ("nyu-mll/glue", "glue")


def hub_model_id(name_or_path: str | None) -> str | None:
    """`name_or_path` when it names a Hub repo; None for a local folder, which the Hub's `base_model` cannot hold."""
    if not name_or_path or os.path.isdir(name_or_path):
        return None
    return name_or_path


def is_distillation_card(path: str | os.PathLike) -> bool:
    """Whether `path` is a model card of this library (`build_model_card`: it carries `MODEL_CARD_TAG`)."""
    if not Path(path).is_file():
        return False
    return MODEL_CARD_TAG in (metadata_load(path) or {}).get("tags", [])


def _student_facts(student: nn.Module) -> dict[str, Any]:
    """What the card says about the saved student: its base for an unmerged adapter, and its architecture."""
    peft_config = getattr(student, "peft_config", None)
    config = student.config
    return {
        "adapter_base": peft_config["default"].base_model_name_or_path if peft_config else None,
        # `register_for_auto_class` marks the class; `auto_map` reaches the config only when it is saved.
        "custom_code": bool(getattr(config, "auto_map", None) or getattr(student, "_auto_class", None)),
        "model_type": config.model_type,
        "layers": getattr(config, "num_hidden_layers", None),
        "executed_layers": getattr(config, "num_executed_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "layer_ids": getattr(config, "distillation_layer_ids", None) or getattr(config, "teacher_layer_ids", None),
    }


def _metadata(
    *,
    facts: dict[str, Any],
    method: str,
    base_model: str | None,
    task: TaskSpec,
    dataset: str | None,
    summary_rows: list[dict[str, Any]],
    model_name: str,
    extra_tags: tuple[str, ...],
) -> ModelCardData:
    metric = task.main_metric
    student_value = summary_rows[-1].get(metric)
    eval_results = None
    if dataset is not None and student_value is not None:
        eval_results = [
            EvalResult(
                task_type=task.pipeline_tag,
                dataset_type=dataset,
                dataset_name=f"GLUE {task.name.upper()}" if dataset in _GLUE_DATASETS else dataset,
                dataset_config=task.name if dataset in _GLUE_DATASETS else None,
                dataset_split=task.validation_split,
                metric_type=metric,
                metric_value=float(student_value),
            )
        ]
    tags = ["distillation", method, MODEL_CARD_TAG, *(["glue"] if dataset in _GLUE_DATASETS else [])]
    tags += ["custom_code"] * facts["custom_code"] + ["lora"] * bool(facts["adapter_base"]) + list(extra_tags)
    return ModelCardData(
        base_model=hub_model_id(facts["adapter_base"]) or base_model,
        datasets=[dataset] if dataset else None,
        metrics=list(task.metric_names),
        tags=list(dict.fromkeys(tags)),
        pipeline_tag=task.pipeline_tag,
        library_name="peft" if facts["adapter_base"] else "transformers",
        model_name=model_name,
        eval_results=eval_results,
    )


def _usage(model_name: str, facts: dict[str, Any], task: TaskSpec) -> str:
    token_task = task.is_token_classification
    if facts["adapter_base"]:
        peft_class = "AutoPeftModelForTokenClassification" if token_task else "AutoPeftModelForSequenceClassification"
        return (
            f"```python\nfrom peft import {peft_class}\n\n"
            f'model = {peft_class}.from_pretrained("{model_name}")\n```'
        )
    remote = ", trust_remote_code=True" if facts["custom_code"] else ""
    if token_task:
        call = [f'tagger = pipeline("token-classification", model="{model_name}", '
                f'aggregation_strategy="simple"{remote})', 'tagger("George Washington went to Washington")']
    else:
        call = [f'classifier = pipeline("text-classification", model="{model_name}"{remote})',
                'classifier("a gripping, beautifully acted film")']
    lines = ["```python", "from transformers import pipeline", "", *call, "```"]
    if facts["custom_code"]:
        lines.append(
            "\nThe student is a custom architecture whose code (`configuration_*.py`, `modeling_*.py`) ships in this "
            "repository: `trust_remote_code=True` runs it; `hf_distill` itself is not needed."
        )
    return "\n".join(lines)


def _architecture(facts: dict[str, Any]) -> str:
    parts = [f"`{facts['model_type']}`"]
    if facts["layers"] is not None:
        layers = f"{facts['layers']} layers"
        if facts["executed_layers"] and facts["executed_layers"] != facts["layers"]:
            layers += f" stored, {facts['executed_layers']} executed (shared parameters)"
        parts.append(layers)
    if facts["hidden_size"] is not None:
        parts.append(f"hidden size {facts['hidden_size']}")
    if facts["layer_ids"] is not None:
        parts.append(f"initialised from teacher layers {facts['layer_ids']} (0-based)")
    return ", ".join(parts)


def _training_settings(args: TrainingArguments) -> dict[str, Any]:
    length = {"max_steps": args.max_steps} if args.max_steps > 0 else {"num_train_epochs": args.num_train_epochs}
    return {
        "learning_rate": args.learning_rate,
        **length,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "processes": args.world_size,
        "warmup_steps": args.warmup_steps,
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "seed": args.seed,
    }


def _settings_table(settings: dict[str, Any]) -> str:
    rows = [
        {"setting": f"`{name}`", "value": "–" if value is None else f"`{value}`"} for name, value in settings.items()
    ]
    return format_markdown_table(rows, ["setting", "value"])


TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card.md"


def build_model_card(
    *,
    student: nn.Module,
    teacher: str,
    args: TrainingArguments,
    task: TaskSpec,
    summary_rows: list[dict[str, Any]],
    export_rows: list[dict[str, Any]] | None = None,
    dataset: str | None = None,
    local_data: str | None = None,
    base_model: str | None = None,
    model_name: str | None = None,
    tags: tuple[str, ...] = (),
    training_rows: dict[str, int] | None = None,
) -> ModelCard:
    """The model card of a distilled student: `huggingface_hub`'s `ModelCard` from `templates/model_card.md`, with
    the Hub's YAML metadata (`ModelCardData`).

    Args:
        student: the saved student (a plain model, or an unmerged `PeftModel`, whose card names its base).
        teacher: the teacher as given to the run (Hub id or local folder).
        args: the run's `DistillationConfig`; its `method_settings()` is the settings table.
        task: the task trained and evaluated on.
        summary_rows: the results table: `run_distill.py`'s closing rows, teacher first and student last, each with
            the main metric, `parameters (M)`, size, latency and `speed-up` (as `cli.summary_table` fills them); or
            the student's row alone (a card written from a trainer that never evaluated the teacher).
        export_rows: rows of the student's exports (`run_distill.py --export onnx`: "student (ONNX fp32)", ...),
            with the same columns, shown after `summary_rows` in the results table.
        dataset: the Hub dataset id the run loaded, for the `datasets` metadata (e.g. "nyu-mll/glue"); None when
            it read local files, which the Hub's metadata cannot name.
        local_data: the local files or folder the run read instead (`data_dir`, `train_file`), named in the text.
        base_model: the Hub id for `base_model`; default: `teacher` when it is a Hub id (a local folder is omitted).
        model_name: the repo name shown in the card and in the usage snippet; default: `args.hub_model_id`, else
            the output folder's name.
        tags: extra Hub tags.
        training_rows: `{"labelled": n, "transfer": m}` training rows (`cli.training_row_counts`), named in the text.
    """
    method = args.method
    model_name = model_name or args.hub_model_id or Path(args.output_dir).name
    facts = _student_facts(student)
    metadata = _metadata(
        facts=facts,
        method=method,
        base_model=base_model or hub_model_id(teacher),
        task=task,
        dataset=dataset,
        summary_rows=summary_rows,
        model_name=model_name,
        extra_tags=tags,
    )
    teacher_link = f"[{teacher}](https://huggingface.co/{teacher})" if hub_model_id(teacher) else f"`{teacher}`"
    if dataset:
        data_source = f"`{dataset}` ({task.name})"
    else:
        data_source = f"the task `{task.name}` from local files" + (f" (`{local_data}`)" if local_data else "")
    if training_rows:
        data_source += f": {training_rows['labelled']} labelled training rows"
        if training_rows["transfer"]:
            data_source += f" and {training_rows['transfer']} unlabelled transfer rows the teacher labelled"
    student_row, metric = summary_rows[-1], task.main_metric
    student_value, student_size = format_cell(student_row.get(metric)), format_cell(student_row.get("parameters (M)"))
    if len(summary_rows) > 1:
        teacher_row = summary_rows[0]
        headline = (
            f"On the {task.validation_split} split the student scores {metric} {student_value} against the "
            f"teacher's {format_cell(teacher_row.get(metric))}, with {student_size}M parameters (teacher: "
            f"{format_cell(teacher_row.get('parameters (M)'))}M) and a measured speed-up of "
            f"{format_cell(student_row.get('speed-up'))}× in batch latency."
        )
        results_note = (
            "Latency is the mean time of a forward pass over one evaluation batch, measured after training on the "
            "machine that ran the distillation; the speed-up is relative to the teacher."
        )
    else:
        headline = f"On the {task.validation_split} split the student scores {metric} {student_value}, with " \
            f"{student_size}M parameters."
        results_note = "The teacher was not evaluated in this run (`run_distill.py` adds it, with latencies)."
    if export_rows:
        results_note += (
            " The ONNX rows are this repository's `onnx/model.onnx` (`onnx/model_quantized.onnx`: dynamic int8 "
            "weights), run with onnxruntime on the CPU, their size that of the .onnx file; `onnx/` holds the config "
            "and tokenizer too, the layout Optimum's `ORTModelFor…` classes read."
        )
    return ModelCard.from_template(
        metadata,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        introduction=(
            f"A student model distilled with `{method}` from the teacher {teacher_link} on {data_source}, using "
            "`hf_distill` (a Hugging Face `Trainer` extension for knowledge distillation). "
            + get_method(method).summary
        ),
        headline=headline,
        results_table=format_markdown_table(summary_rows + list(export_rows or ()), list(student_row)),
        results_note=results_note,
        architecture=_architecture(facts),
        method_settings=_settings_table(args.method_settings()),
        training_settings=_settings_table(_training_settings(args)),
        usage=_usage(model_name, facts, task),
    )


def render_model_card(**kwargs) -> str:
    """The README.md text of `build_model_card(**kwargs)`."""
    return str(build_model_card(**kwargs))
