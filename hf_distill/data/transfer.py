"""Unlabelled transfer data: rows of text the teacher labels, added to a task's training split.

Distillation pays most where labels are scarce and text is not (Tang et al.'s transfer set): a teacher fine-tuned
on few labels, a student trained on many more sentences. `load_transfer_dataset` reads text-only rows (a file or
any `datasets.load_dataset` source) into the task's standard form, marked `transfer` with a placeholder label;
`add_transfer_rows` appends them to the training split. The trainer's hard-label CE skips them; every distillation
term reads them (through the teacher cache too, which labels each once).
"""

from pathlib import Path

from datasets import Dataset, DatasetDict, Value, concatenate_datasets
from transformers.utils import logging

from .loading import is_list_feature, load_data_files, load_dataset_source
from .task_spec import AUGMENTED_COLUMN, TRANSFER_COLUMN, TaskSpec

logger = logging.get_logger(__name__)

__all__ = ["add_transfer_rows", "load_transfer_dataset"]


def load_transfer_dataset(
    task: TaskSpec,
    *,
    transfer_file: str | Path | None = None,
    transfer_dataset_name: str | None = None,
    transfer_dataset_config_name: str | None = None,
    transfer_split: str = "train",
    text_columns: tuple[str, ...] | None = None,
    max_transfer_samples: int | None = None,
    cache_dir: str | None = None,
) -> Dataset:
    """The transfer rows in `task`'s standard form: its text columns (read from `text_columns`, default the task's),
    a placeholder `label`, `idx` (the row's index in the transfer source) and `transfer` (True).

    Sources, one of: `transfer_file` (csv/tsv/json/jsonl), or `transfer_dataset_name` (+ config, `transfer_split`).
    Other columns (a label the source may have) are not read. `max_transfer_samples` keeps the first rows.
    """
    if (transfer_file is None) == (transfer_dataset_name is None):
        raise ValueError(
            f"`transfer_file` is {transfer_file!r} and `transfer_dataset_name` {transfer_dataset_name!r}; pass "
            "exactly one of them to add unlabelled transfer rows."
        )
    if transfer_file is not None:
        where = f"`transfer_file` {str(transfer_file)!r}"
        rows = load_data_files(transfer_file, None, cache_dir, train_argument="transfer_file")["train"]
    else:
        where = f"`transfer_dataset_name` {transfer_dataset_name!r}"
        loaded = load_dataset_source(transfer_dataset_name, transfer_dataset_config_name, cache_dir)
        if transfer_split not in loaded:
            raise ValueError(f"{where} has splits {list(loaded)}, not {transfer_split!r}. Pass `transfer_split`.")
        rows = loaded[transfer_split]
    source_columns = tuple(text_columns or task.text_columns)
    missing = [column for column in source_columns if column not in rows.column_names]
    if missing:
        raise ValueError(
            f"{where} has columns {rows.column_names}, but not the text column(s) {missing} the task reads. Give "
            "the transfer data the labelled data's text columns (`text_columns`)."
        )
    if max_transfer_samples is not None:
        rows = rows.select(range(min(len(rows), max_transfer_samples)))
    rows = rows.select_columns(list(source_columns))
    rows = rows.rename_columns({s: t for s, t in zip(source_columns, task.text_columns, strict=True) if s != t})
    words = task.is_token_classification
    if any(is_list_feature(rows.features[column]) != words for column in task.text_columns):
        kind = "word lists" if words else "one text per row"
        raise ValueError(f"{where}: task {task.name!r} ({task.task_type}) reads {kind} from {list(source_columns)}.")
    if len(rows) == 0:
        raise ValueError(f"{where} holds no rows. Point it at data with text rows, or drop it.")
    text_column = task.text_columns[0]
    rows = rows.map(
        lambda batch: {"label": [task.placeholder_label(text) for text in batch[text_column]]},
        batched=True, desc="Transfer rows",
    )
    rows = rows.add_column("idx", list(range(len(rows)))).add_column(TRANSFER_COLUMN, [True] * len(rows))
    features = task.features.copy()
    features[TRANSFER_COLUMN] = Value("bool")
    return rows.select_columns(list(features)).cast(features)


def add_transfer_rows(dataset: DatasetDict, transfer: Dataset) -> DatasetDict:
    """`dataset` whose training split ends with the `transfer` rows; every training row gets the `transfer` flag
    (and `augmented`, when the labelled rows have it)."""
    train = dataset["train"]
    train = train.add_column(TRANSFER_COLUMN, [False] * len(train))
    if AUGMENTED_COLUMN in train.column_names:
        transfer = transfer.add_column(AUGMENTED_COLUMN, [False] * len(transfer))
    transfer = transfer.cast(train.features)
    logger.info(f"Training on {len(train)} labelled rows and {len(transfer)} unlabelled transfer rows.")
    return DatasetDict({**dataset, "train": concatenate_datasets([train, transfer])})
