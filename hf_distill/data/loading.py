"""Task datasets from a named task (GLUE, CoNLL-2003), any dataset `datasets.load_dataset` reads (a Hub id or a local
folder) or your own csv/tsv/json files, all in one standard form (`TaskSpec.features`).

```python
dataset, task = load_task_dataset("sst2")                                    # nyu-mll/glue on the Hub
dataset, task = load_task_dataset("SST-2", data_dir="glue_data/SST-2")       # original GLUE TSVs
dataset, task = load_task_dataset("conll2003", data_dir="data/conll2003")    # CoNLL-2003 text files
dataset, task = load_task_dataset(dataset_name="imdb", text_columns=["text"]) # any Hub / local dataset
dataset, task = load_task_dataset(train_file="train.csv", validation_file="dev.csv", text_columns=["text"])
```

The task type follows from the data: a text column of word lists makes token classification, a label column of lists
(names or ids) multi-label classification, float labels a regression, anything else single-label classification.
Label names come from the dataset's `ClassLabel` feature, else from the sorted training labels.
"""

import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value
from transformers.utils import logging

from .conll import CONLL2003_TASK, load_conll_dir
from .glue import GLUE_TASKS, load_glue_dir
from .task_spec import (
    AUGMENTED_COLUMN,
    CUSTOM_TASK_NAME,
    MULTI_LABEL_CLASSIFICATION,
    SEQUENCE_CLASSIFICATION,
    TOKEN_CLASSIFICATION,
    TaskSpec,
    normalize_task_name,
)

logger = logging.get_logger(__name__)

ENTITY_TAG = re.compile(r"[BIES]-.+")

__all__ = ["NAMED_TASKS", "get_task", "load_task_dataset"]

NAMED_TASKS: dict[str, TaskSpec] = {**GLUE_TASKS, CONLL2003_TASK.name: CONLL2003_TASK}
# Share of the training rows held out as the validation split when the source has none.
HELD_OUT_FRACTION = 0.1
# Split names taken as the validation split of a dataset without a named task, in this order (never "test": many
# Hub datasets, GLUE among them, hide its labels).
VALIDATION_SPLITS = ("validation", "dev", "valid")
# Text columns of a dataset without a named task when `text_columns` is not given, tried in this order.
USUAL_TEXT_COLUMNS = (
    ("tokens",),
    ("sentence1", "sentence2"),
    ("premise", "hypothesis"),
    ("question1", "question2"),
    ("question", "sentence"),
    ("text",),
    ("sentence",),
)
USUAL_LABEL_COLUMNS = ("label", "labels", "ner_tags")


def get_task(name: str) -> TaskSpec:
    """The named task `name`: a GLUE task, spelled as on the Hub ("sst2", "stsb") or as in GLUE ("SST-2", "STS-B"),
    or "conll2003"."""
    task = NAMED_TASKS.get(normalize_task_name(name))
    if task is None:
        raise ValueError(
            f"`task_name` is {name!r}, which is not a named task. Use one of {', '.join(NAMED_TASKS)} (any case, "
            "with or without '-', e.g. 'SST-2'), or leave it unset and pass `dataset_name` or "
            "`train_file`/`validation_file` (with `text_columns`) for your own data."
        )
    return task


# --------------------------------------------------------------------------------------------------------------
# Sources: files, any `datasets.load_dataset` dataset
# --------------------------------------------------------------------------------------------------------------


def _has_no_rows(path: Path) -> bool:
    """Whether a csv/tsv file has no line after its header, or a json/jsonl file no record (`datasets` fails
    with unrelated errors on such files)."""
    with path.open(encoding="utf-8-sig") as handle:
        if path.suffix.lower() in (".json", ".jsonl"):
            return "".join(handle.read(4096).split()) in ("", "[]")
        lines = (line for line in handle if line.strip())
        return next(lines, None) is None or next(lines, None) is None


