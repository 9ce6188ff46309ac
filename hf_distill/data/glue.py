"""GLUE tasks: their specs (Hub column names and label order) and a reader of the original GLUE TSV folders.

A GLUE folder reads into the Hub's form (`TaskSpec.features`), so a teacher fine-tuned on `nyu-mll/glue` reads a
GLUE TSV folder with the same label ids, and vice versa.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, DatasetDict
from transformers.utils import logging

from .task_spec import TaskSpec

logger = logging.get_logger(__name__)

__all__ = ["GLUE_HUB_ID", "GLUE_TASKS", "load_glue_dir"]

GLUE_HUB_ID = "nyu-mll/glue"


def _glue(name: str, text_columns, label_names, metric_names, **kwargs) -> TaskSpec:
    return TaskSpec(name, text_columns, label_names, metric_names, hub_dataset=(GLUE_HUB_ID, name), **kwargs)


_PAIR = ("sentence1", "sentence2")
_CLASSIFICATION = ("accuracy",)
_F1_ACCURACY = ("f1", "accuracy")

GLUE_TASKS: dict[str, TaskSpec] = {
    "cola": _glue("cola", ("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",)),
    "sst2": _glue("sst2", ("sentence",), ("negative", "positive"), _CLASSIFICATION),
    "mrpc": _glue("mrpc", _PAIR, ("not_equivalent", "equivalent"), _F1_ACCURACY),
    "qqp": _glue("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), _F1_ACCURACY),
    "stsb": _glue("stsb", _PAIR, None, ("pearson", "spearmanr")),
    "mnli": _glue(
        "mnli",
        ("premise", "hypothesis"),
        ("entailment", "neutral", "contradiction"),
        _CLASSIFICATION,
        validation_split="validation_matched",
    ),
    "qnli": _glue("qnli", ("question", "sentence"), ("entailment", "not_entailment"), _CLASSIFICATION),
    "rte": _glue("rte", _PAIR, ("entailment", "not_entailment"), _CLASSIFICATION),
    "wnli": _glue("wnli", _PAIR, ("not_entailment", "entailment"), _CLASSIFICATION),
}


@dataclass(frozen=True)
class _TsvLayout:
    """Where a task's columns sit in the original GLUE distribution (`glue_data/<folder>/*.tsv`)."""

    folder: str
    text_sources: tuple[str, ...]  # file columns holding task.text_columns, in the same order
    label_source: str
    column_names: tuple[str, ...] | None = None  # for header-less files (CoLA)
    validation_file: str = "dev.tsv"


_TSV_LAYOUTS: dict[str, _TsvLayout] = {
    "cola": _TsvLayout("CoLA", ("sentence",), "label", column_names=("source", "label", "author_label", "sentence")),
    "sst2": _TsvLayout("SST-2", ("sentence",), "label"),
    "mrpc": _TsvLayout("MRPC", ("#1 String", "#2 String"), "Quality"),
    "qqp": _TsvLayout("QQP", ("question1", "question2"), "is_duplicate"),
    "stsb": _TsvLayout("STS-B", _PAIR, "score"),
    "mnli": _TsvLayout("MNLI", _PAIR, "gold_label", validation_file="dev_matched.tsv"),
    "qnli": _TsvLayout("QNLI", ("question", "sentence"), "label"),
    "rte": _TsvLayout("RTE", _PAIR, "label"),
    "wnli": _TsvLayout("WNLI", _PAIR, "label"),
}


# --------------------------------------------------------------------------------------------------------------
# Original GLUE TSV folders
# --------------------------------------------------------------------------------------------------------------


def _resolve_glue_folder(data_dir: str | Path, task: TaskSpec) -> tuple[Path, Path]:
    """`data_dir` may be the task folder (glue_data/SST-2) or the GLUE root that holds it (glue_data)."""
    layout = _TSV_LAYOUTS[task.name]
    for folder in (Path(data_dir), Path(data_dir) / layout.folder):
        train, validation = folder / "train.tsv", folder / layout.validation_file
        if train.is_file() and validation.is_file():
            return train, validation
    raise ValueError(
        f"`data_dir` is {str(data_dir)!r}, but neither it nor its subfolder {layout.folder!r} holds both "
        f"'train.tsv' and {layout.validation_file!r}, the files of task {task.name!r} in the GLUE layout. "
        f"Point `data_dir` at the folder with those files (e.g. glue_data/{layout.folder})."
    )


def _read_glue_tsv(path: Path, task: TaskSpec) -> Dataset:
    """Read one original GLUE file: tab-separated, never quoted (MRPC and RTE sentences contain `"`)."""
    layout = _TSV_LAYOUTS[task.name]
    # utf-8-sig drops the byte-order mark MRPC files start with, which would otherwise glue onto "Quality".
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = list(layout.column_names) if layout.column_names else next(rows, [])
        missing = [c for c in (*layout.text_sources, layout.label_source) if c not in header]
        if missing:
            raise ValueError(
                f"`data_dir` file {str(path)!r} has columns {header}, but task {task.name!r} in the "
                f"GLUE layout needs {missing} too. Use the original GLUE files for this task."
            )
        positions = [header.index(c) for c in (*layout.text_sources, layout.label_source)]
        columns: dict[str, list] = {column: [] for column in (*task.text_columns, "label")}
        skipped = 0
        for row in rows:
            if len(row) <= max(positions):
                # Rows cut short (the original QQP train file has a few) are skipped, as the GLUE processors do.
                skipped += 1
                continue
            for column, position in zip(task.text_columns, positions[:-1], strict=True):
                columns[column].append(row[position])
            columns["label"].append(task.label_id(row[positions[-1]], f"{path}, line {rows.line_num}"))
    if skipped:
        logger.warning(f"Skipped {skipped} row(s) of {path} with missing fields.")
    columns["idx"] = list(range(len(columns["label"])))
    return Dataset.from_dict(columns, features=task.features)


def load_glue_dir(data_dir: str | Path, task: TaskSpec) -> DatasetDict:
    train, validation = _resolve_glue_folder(data_dir, task)
    return DatasetDict(train=_read_glue_tsv(train, task), validation=_read_glue_tsv(validation, task))
