"""GLUE tasks and their datasets, read from the Hub, an original GLUE folder or your own csv/tsv/json files.

Whatever the source, `load_task_dataset` returns the same thing: a `DatasetDict` with splits `train` and
`validation` whose columns are the Hub's text columns, `label` (a `ClassLabel` in the Hub's label order, or a
float32 score for STS-B) and `idx` (the row's index in its original split, which keys the teacher-output cache).
So a teacher fine-tuned on the Hub version reads a GLUE TSV folder with the same label ids, and vice versa.

```python
dataset, task = load_task_dataset("sst2")                                  # nyu-mll/glue on the Hub
dataset, task = load_task_dataset("SST-2", data_dir="glue_data/SST-2")     # original GLUE TSVs
dataset, task = load_task_dataset(train_file="train.csv", validation_file="dev.csv", text_columns=["text"])
dataset = tokenize_dataset(dataset, tokenizer, task.text_columns, max_seq_length=128)
```
"""

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["GLUE_TASKS", "TaskSpec", "get_task", "load_task_dataset", "tokenize_dataset"]

CUSTOM_TASK_NAME = "custom"
# Marks rows made by augmentation (hf_distill.augment): they keep their source's label, which the text may no longer
# have, so the trainer trains the hard-label CE on the other rows only (`DistillationConfig.train_ce_on_augmented`).
AUGMENTED_COLUMN = "augmented"
# Share of `train_file` held out as the validation split when no `validation_file` is given.
HELD_OUT_FRACTION = 0.1


@dataclass(frozen=True)
class TaskSpec:
    """What a sequence-classification task looks like once loaded.

    Attributes:
        name: the `nyu-mll/glue` config name ("sst2", "mnli", ...), or "custom" for your own files.
        text_columns: one or two text column names, as on the Hub.
        label_names: label names in the Hub's `ClassLabel` order (label id = position), or None for regression.
        metric_names: the GLUE metrics of the task; the first one is the main metric used for model selection.
        validation_split: the Hub split evaluated on ("validation", or "validation_matched" for MNLI).
    """

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None
    metric_names: tuple[str, ...]
    validation_split: str = "validation"

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def main_metric(self) -> str:
        """The metric to select checkpoints on (`metric_for_best_model`) and to report in one number."""
        return self.metric_names[0]

    def label_config(self) -> dict[str, Any]:
        """`from_pretrained`/config kwargs that give a model this task's labels, in the dataset's order."""
        if self.label_names is None:
            return {"num_labels": 1, "problem_type": "regression"}
        return {
            "num_labels": self.num_labels,
            "id2label": dict(enumerate(self.label_names)),
            "label2id": {name: i for i, name in enumerate(self.label_names)},
        }

    @property
    def features(self) -> Features:
        """The features every split of `load_task_dataset` has, whatever the source."""
        label = Value("float32") if self.label_names is None else ClassLabel(names=list(self.label_names))
        texts = {column: Value("string") for column in self.text_columns}
        return Features({**texts, "label": label, "idx": Value("int64")})


_PAIR = ("sentence1", "sentence2")
_CLASSIFICATION = ("accuracy",)
_F1_ACCURACY = ("f1", "accuracy")

