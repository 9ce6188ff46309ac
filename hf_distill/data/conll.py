"""CoNLL-2003 English NER in its original text layout (`train.txt`, `valid.txt`, `test.txt`).

One token per line, the word first and its tag last (the original four-column layout and the two-column one both
read), a blank line between sentences, `-DOCSTART-` lines between documents (not sentences: skipped). Tags are
IOB2 and get the Hub's `conll2003` ids (`CONLL2003_LABELS`), so local and Hub data agree.
"""

from pathlib import Path

from datasets import Dataset, DatasetDict

from .task_spec import TOKEN_CLASSIFICATION, TaskSpec

__all__ = ["CONLL2003_LABELS", "CONLL2003_TASK", "read_conll_file", "load_conll_dir"]

# The Hub's `conll2003` label order (ids 0-8).
CONLL2003_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
# Entity-level F1 (seqeval, the conlleval definition) first: what the literature reports.
CONLL2003_TASK = TaskSpec(
    "conll2003",
    ("tokens",),
    CONLL2003_LABELS,
    ("f1", "precision", "recall", "accuracy"),
    task_type=TOKEN_CLASSIFICATION,
    hub_dataset=("eriktks/conll2003", None),
    label_column="ner_tags",
)
_SPLIT_FILES = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
_DOCUMENT_START = "-DOCSTART-"


def read_conll_file(path: str | Path, task: TaskSpec = CONLL2003_TASK) -> Dataset:
    """Sentences of one CoNLL file: columns `tokens` (words), `label` (tag ids in `task.label_names`) and `idx`."""
    path, label_names = Path(path), task.label_names
    sentences: list[list[str]] = []
    tags: list[list[int]] = []
    words: list[str] = []
    word_tags: list[int] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()  # also drops the trailing space every line of the shared copy ends with
            if not fields or fields[0] == _DOCUMENT_START:
                if words:
                    sentences.append(words)
                    tags.append(word_tags)
                words, word_tags = [], []
                continue
            if len(fields) < 2:
                raise ValueError(
                    f"`data_dir` file {str(path)!r}, line {line_number}: {line.strip()!r} has no tag. CoNLL lines "
                    "hold a word and its tag (and optionally POS and chunk columns between them)."
                )
            tag = fields[-1]
            if tag not in label_names:
                raise ValueError(
                    f"`data_dir` file {str(path)!r}, line {line_number}: the tag {tag!r} is not one of the task's "
                    f"labels {list(label_names)}. Use IOB2 CoNLL-2003 tags."
                )
            words.append(fields[0])
            word_tags.append(label_names.index(tag))
    if words:
        sentences.append(words)
        tags.append(word_tags)
    return Dataset.from_dict(
        {"tokens": sentences, "label": tags, "idx": list(range(len(sentences)))}, features=task.features
    )


def load_conll_dir(data_dir: str | Path, task: TaskSpec = CONLL2003_TASK) -> DatasetDict:
    """`train.txt` and `valid.txt` (and `test.txt` when present) of a CoNLL-2003 folder, as splits train,
    validation (and test)."""
    folder = Path(data_dir)
    missing = [name for split, name in _SPLIT_FILES.items() if split != "test" and not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"`data_dir` is {str(data_dir)!r}, which has no {missing}: a CoNLL-2003 folder holds 'train.txt' and "
            "'valid.txt' (and 'test.txt'). Point `data_dir` at that folder."
        )
    return DatasetDict(
        {
            split: read_conll_file(folder / name, task)
            for split, name in _SPLIT_FILES.items()
            if (folder / name).is_file()
        }
    )
