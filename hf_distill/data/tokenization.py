"""Tokenise a task dataset (`load_task_dataset`'s standard form) into model inputs and `labels`.

- sequence classification: `labels` the label id (a float score for regression);
- multi-label classification: `labels` a multi-hot float vector `(num_labels,)`, as transformers' BCE loss reads;
- token classification: `labels` one id per sub-token, the word's tag on its first sub-token and -100 on the others
  and on special tokens, as transformers' `run_ner.py` does; `label_all_tokens` tags every sub-token instead
  (continuation pieces of a `B-X` word get `I-X`). Words past `max_seq_length` are truncated away with their tags.
"""

from datasets import DatasetDict, List, Value, concatenate_datasets
from transformers import PreTrainedTokenizerBase

from .task_spec import TaskSpec

__all__ = ["IGNORE_INDEX", "align_word_labels", "tokenize_dataset"]

IGNORE_INDEX = -100


def align_word_labels(word_ids: list[int | None], word_labels: list[int], label_all_tokens: bool,
                      inside_of: dict[int, int]) -> list[int]:
    """Per-token labels from per-word ones: `word_ids` maps each token to its word (None for special tokens).
    `inside_of` maps a `B-X` id to the `I-X` id, for the continuation pieces `label_all_tokens` labels."""
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(IGNORE_INDEX)
        elif word != previous:
            labels.append(word_labels[word])
        elif label_all_tokens:
            labels.append(inside_of.get(word_labels[word], word_labels[word]))
        else:
            labels.append(IGNORE_INDEX)
        previous = word
    return labels


def _inside_of(label_names: tuple[str, ...]) -> dict[int, int]:
    """`{id of B-X: id of I-X}` over the IOB tags of `label_names`."""
    ids = {name: i for i, name in enumerate(label_names)}
    return {i: ids[f"I-{name[2:]}"] for name, i in ids.items() if name.startswith("B-") and f"I-{name[2:]}" in ids}


def tokenize_dataset(
    dataset: DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec,
    max_seq_length: int,
    label_all_tokens: bool = False,
) -> DatasetDict:
    """Tokenise the task's text columns (truncated to `max_seq_length`, unpadded: the collator pads per batch).

    Returns the splits with `input_ids`, `attention_mask` (and `token_type_ids` if the tokenizer makes them),
    `labels` (from `label`, see the module doc) and `idx`; the text columns are removed.
    """
    if max_seq_length > tokenizer.model_max_length:
        raise ValueError(
            f"`max_seq_length` is {max_seq_length}, but the tokenizer accepts at most {tokenizer.model_max_length} "
            f"tokens. Use `max_seq_length` <= {tokenizer.model_max_length}."
        )
    if label_all_tokens and not task.is_token_classification:
        raise ValueError(
            f"`label_all_tokens` is set, but task {task.name!r} is {task.task_type}: it labels the sub-tokens of "
            "each word of a token-classification task. Drop `label_all_tokens`."
        )
    text_columns = list(task.text_columns)

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(*(batch[column] for column in text_columns), truncation=True, max_length=max_seq_length)

    def tokenize_words(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch[text_columns[0]], is_split_into_words=True, truncation=True,
                            max_length=max_seq_length)
        encoded["label"] = [
            align_word_labels(encoded.word_ids(row), word_labels, label_all_tokens, inside_of)
            for row, word_labels in enumerate(batch["label"])
        ]
        return encoded

    def multi_hot(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenize(batch)
        encoded["label"] = [[float(i in set(ids)) for i in range(task.num_labels)] for ids in batch["label"]]
        return encoded

    if task.is_token_classification:
        if not tokenizer.is_fast:
            raise ValueError(
                f"Token classification needs a fast tokenizer (its word ids align the tags), but {type(tokenizer)} "
                "is not one. Use the model's fast tokenizer (`AutoTokenizer` gives it when the model has one)."
            )
        inside_of = _inside_of(task.label_names)
        function = tokenize_words
    else:
        function = multi_hot if task.is_multi_label else tokenize
    tokenized = dataset.map(function, batched=True, remove_columns=text_columns, desc="Tokenizing")
    if task.is_token_classification:  # tag ids and -100 now, no longer values of the tags' ClassLabel
        tokenized = tokenized.cast_column("label", List(Value("int64")))
    elif task.is_multi_label:  # 0/1 per label now, the targets of a binary cross-entropy
        tokenized = tokenized.cast_column("label", List(Value("float32")))
    return tokenized.rename_column("label", "labels")


# Student-side columns of a cross-tokenizer dataset: the student's own tokenization of the same text.
STUDENT_PREFIX = "student_"
MODEL_INPUT_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")


def tokenize_for_student(
    tokenized: DatasetDict,
    raw: DatasetDict,
    student_tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec,
    max_seq_length: int,
) -> DatasetDict:
    """`tokenized` (the teacher's tokenization of `raw`) plus the student's tokenization of the same rows, as
    `student_input_ids`, `student_attention_mask` (and `student_token_type_ids`): one row holds both sides of one
    example, so shuffling, epochs, the teacher cache and sharding keep them together.

    Token classification is refused: its per-token predictions would need the two tokenizations aligned by word.
    """
    if task.is_token_classification:
        raise ValueError(
            f"Task {task.name!r} is token classification, whose per-token terms compare teacher and student token by "
            "token, which another tokenizer splits differently. Use the teacher's tokenizer for the student."
        )
    student_side = tokenize_dataset(raw, student_tokenizer, task, max_seq_length)
    combined = {}
    for split, data in tokenized.items():
        inputs = [name for name in MODEL_INPUT_COLUMNS if name in student_side[split].column_names]
        student_inputs = student_side[split].select_columns(inputs)
        student_inputs = student_inputs.rename_columns({name: STUDENT_PREFIX + name for name in inputs})
        combined[split] = concatenate_datasets([data, student_inputs], axis=1)
    return DatasetDict(combined)