def load_data_files(
    train_file: str, validation_file: str | None, cache_dir: str | None, train_argument: str = "train_file"
) -> DatasetDict:
    """Splits "train" (and "validation") of csv/tsv/json/jsonl files; `train_argument` names the first file's
    argument in errors."""
    arguments = {"train": train_argument, "validation": "validation_file"}
    data_files = {"train": str(train_file)}
    if validation_file is not None:
        data_files["validation"] = str(validation_file)
    suffixes = {Path(f).suffix.lower() for f in data_files.values()}
    if len(suffixes) != 1 or not suffixes <= {".csv", ".tsv", ".json", ".jsonl"}:
        raise ValueError(
            f"`{train_argument}`/`validation_file` are {list(data_files.values())}; expected files of one type among "
            ".csv, .tsv, .json and .jsonl. Convert them to one of these formats."
        )
    suffix = suffixes.pop()
    for split, path in data_files.items():
        if not Path(path).is_file():
            raise ValueError(f"`{arguments[split]}` is {path!r}, which is not a file. Check the path.")
        if _has_no_rows(Path(path)):
            raise ValueError(
                f"`{arguments[split]}` {path!r} holds no rows. Point it at a file with a header and data rows."
            )
    if suffix in (".json", ".jsonl"):
        return datasets.load_dataset("json", data_files=data_files, cache_dir=cache_dir)
    # keep_default_na=False keeps texts such as "null" or "NA" as text instead of turning them into NaN.
    csv_options = dict(sep="\t", quoting=csv.QUOTE_NONE) if suffix == ".tsv" else {}
    return datasets.load_dataset(
        "csv", data_files=data_files, cache_dir=cache_dir, keep_default_na=False, **csv_options
    )


def load_dataset_source(dataset_name: str, config_name: str | None, cache_dir: str | None) -> DatasetDict:
    """A Hub dataset id or local folder `datasets.load_dataset` reads, or a folder written by `save_to_disk`."""
    try:
        if (Path(dataset_name) / "dataset_dict.json").is_file():
            return datasets.load_from_disk(dataset_name)
        return datasets.load_dataset(dataset_name, config_name, cache_dir=cache_dir)
    except Exception as error:  # the library's errors name neither our arguments nor the fix
        raise ValueError(
            f"`dataset_name` {dataset_name!r} (`dataset_config_name` {config_name!r}) does not load: "
            f"{type(error).__name__}: {error}. Pass a Hub dataset id (online, or cached for offline use) or a local "
            "dataset folder, with `dataset_config_name` when the dataset has several configs."
        ) from error


def _hub_splits(loaded: DatasetDict, validation_split: str | None, where: str, seed: int) -> DatasetDict:
    """Train and validation splits of a loaded dataset: `validation_split` when the task names one, else the first of
    `VALIDATION_SPLITS` it has, else 10% of train held out."""
    if "train" not in loaded:
        raise ValueError(f"{where} has splits {list(loaded)}, but no 'train' split. Use a dataset with one.")
    if validation_split is not None and validation_split not in loaded:
        raise ValueError(
            f"{where} has splits {list(loaded)}, not {validation_split!r}. Use a copy with the Hub's split names, "
            "or `data_dir`."
        )
    split = validation_split or next((name for name in VALIDATION_SPLITS if name in loaded), None)
    if split is not None:
        return DatasetDict(train=loaded["train"], validation=loaded[split])
    return _hold_out(loaded["train"], where, seed)


def _hold_out(train: Dataset, where: str, seed: int) -> DatasetDict:
    logger.warning(f"{where} has no validation split: holding out {HELD_OUT_FRACTION:.0%} of it (seed {seed}).")
    # idx must stay the row index in the training split, so it is assigned before the rows are shuffled apart.
    train = _with_idx(train)
    if len(train) < 2:
        raise ValueError(
            f"{where} has {len(train)} training row(s), too few to hold out a validation split. Pass "
            "`validation_file` or add rows."
        )
    split = train.train_test_split(test_size=HELD_OUT_FRACTION, seed=seed)
    return DatasetDict(train=split["train"], validation=split["test"])


def _with_idx(dataset: Dataset) -> Dataset:
    if "idx" in dataset.column_names:
        return dataset
    return dataset.add_column("idx", list(range(len(dataset))))


# --------------------------------------------------------------------------------------------------------------
# Columns, task inference, standard form
# --------------------------------------------------------------------------------------------------------------


def is_list_feature(feature: Any) -> bool:
    """Whether a column holds lists (word lists, per-word tags, multi-label ids)."""
    return isinstance(feature, (List, list))


def _inner(feature: Any) -> Any:
    return feature.feature if isinstance(feature, List) else feature[0] if isinstance(feature, list) else feature


