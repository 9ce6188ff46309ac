"""Data augmentation over `datasets`: the `Augmenter` protocol and `augment_dataset`, which applies any augmenter.

An *augmenter* is any object with `augment(text, rng) -> list[str]` returning new, unique variants of one sentence
(never the sentence itself), and optionally `augment_batch(texts, rngs)` doing the same for many sentences at once:
TinyBERT's (`augment_tinybert.TinyBertAugmenter`) or Tang et al.'s (`augment_tang.TangAugmenter`). `augment_dataset`
keeps every original row and copies the other columns onto the variants.
"""

import random
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import datasets
import torch

from .task_spec import AUGMENTED_COLUMN


@runtime_checkable
class Augmenter(Protocol):
    """What `augment_dataset` needs: new unique variants of one sentence, never the sentence itself."""

    def augment(self, text: str, rng: random.Random) -> list[str]: ...


def augment_texts(augmenter: Augmenter, texts: Sequence[str], rngs: Sequence[random.Random]) -> list[list[str]]:
    """`augmenter.augment` of each text with its rng, through `augmenter.augment_batch(texts, rngs)` when it has one
    (an augmenter whose model batches across sentences), else one text at a time."""
    augment_batch = getattr(augmenter, "augment_batch", None)
    if augment_batch is not None:
        return augment_batch(texts, rngs)
    return [augmenter.augment(text, rng) for text, rng in zip(texts, rngs, strict=True)]


def augment_dataset(
    dataset: datasets.Dataset,
    text_columns: Sequence[str],
    augmenter: Augmenter,
    *,
    seed: int = 42,
    num_proc: int = 1,
    batch_size: int = 256,
    desc: str = "Augmenting",
) -> datasets.Dataset:
    """Each example followed by its variants, other columns (label, idx, ...) copied, plus a bool `augmented` column.

    With several text columns (pair tasks) each column is augmented in turn with the others unchanged. Each example
    draws from its own `random.Random` seeded by `(seed, example index)`, so the output depends only on `seed`,
    not on `num_proc` or batching. `batch_size` examples at a time go to the augmenter's `augment_batch` when it
    has one (TinyBERT's: one set of masked-LM forwards for all of them). With `num_proc > 1` the augmenter is pickled
    into worker processes.
    """
    if not text_columns:
        raise ValueError("`text_columns` is empty. Name the column(s) holding the text, e.g. ['sentence'].")
    missing = [column for column in text_columns if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"`text_columns` {list(text_columns)} includes {missing}, which the dataset lacks. Its columns are "
            f"{dataset.column_names}."
        )
    if AUGMENTED_COLUMN in dataset.column_names:
        raise ValueError(
            f"`dataset` already has an `{AUGMENTED_COLUMN}` column, so it is augmented already. Augment the original "
            "data instead."
        )
    if not isinstance(augmenter, Augmenter):
        raise ValueError(f"`augmenter` ({type(augmenter).__name__}) has no `augment(text, rng)` method.")

    def expand(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        if num_proc > 1:
            # Forked workers hang on entering the parent's OpenMP thread pool (libgomp does not survive fork);
            # single-threaded torch never enters it, and one thread per process is the right split of cores anyway.
            torch.set_num_threads(1)
        out = {name: [] for name in [*batch, AUGMENTED_COLUMN]}

        def emit(row: dict, augmented: bool) -> None:
            for name, value in row.items():
                out[name].append(value)
            out[AUGMENTED_COLUMN].append(augmented)

        rows = [{name: values[position] for name, values in batch.items()} for position in range(len(indices))]
        rngs = [random.Random(f"{seed}:{index}") for index in indices]
        # Column by column, each example's rng draws its first column's variants before its second's.
        variants = {column: augment_texts(augmenter, [row[column] for row in rows], rngs) for column in text_columns}
        for position, row in enumerate(rows):
            emit(row, False)
            for column in text_columns:
                for variant in variants[column][position]:
                    emit({**row, column: variant}, True)
        return out

    features = datasets.Features({**dataset.features, AUGMENTED_COLUMN: datasets.Value("bool")})
    return dataset.map(
        expand,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        num_proc=num_proc if num_proc > 1 else None,
        features=features,
        desc=desc,
    )
