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


# Student-side columns of a cross-tokenizer dataset: the student's own tokenization of the same text, and for token
# classification the student's per-token labels.
STUDENT_PREFIX = "student_"
MODEL_INPUT_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")
STUDENT_LABELS = STUDENT_PREFIX + "labels"


def tokenize_for_student(
    tokenized: DatasetDict,
    raw: DatasetDict,
    student_tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec,
    max_seq_length: int,
    teacher_tokenizer: PreTrainedTokenizerBase | None = None,
) -> DatasetDict:
    """`tokenized` (the teacher's tokenization of `raw`) plus the student's tokenization of the same rows, as
    `student_input_ids`, `student_attention_mask` (and `student_token_type_ids`): one row holds both sides of one
    example, so shuffling, epochs, the teacher cache and sharding keep them together.

    Token classification (`teacher_tokenizer` required) aligns the two sides by word: each labels the first sub-token
    of each word (`student_labels` on the student's side), and a word only one side kept (its truncation cut it, or
    its tokenizer gave it no token) is unlabelled on both. The i-th labelled token of a row is then the same word on
    both sides, so per-token terms compare the teacher's and the student's prediction for one word.
    """
    student_side = tokenize_dataset(raw, student_tokenizer, task, max_seq_length)
    if task.is_token_classification:
        if teacher_tokenizer is None:
            raise ValueError(
                f"Task {task.name!r} is token classification: aligning the student's tokens with the teacher's by "
                "word needs the teacher's tokenizer. Pass `teacher_tokenizer`."
            )
        tokenized, student_side = _aligned_by_word(tokenized, student_side, raw, teacher_tokenizer,
                                                   student_tokenizer, task)
    combined = {}
    for split, data in tokenized.items():
        inputs = [name for name in (*MODEL_INPUT_COLUMNS, "labels") if name in student_side[split].column_names]
        if not task.is_token_classification:  # one label per row: the teacher side's `labels` serve both
            inputs.remove("labels")
        student_inputs = student_side[split].select_columns(inputs)
        student_inputs = student_inputs.rename_columns({name: STUDENT_PREFIX + name for name in inputs})
        combined[split] = concatenate_datasets([data, student_inputs], axis=1)
    return DatasetDict(combined)


def _aligned_by_word(teacher_side: DatasetDict, student_side: DatasetDict, raw: DatasetDict, teacher_tokenizer,
                     student_tokenizer, task: TaskSpec) -> tuple[DatasetDict, DatasetDict]:
    """Both sides' `labels` with the words the other side does not label set to -100 (see `tokenize_for_student`)."""
    aligned = ({}, {})
    for split in teacher_side:
        sentences = list(raw[split][task.text_columns[0]])  # word lists, as the tokenizers take them
        sides = ((teacher_side[split], teacher_tokenizer, "teacher"),
                 (student_side[split], student_tokenizer, "student"))
        labels = [list(data["labels"]) for data, _, _ in sides]
        labelled_words = [_labelled_words(tokenizer, sentences, side_labels, split, side)
                          for (_, tokenizer, side), side_labels in zip(sides, labels, strict=True)]
        for k, (data, _, _) in enumerate(sides):
            kept = [set(theirs) for theirs in labelled_words[1 - k]]
            masked = []
            for row_labels, own, row_kept in zip(labels[k], labelled_words[k], kept, strict=True):
                word = iter(own)  # the word of each labelled token, in order
                masked.append([label if label == IGNORE_INDEX or next(word) in row_kept else IGNORE_INDEX
                               for label in row_labels])
            aligned[k][split] = data.remove_columns("labels").add_column(
                "labels", masked, feature=List(Value("int64")))
    return DatasetDict(aligned[0]), DatasetDict(aligned[1])


def _labelled_words(tokenizer, sentences: list[list[str]], labels: list[list[int]], split: str,
                    side: str) -> list[list[int]]:
    """Per row, the words whose first sub-token `labels` labels, in order. Truncation keeps a prefix of the tokens,
    so they are the first words of the untruncated tokenization, as many as the row has labels."""
    encoded = tokenizer(sentences, is_split_into_words=True)
    words = []
    for row, row_labels in enumerate(labels):
        ids = [word for word in encoded.word_ids(row) if word is not None]
        first_token_words = [word for i, word in enumerate(ids) if i == 0 or word != ids[i - 1]]
        labelled = sum(label != IGNORE_INDEX for label in row_labels)
        if labelled > len(first_token_words):
            raise ValueError(
                f"Row {row} of the {split!r} split labels more tokens than it has words on the {side}'s side: "
                "`label_all_tokens` labels every sub-token, which another tokenizer splits differently. Drop "
                "`label_all_tokens` for a student with its own tokenizer."
            )
        words.append(first_token_words[:labelled])
    return words