def _infer_columns(train: Dataset, where: str, text_columns, label_column) -> tuple[tuple[str, ...], str]:
    """The usual text and label column names (`USUAL_TEXT_COLUMNS`, `USUAL_LABEL_COLUMNS`), where not given."""
    columns = train.column_names
    if text_columns is None:
        text_columns = next((names for names in USUAL_TEXT_COLUMNS if set(names) <= set(columns)), None)
        if text_columns is None:
            raise ValueError(
                f"`text_columns` is not given and {where} has none of the usual text columns; its columns are "
                f"{columns}. Pass `text_columns` naming 1 or 2 of those (token classification: the column of word "
                "lists)."
            )
    if label_column is None:
        label_column = next((name for name in USUAL_LABEL_COLUMNS if name in columns), None)
        if label_column is None:
            raise ValueError(
                f"`label_column` is not given and {where} has no column {list(USUAL_LABEL_COLUMNS)}; its columns are "
                f"{columns}. Pass `label_column` naming the label column."
            )
    return tuple(text_columns), label_column


def _pick_columns(
    dataset: DatasetDict, text_columns: tuple[str, ...], label_column: str, where: dict[str, str]
) -> DatasetDict:
    """Keep the text, label (renamed `label`) and, when the source has them, `idx` and `augmented` columns of each
    split."""
    picked = {}
    for split, data in dataset.items():
        # Files of one split are loaded with the other's columns: a column the file lacks reads as all-null.
        present = [c for c in data.column_names if len(data) == 0 or data.data.column(c).null_count < len(data)]
        missing_text = [c for c in text_columns if c not in present]
        if missing_text:
            raise ValueError(
                f"`text_columns` is {list(text_columns)}, but {where[split]} has no column {missing_text}; "
                f"its columns are {present}. Pass `text_columns` naming 1 or 2 of those."
            )
        if label_column not in present:
            raise ValueError(
                f"`label_column` is {label_column!r}, but {where[split]} has no such column; its columns "
                f"are {present}. Pass `label_column` naming the label column, or add it to {where[split]}."
            )
        keep = [*text_columns, label_column, *(c for c in ("idx", AUGMENTED_COLUMN) if c in data.column_names)]
        data = data.select_columns(keep)
        picked[split] = data if label_column == "label" else data.rename_column(label_column, "label")
    return DatasetDict(picked)


def _task_type(train: Dataset, text_columns: tuple[str, ...], where: str) -> str:
    """Token classification for a text column of word lists, multi-label for a label column of lists."""
    word_lists = [column for column in text_columns if is_list_feature(train.features[column])]
    if word_lists:
        if len(text_columns) != 1:
            raise ValueError(
                f"`text_columns` is {list(text_columns)}, where {word_lists} hold word lists (token "
                "classification), which reads one column of words. Name only that column."
            )
        if not is_list_feature(train.features["label"]):
            raise ValueError(
                f"The text column {text_columns[0]!r} of {where} holds word lists (token classification), but the "
                "label column holds one value per row. Pass `label_column` naming the column of per-word tags."
            )
        return TOKEN_CLASSIFICATION
    return MULTI_LABEL_CLASSIFICATION if is_list_feature(train.features["label"]) else SEQUENCE_CLASSIFICATION


def _infer_custom_task(train: Dataset, text_columns: tuple[str, ...], where: str) -> TaskSpec:
    """A task for data without `task_name`: its type from the columns, its labels from the `ClassLabel` feature or
    the sorted training labels (float labels of a sequence task make a regression)."""
    task_type = _task_type(train, text_columns, where)
    label_feature = _inner(train.features["label"])
    metrics = {
        SEQUENCE_CLASSIFICATION: ("accuracy", "macro_f1"),
        MULTI_LABEL_CLASSIFICATION: ("micro_f1", "macro_f1", "exact_match"),
        TOKEN_CLASSIFICATION: ("f1", "precision", "recall", "accuracy"),
    }[task_type]
    if isinstance(label_feature, ClassLabel):
        label_names = tuple(label_feature.names)
    elif task_type == SEQUENCE_CLASSIFICATION and isinstance(label_feature, Value) and label_feature.dtype.startswith(
        "float"
    ):
        return TaskSpec(CUSTOM_TASK_NAME, text_columns, None, ("pearson", "spearmanr"))
    else:
        labels = train["label"]
        values = {value for row in labels for value in row} if task_type != SEQUENCE_CLASSIFICATION else set(labels)
        if None in values or "" in values or (task_type == SEQUENCE_CLASSIFICATION and not values):
            raise ValueError(f"The label column of {where} has empty cells. Fill in every label.")
        kinds = {type(value).__name__ for value in values}
        if len(kinds - {"int"}) > 1 or ("str" in kinds and len(kinds) > 1):
            raise ValueError(
                f"The label column of {where} holds values of mixed types ({sorted(kinds)}), e.g. names and ids. "
                "Use one kind: label names, or integer ids."
            )
        label_names = tuple(str(value) for value in sorted(values))
    if task_type == TOKEN_CLASSIFICATION and not are_entity_tags(label_names):
        # seqeval reads entities from the tags' B-/I-/E-/S- prefixes: on other tags (ids without names, POS tags)
        # its precision/recall/F1 would all be 0, so only the token accuracy means anything.
        metrics = ("accuracy",)
        logger.warning(
            f"The tags of {where} ({list(label_names)[:10]}) are not IOB entity tags (O, B-X, I-X, ...), so there "
            "is no entity precision/recall/F1: the runs report token accuracy only. For NER, give the tags as "
            "names (`B-PER`, ...) or as a ClassLabel column; for the Hub `conll2003` ids, pass `task_name conll2003`."
        )
    logger.info(f"Custom {task_type} task: {len(label_names)} labels {list(label_names)} (label id = position).")
    return TaskSpec(CUSTOM_TASK_NAME, text_columns, label_names, metrics, task_type=task_type)


