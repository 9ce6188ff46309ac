"""The one reader of word-vector text files (GloVe's `word v1 ... vd` per line; a word2vec `count dim` first line is
skipped), for TinyBERT's augmentation (`WordEmbeddings.from_glove`) and the BiLSTM student's embedding rows.

Light on purpose (numpy only): the student builders import it without the augmentation code.
"""

from collections.abc import Container
from pathlib import Path

import numpy as np

__all__ = ["load_word_vectors", "word_vector_dim"]


def load_word_vectors(
    path: str | Path,
    argument: str,
    *,
    keep: Container[str] | None = None,
    max_words: int | None = None,
    hint: str = "",
) -> tuple[list[str], np.ndarray]:
    """Stream a word-vector text file (GloVe files are GBs), parsing the vectors of the words kept only.

    Args:
        path: the file, UTF-8 (undecodable bytes are replaced). Every line has the width of the first vector line;
            words containing spaces (GloVe 840B has a few) are supported: the last `d` fields are the vector.
        argument: the caller's parameter, named in the errors (e.g. `"glove_file"`).
        keep: read only these words (None: every word).
        max_words: stop after this many kept words (None: read the whole file).
        hint: appended to the error for a missing file (another way to get vectors, for instance).

    Returns:
        The kept words in file order (repeats included) and their `(N, d)` float32 vectors.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"`{argument}` is {str(path)!r}, which is not a file. Pass the path of a GloVe-format text file such as "
            f"glove.6B.300d.txt.{' ' + hint if hint else ''}"
        )
    words, rows, dim = [], [], None
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line_number, line in enumerate(lines, start=1):
            if max_words is not None and len(words) >= max_words:
                break
            fields = line.rstrip().split(" ")
            if line_number == 1 and len(fields) == 2 and all(field.isdigit() for field in fields):
                continue  # word2vec's `count dim` header
            dim = len(fields) - 1 if dim is None else dim
            if len(fields) <= dim or dim < 1:
                raise ValueError(
                    f"`{argument}` {str(path)!r} line {line_number} has {len(fields)} fields, expected a word and "
                    f"{max(dim, 1)} numbers. Check that the file is a GloVe text file."
                )
            word = " ".join(fields[:-dim])
            if keep is not None and word not in keep:
                continue
            try:
                rows.append(np.asarray(fields[-dim:], dtype=np.float32))
            except ValueError as error:
                raise ValueError(f"`{argument}` {str(path)!r} line {line_number}: {error}.") from error
            words.append(word)
    if dim is None:
        raise ValueError(f"`{argument}` {str(path)!r} is empty. Pass a GloVe text file with at least one word.")
    return words, np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)


def word_vector_dim(path: str | Path, argument: str) -> int:
    """The width `d` of the vectors in a word-vector file, from its first vector line."""
    return load_word_vectors(path, argument, max_words=1)[1].shape[1]