GLUE_TASKS: dict[str, TaskSpec] = {
    "cola": TaskSpec("cola", ("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",)),
    "sst2": TaskSpec("sst2", ("sentence",), ("negative", "positive"), _CLASSIFICATION),
    "mrpc": TaskSpec("mrpc", _PAIR, ("not_equivalent", "equivalent"), _F1_ACCURACY),
    "qqp": TaskSpec("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), _F1_ACCURACY),
    "stsb": TaskSpec("stsb", _PAIR, None, ("pearson", "spearmanr")),
    "mnli": TaskSpec(
        "mnli",
        ("premise", "hypothesis"),
        ("entailment", "neutral", "contradiction"),
        _CLASSIFICATION,
        validation_split="validation_matched",
    ),
    "qnli": TaskSpec("qnli", ("question", "sentence"), ("entailment", "not_entailment"), _CLASSIFICATION),
    "rte": TaskSpec("rte", _PAIR, ("entailment", "not_entailment"), _CLASSIFICATION),
    "wnli": TaskSpec("wnli", _PAIR, ("not_entailment", "entailment"), _CLASSIFICATION),
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


def normalize_task_name(name: str) -> str:
    """A GLUE task name as the Hub spells it: "SST-2", "sst_2" and "sst2" all give "sst2"."""
    return name.lower().replace("-", "").replace("_", "")


def get_task(name: str) -> TaskSpec:
    """The GLUE task called `name`, spelled as on the Hub ("sst2", "stsb") or as in GLUE ("SST-2", "STS-B")."""
    task = GLUE_TASKS.get(normalize_task_name(name))
    if task is None:
        raise ValueError(
            f"`task_name` is {name!r}, which is not a GLUE task. Use one of {', '.join(GLUE_TASKS)} (any case, "
            "with or without '-', e.g. 'SST-2'), or leave it unset and pass `train_file`/`validation_file` "
            "with `text_columns` for your own data."
        )
    return task


def _label_to_id(value: Any, task: TaskSpec, where: str) -> int | float:
    """Map one raw label to the task's label id: a label name, or (GLUE tasks only) an integer id.

    Custom tasks are named after their raw labels (label 3 is called "3" but may have id 0), so there a label is
    only ever looked up by name.
    """
    if task.label_names is None:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{where}: the label {value!r} is not a number, but task {task.name!r} is a regression "
                "task with float scores. Fix the label column."
            ) from None
    name = value if isinstance(value, str) else str(value)
    if name in task.label_names:
        return task.label_names.index(name)
    ids_allowed = task.name != CUSTOM_TASK_NAME
    if ids_allowed and isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    elif ids_allowed and isinstance(value, float) and value.is_integer():
        value = int(value)
    if ids_allowed and isinstance(value, Integral) and not isinstance(value, bool) and 0 <= value < task.num_labels:
        return int(value)
    expected = f"one of the label names {list(task.label_names)}"
    if ids_allowed:
        expected += f" or an id in [0, {task.num_labels - 1}]"
    raise ValueError(
        f"{where}: the label {value!r} of task {task.name!r} is not {expected}. Fix the labels, or the `task_name`."
    )


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
            columns["label"].append(_label_to_id(row[positions[-1]], task, f"{path}, line {rows.line_num}"))
    if skipped:
        logger.warning(f"Skipped {skipped} row(s) of {path} with missing fields.")
    columns["idx"] = list(range(len(columns["label"])))
    return Dataset.from_dict(columns, features=task.features)


def _load_glue_dir(data_dir: str | Path, task: TaskSpec) -> DatasetDict:
    train, validation = _resolve_glue_folder(data_dir, task)
    return DatasetDict(train=_read_glue_tsv(train, task), validation=_read_glue_tsv(validation, task))


# --------------------------------------------------------------------------------------------------------------
# Your own csv / tsv / json files, and the Hub
# --------------------------------------------------------------------------------------------------------------


def _has_no_rows(path: Path) -> bool:
    """Whether a csv/tsv file has no line after its header, or a json/jsonl file no record (`datasets` fails
    with unrelated errors on such files)."""
    with path.open(encoding="utf-8-sig") as handle:
        if path.suffix.lower() in (".json", ".jsonl"):
            return "".join(handle.read(4096).split()) in ("", "[]")
        lines = (line for line in handle if line.strip())
        return next(lines, None) is None or next(lines, None) is None


def _load_files(train_file: str, validation_file: str | None, cache_dir: str | None, seed: int) -> DatasetDict:
    data_files = {"train": str(train_file)}
    if validation_file is not None:
        data_files["validation"] = str(validation_file)
    suffixes = {Path(f).suffix.lower() for f in data_files.values()}
    if len(suffixes) != 1 or not suffixes <= {".csv", ".tsv", ".json", ".jsonl"}:
        raise ValueError(
            f"`train_file`/`validation_file` are {list(data_files.values())}; expected files of one type among "
            ".csv, .tsv, .json and .jsonl. Convert them to one of these formats."
        )
    suffix = suffixes.pop()
    for split, path in data_files.items():
        if not Path(path).is_file():
            raise ValueError(f"`{split}_file` is {path!r}, which is not a file. Check the path.")
        if _has_no_rows(Path(path)):
            raise ValueError(f"`{split}_file` {path!r} holds no rows. Point it at a file with a header and data rows.")
    if suffix in (".json", ".jsonl"):
        loaded = datasets.load_dataset("json", data_files=data_files, cache_dir=cache_dir)
    else:
        # keep_default_na=False keeps texts such as "null" or "NA" as text instead of turning them into NaN.
        csv_options = dict(sep="\t", quoting=csv.QUOTE_NONE) if suffix == ".tsv" else {}
        loaded = datasets.load_dataset(
            "csv", data_files=data_files, cache_dir=cache_dir, keep_default_na=False, **csv_options
        )
    if validation_file is None:
        logger.warning(
            f"No `validation_file` given: holding out {HELD_OUT_FRACTION:.0%} of `train_file` "
            f"(seed {seed}) as the validation split."
        )
        # idx must stay the row index in train_file, so it is assigned before the rows are shuffled apart.
        train = _with_idx(loaded["train"])
        if len(train) < 2:
            raise ValueError(
                f"`train_file` {str(train_file)!r} has {len(train)} row(s), too few to hold out a "
                "validation split. Pass `validation_file` or add rows."
            )
        split = train.train_test_split(test_size=HELD_OUT_FRACTION, seed=seed)
        loaded = DatasetDict(train=split["train"], validation=split["test"])
    return loaded


def _load_hub(dataset_name: str, task: TaskSpec, cache_dir: str | None) -> DatasetDict:
    loaded = datasets.load_dataset(dataset_name, task.name, cache_dir=cache_dir)
    if task.validation_split not in loaded:
        raise ValueError(
            f"`dataset_name` {dataset_name!r} config {task.name!r} has splits {list(loaded)}, not "
            f"{task.validation_split!r}. Use a GLUE copy with the Hub's split names, or `data_dir`."
        )
    return DatasetDict(train=loaded["train"], validation=loaded[task.validation_split])


def _with_idx(dataset: Dataset) -> Dataset:
    if "idx" in dataset.column_names:
        return dataset
    return dataset.add_column("idx", list(range(len(dataset))))


def _infer_custom_task(train: Dataset, text_columns: tuple[str, ...]) -> TaskSpec:
    """A task for files without `task_name`: float labels make a regression, anything else the sorted labels."""
    label_feature = train.features["label"]
    if isinstance(label_feature, Value) and label_feature.dtype.startswith("float"):
        return TaskSpec(CUSTOM_TASK_NAME, text_columns, None, ("pearson", "spearmanr"))
    values = set(train["label"])
    if None in values or "" in values:
        raise ValueError("`label_column` of `train_file` has empty cells. Fill in every label.")
    # Numbers sort numerically and before strings, so 2 < 10 and a mixed column still sorts.
    label_names = tuple(str(value) for value in sorted(values, key=lambda value: (isinstance(value, str), value)))
    logger.info(f"Custom task: {len(label_names)} labels {list(label_names)} (label id = position).")
    return TaskSpec(CUSTOM_TASK_NAME, text_columns, label_names, ("accuracy",))


def _pick_columns(dataset: DatasetDict, text_columns: tuple[str, ...], label_column: str) -> DatasetDict:
    """Keep the text, label (renamed `label`) and, when the file has them, `idx` and `augmented` columns of each
    split."""
    picked = {}
    for split, data in dataset.items():
        where = "`train_file`" if split == "train" else "`validation_file`"
        # Files of one split are loaded with the other's columns: a column the file lacks reads as all-null.
        present = [c for c in data.column_names if len(data) == 0 or data.data.column(c).null_count < len(data)]
        missing_text = [c for c in text_columns if c not in present]
        if missing_text:
            raise ValueError(
                f"`text_columns` is {list(text_columns)}, but {where} has no column {missing_text}; "
                f"its columns are {present}. Pass `text_columns` naming 1 or 2 of those."
            )
        if label_column not in present:
            raise ValueError(
                f"`label_column` is {label_column!r}, but {where} has no such column; its columns "
                f"are {present}. Pass `label_column` naming the label column, or add it to that file."
            )
        keep = [*text_columns, label_column, *(c for c in ("idx", AUGMENTED_COLUMN) if c in data.column_names)]
        data = data.select_columns(keep)
        picked[split] = data if label_column == "label" else data.rename_column(label_column, "label")
    return DatasetDict(picked)


def _labels_to_ids(batch: dict[str, list], task: TaskSpec, where: str) -> dict[str, list]:
    return {"label": [_label_to_id(value, task, where) for value in batch["label"]]}


def _standardize(dataset: DatasetDict, task: TaskSpec, source_columns: tuple[str, ...]) -> DatasetDict:
    """Rename `source_columns` to the task's text columns, map labels to the task's ids, keep only the task columns.

    Columns are `source_columns`, `label`, maybe `augmented` (kept) and maybe `idx` (which is added as the row index
    when missing).
    """
    standardized = {}
    for split, data in dataset.items():
        data = data.rename_columns({s: t for s, t in zip(source_columns, task.text_columns, strict=True) if s != t})
        label_feature = data.features["label"]
        if isinstance(label_feature, ClassLabel):
            if task.label_names is None or tuple(label_feature.names) != task.label_names:
                raise ValueError(
                    f"The {split} labels are a ClassLabel with names {label_feature.names}, but task {task.name!r} "
                    f"expects {None if task.label_names is None else list(task.label_names)}. Use a dataset with "
                    "the task's label order or fix `task_name`."
                )
        else:
            data = data.map(
                _labels_to_ids,
                batched=True,
                fn_kwargs={"task": task, "where": f"{split} split"},
                features=Features({**data.features, "label": task.features["label"]}),
                desc=f"Mapping {split} labels",
            )
        features = task.features
        if AUGMENTED_COLUMN in data.column_names:
            features = Features({**features, AUGMENTED_COLUMN: Value("bool")})
        data = _with_idx(data).select_columns(list(features))
        standardized[split] = data if data.features == features else data.cast(features)
    return DatasetDict(standardized)


def _select_first(dataset: Dataset, max_samples: int | None, argument: str) -> Dataset:
    if max_samples is None:
        return dataset
    if max_samples < 1:
        raise ValueError(f"`{argument}` is {max_samples}; expected a positive number of rows, or None for all.")
    return dataset.select(range(min(len(dataset), max_samples)))


def load_task_dataset(
    task_name: str | None = None,
    *,
    data_dir: str | Path | None = None,
    train_file: str | Path | None = None,
    validation_file: str | Path | None = None,
    text_columns: list[str] | tuple[str, ...] | None = None,
    label_column: str | None = None,
    dataset_name: str = "nyu-mll/glue",
    cache_dir: str | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 42,
) -> tuple[DatasetDict, TaskSpec]:
    """Load the train and validation splits of a GLUE task or of your own files, in one standard form.

    Sources, by priority: `train_file` (+ `validation_file`), else `data_dir` (original GLUE TSV layout), else the
    Hub (`dataset_name`, config `task_name`). Files take `text_columns` (1 or 2 names; default: the task's) and
    `label_column` (default "label"); labels may be names or ids. Without `task_name`, a "custom" task is built from
    the sorted training labels, or a regression when the labels are floats. Without `validation_file`, 10% of the
    training rows (shuffled with `seed`) become the validation split.

    Returns:
        `(dataset, task)`: splits "train" and "validation" with columns `task.text_columns + ("label", "idx")`
        (plus a bool `augmented` when the files have one, as `python -m hf_distill.augment` writes),
        `label` a `ClassLabel(names=task.label_names)` (float32 for regression), `idx` the int64 row index in the
        original split. `max_train_samples`/`max_eval_samples` keep the first rows, as in `run_glue.py`.
    """
    task = None if task_name is None else get_task(task_name)
    if train_file is None:
        if validation_file is not None:
            raise ValueError(f"`validation_file` is {str(validation_file)!r} but `train_file` is None. Pass both.")
        if text_columns is not None or label_column is not None:
            raise ValueError(
                f"`text_columns`/`label_column` are {text_columns}/{label_column}, but they only apply "
                "to `train_file`/`validation_file`. Drop them, or load your data from files."
            )
        if task is None:
            raise ValueError(
                "`task_name` is None and no `train_file` is given. Pass a GLUE `task_name` "
                f"({', '.join(GLUE_TASKS)}), or `train_file` with `text_columns`."
            )
        if data_dir is not None:
            dataset = _load_glue_dir(data_dir, task)
        else:
            dataset = _load_hub(dataset_name, task, cache_dir)
        source_columns = task.text_columns
    else:
        if data_dir is not None:
            raise ValueError(
                f"Both `data_dir` ({str(data_dir)!r}) and `train_file` ({str(train_file)!r}) are "
                "set. Pass only one data source."
            )
        if text_columns is None and task is None:
            raise ValueError(
                "`text_columns` is None, but your files need it when `task_name` is not a GLUE task. "
                "Pass the 1 or 2 columns holding the texts, e.g. text_columns=['sentence']."
            )
        source_columns = tuple(text_columns) if text_columns is not None else task.text_columns
        if len(set(source_columns)) < len(source_columns) or (label_column or "label") in source_columns:
            raise ValueError(
                f"`text_columns` is {list(source_columns)} with `label_column` {label_column or 'label'!r}: a column "
                "can be read once, either as a text or as the label. Name distinct text columns, other than the "
                "label's."
            )
        expected = (1, 2) if task is None else (len(task.text_columns),)
        if len(source_columns) not in expected:
            raise ValueError(
                f"`text_columns` is {list(source_columns)}; expected {' or '.join(map(str, expected))} "
                f"column name(s){'' if task is None else f' for task {task.name!r}'}."
            )
        dataset = _load_files(train_file, validation_file, cache_dir, seed)
        dataset = _pick_columns(dataset, source_columns, label_column or "label")

    dataset["train"] = _select_first(dataset["train"], max_train_samples, "max_train_samples")
    dataset["validation"] = _select_first(dataset["validation"], max_eval_samples, "max_eval_samples")
    if len(dataset["train"]) == 0:
        raise ValueError(
            f"The training split is empty (`task_name` {task_name!r}, `data_dir` {data_dir!r}, "
            f"`train_file` {train_file!r}). Point the loader at data with at least one training row."
        )
    if task is None:
        task = _infer_custom_task(dataset["train"], source_columns)
    dataset = _standardize(dataset, task, source_columns)
    logger.info(
        f"Loaded task {task.name!r}: {len(dataset['train'])} train / {len(dataset['validation'])} "
        f"validation rows, labels {task.label_names}."
    )
    return dataset, task


def tokenize_dataset(
    dataset: DatasetDict, tokenizer: PreTrainedTokenizerBase, text_columns: Sequence[str], max_seq_length: int
) -> DatasetDict:
    """Tokenise the 1 or 2 `text_columns` (truncated to `max_seq_length`, unpadded: the collator pads per batch).

    Returns the splits with `input_ids`, `attention_mask` (and `token_type_ids` if the tokenizer makes them),
    `labels` (renamed from `label`) and `idx`; the text columns are removed.
    """
    if max_seq_length > tokenizer.model_max_length:
        raise ValueError(
            f"`max_seq_length` is {max_seq_length}, but the tokenizer accepts at most {tokenizer.model_max_length} "
            f"tokens. Use `max_seq_length` <= {tokenizer.model_max_length}."
        )
    text_columns = list(text_columns)

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(*(batch[column] for column in text_columns), truncation=True, max_length=max_seq_length)

    tokenized = dataset.map(tokenize, batched=True, remove_columns=text_columns, desc="Tokenizing")
    return tokenized.rename_column("label", "labels")