def are_entity_tags(label_names: Sequence[str]) -> bool:
    """True for a tag set seqeval can read entities from: `O` and prefixed tags (IOB1/IOB2/IOE/IOBES), at least one
    of them an entity tag."""
    entity_tags = [name for name in label_names if name != "O"]
    return bool(entity_tags) and all(ENTITY_TAG.fullmatch(name) for name in entity_tags)


def _labels_to_ids(batch: dict[str, list], task: TaskSpec, where: str) -> dict[str, list]:
    if task.task_type == SEQUENCE_CLASSIFICATION:
        return {"label": [task.label_id(value, where) for value in batch["label"]]}
    if task.is_token_classification:
        for words, tags in zip(batch[task.text_columns[0]], batch["label"], strict=True):
            if tags is None or len(tags) != len(words):
                raise ValueError(
                    f"{where}: a row has {len(words)} words but {0 if tags is None else len(tags)} tags. Give one tag "
                    "per word."
                )
    return {"label": [[task.label_id(value, where) for value in row or ()] for row in batch["label"]]}


def _standardize(dataset: DatasetDict, task: TaskSpec, source_columns: tuple[str, ...]) -> DatasetDict:
    """Rename `source_columns` to the task's text columns, map labels to the task's ids, keep only the task columns.

    Columns are `source_columns`, `label`, maybe `augmented` (kept) and maybe `idx` (which is added as the row index
    when missing).
    """
    standardized = {}
    for split, data in dataset.items():
        data = data.rename_columns({s: t for s, t in zip(source_columns, task.text_columns, strict=True) if s != t})
        expected_type = _task_type(data, task.text_columns, f"the {split} split")
        if expected_type != task.task_type:
            raise ValueError(
                f"The {split} split reads as {expected_type}, but task {task.name!r} is {task.task_type}. Check "
                "`text_columns`/`label_column`, or the `task_name`."
            )
        label_feature = _inner(data.features["label"])
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


def _check_text_columns(source_columns: Sequence[str], label_column: str, task: TaskSpec | None) -> None:
    if len(set(source_columns)) < len(source_columns) or label_column in source_columns:
        raise ValueError(
            f"`text_columns` is {list(source_columns)} with `label_column` {label_column!r}: a column can be read "
            "once, either as a text or as the label. Name distinct text columns, other than the label's."
        )
    expected = (1, 2) if task is None else (len(task.text_columns),)
    if len(source_columns) not in expected:
        raise ValueError(
            f"`text_columns` is {list(source_columns)}; expected {' or '.join(map(str, expected))} "
            f"column name(s){'' if task is None else f' for task {task.name!r}'}."
        )


def load_task_dataset(
    task_name: str | None = None,
    *,
    data_dir: str | Path | None = None,
    train_file: str | Path | None = None,
    validation_file: str | Path | None = None,
    text_columns: list[str] | tuple[str, ...] | None = None,
    label_column: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    cache_dir: str | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 42,
) -> tuple[DatasetDict, TaskSpec]:
    """Load the train and validation splits of a task in one standard form.

    Sources, one at a time: `train_file` (+ `validation_file`); `data_dir` (a named task's original layout: GLUE
    TSVs, CoNLL-2003 text files); `dataset_name` (+ `dataset_config_name`): any Hub id or local folder that
    `datasets.load_dataset` reads, or a `save_to_disk` folder; else the named task's Hub dataset (`nyu-mll/glue`,
    `eriktks/conll2003`). `text_columns` (1 or 2 names; token classification: the one column of word lists) and
    `label_column` default to the task's, else to the usual names ("sentence", "text", "tokens", ...; "label",
    "labels", "ner_tags"). Labels may be names or ids (ids only for named tasks). Without `task_name`, a "custom"
    task is built from the data (see the module doc). A source without a validation split gives 10% of its training
    rows (shuffled with `seed`).

    Returns:
        `(dataset, task)`: splits "train" and "validation" with `task.features` (plus a bool `augmented` when the
        data has one, as `python -m hf_distill.augment` writes); `idx` is the int64 row index in the original
        split. `max_train_samples`/`max_eval_samples` keep the first rows, as in `run_glue.py`.
    """
    task = None if task_name is None else get_task(task_name)
    sources = {"train_file": train_file, "data_dir": data_dir, "dataset_name": dataset_name}
    given = [name for name, value in sources.items() if value is not None]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(f'`{name}`' for name in given)} are all set. Pass only one data source.")
    if validation_file is not None and train_file is None:
        raise ValueError(f"`validation_file` is {str(validation_file)!r} but `train_file` is None. Pass both.")
    if dataset_config_name is not None and dataset_name is None:
        raise ValueError(
            f"`dataset_config_name` is {dataset_config_name!r} but `dataset_name` is None. Pass the dataset too."
        )
    if task is None and not given:
        raise ValueError(
            f"`task_name` is None and no data source is given. Pass a named `task_name` ({', '.join(NAMED_TASKS)}), "
            "`dataset_name`, or `train_file` with `text_columns`."
        )

    if data_dir is not None:
        if task is None:
            raise ValueError(
                f"`data_dir` is {str(data_dir)!r}, but `task_name` is None: `data_dir` reads a named task's original "
                "layout. Pass `task_name`, or `dataset_name`/`train_file` for other data."
            )
        if text_columns is not None or label_column is not None:
            raise ValueError(
                f"`text_columns`/`label_column` are {text_columns}/{label_column}, but `data_dir` reads the task's "
                "own layout. Drop them, or load your data with `train_file` or `dataset_name`."
            )
        dataset = load_conll_dir(data_dir, task) if task.is_token_classification else load_glue_dir(data_dir, task)
        source_columns = task.text_columns
    else:
        if train_file is not None:
            dataset = load_data_files(train_file, validation_file, cache_dir)
            where = {"train": "`train_file`", "validation": "`validation_file`"}
            if validation_file is None:
                dataset = _hold_out(dataset["train"], f"`train_file` {str(train_file)!r}", seed)
            if text_columns is None and task is None:
                raise ValueError(
                    "`text_columns` is None, but your files need it when `task_name` is not a named task. "
                    "Pass the 1 or 2 columns holding the texts, e.g. text_columns=['sentence']."
                )
        else:
            name, config = (dataset_name, dataset_config_name) if dataset_name else task.hub_dataset
            where = {split: f"`dataset_name` {name!r} split {split!r}" for split in ("train", "validation")}
            described = f"`dataset_name` {name!r}"
            dataset = _hub_splits(
                load_dataset_source(name, config, cache_dir), task.validation_split if task else None, described, seed
            )
        if task is not None:
            text_columns = text_columns or task.text_columns
            label_column = label_column or task.label_column
        source_columns, label_column = _infer_columns(dataset["train"], where["train"], text_columns, label_column)
        _check_text_columns(source_columns, label_column, task)
        dataset = _pick_columns(dataset, source_columns, label_column, where)

    dataset["train"] = _select_first(dataset["train"], max_train_samples, "max_train_samples")
    dataset["validation"] = _select_first(dataset["validation"], max_eval_samples, "max_eval_samples")
    if len(dataset["train"]) == 0:
        raise ValueError(
            f"The training split is empty (`task_name` {task_name!r}, {given[0] if given else 'Hub'} "
            f"{str(sources[given[0]]) if given else task.hub_dataset[0]!r}). Point the loader at data with at least "
            "one training row."
        )
    if task is None:
        task = _infer_custom_task(dataset["train"], source_columns, "the training split")
    dataset = _standardize(dataset, task, source_columns)
    logger.info(
        f"Loaded task {task.name!r} ({task.task_type}): {len(dataset['train'])} train / "
        f"{len(dataset['validation'])} validation rows, labels {task.label_names}."
    )
    return dataset, task
