"""BiLSTM student (Tang et al. 2019): the custom model pair, its Auto registration and `build_bilstm_student`.

Importing this package registers `hf_distill_bilstm` with `AutoConfig`, `AutoModelForSequenceClassification` and
`AutoModelForTokenClassification` in this process, and marks the classes for `save_pretrained` to write `auto_map` and
copy their two files, so a saved student loads anywhere with `trust_remote_code=True`.
"""

from pathlib import Path
from typing import Literal

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging

from ...data.word_vectors import load_word_vectors, word_vector_dim
from ...distributed import gathered_parameters
from .configuration_bilstm import BiLSTMConfig
from .modeling_bilstm import BiLSTMForSequenceClassification, BiLSTMForTokenClassification

logger = logging.get_logger(__name__)

# exist_ok: re-importing (reloads, notebooks) must not fail on the second registration.
AutoConfig.register(BiLSTMConfig.model_type, BiLSTMConfig, exist_ok=True)
AutoModelForSequenceClassification.register(BiLSTMConfig, BiLSTMForSequenceClassification, exist_ok=True)
AutoModelForTokenClassification.register(BiLSTMConfig, BiLSTMForTokenClassification, exist_ok=True)
BiLSTMConfig.register_for_auto_class()
BiLSTMForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
BiLSTMForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")

EMBEDDING_INIT_CHOICES = ("random", "teacher", "file")
# `--student_arch` of this student.
STUDENT_KIND = "bilstm"


def build_bilstm_student(
    tokenizer: PreTrainedTokenizerBase,
    *,
    num_labels: int,
    is_pair: bool,
    teacher: PreTrainedModel | None = None,
    embedding_init: Literal["random", "teacher", "file"] = "random",
    embedding_file: str | Path | None = None,
    token_classification: bool = False,
    **config_overrides,
) -> BiLSTMForSequenceClassification | BiLSTMForTokenClassification:
    """A fresh BiLSTM student over the teacher's tokenizer vocabulary (no external vocabulary needed).

    Args:
        tokenizer: the teacher's tokenizer; `vocab_size = len(tokenizer)` and its padding id.
        num_labels: logits of the task (1 = regression), per token for token classification.
        is_pair: sentence-pair task (the model splits the pair by `token_type_ids`); must be False with
            `token_classification`.
        teacher: source of the word embeddings for `embedding_init="teacher"`; its `id2label`/`label2id` are copied
            when it has `num_labels` labels.
        embedding_init: `"random"`; `"teacher"` copies the teacher's input word embeddings (`embedding_dim` becomes
            their width); `"file"` fills the rows of tokens found in `embedding_file`, others stay random.
        embedding_file: a word-vector text file, one `word v1 ... vd` per line (GloVe; a word2vec `count dim` header
            line is skipped). A token missing from it is also looked up lowercased.
        token_classification: build a `BiLSTMForTokenClassification` (a tagger, e.g. for a
            `BertForTokenClassification` teacher) instead of a `BiLSTMForSequenceClassification`. It classifies every
            position's LSTM output, so `pooling` does not apply: only its default is accepted.
        **config_overrides: other `BiLSTMConfig` fields (`embedding_dim`, `hidden_size`, `fc_hidden_size`, `pooling`,
            `dropout`, ...).
    """
    if embedding_init not in EMBEDDING_INIT_CHOICES:
        raise ValueError(
            f"`embedding_init` is {embedding_init!r}; use one of {', '.join(map(repr, EMBEDDING_INIT_CHOICES))}."
        )
    if (embedding_file is not None) != (embedding_init == "file"):
        raise ValueError(
            f"`embedding_file` is {embedding_file!r} with `embedding_init={embedding_init!r}`: pass a word-vector "
            "file exactly when `embedding_init='file'`."
        )
    if token_classification and is_pair:
        raise ValueError(
            "`is_pair` is True with `token_classification=True`, but the BiLSTM tagger labels the tokens of one "
            "sentence; sentence-pair token classification is not supported. Use a single-sentence task "
            "(`is_pair=False`)."
        )
    default_pooling = BiLSTMConfig.pooling
    if token_classification and config_overrides.get("pooling", default_pooling) != default_pooling:
        raise ValueError(
            f"`bilstm_pooling` (`pooling`) is {config_overrides['pooling']!r}, but the BiLSTM tagger "
            "(`token_classification=True`) classifies every position and pools nothing. Drop `bilstm_pooling` for "
            "token classification."
        )
    vocab_size = len(tokenizer)
    if config_overrides.get("vocab_size", vocab_size) != vocab_size:
        raise ValueError(
            f"`vocab_size` is {config_overrides['vocab_size']}, but the student reads the tokenizer's ids and the "
            f"tokenizer has {vocab_size} tokens. Drop `vocab_size`; it is set from the tokenizer."
        )
    settings = {"vocab_size": vocab_size, "pad_token_id": tokenizer.pad_token_id, "embedding_init": embedding_init}
    if teacher is not None and teacher.config.num_labels == num_labels:
        settings.update(id2label=teacher.config.id2label, label2id=teacher.config.label2id)

    teacher_embeddings = None
    if embedding_init == "teacher":
        teacher_embeddings = _teacher_word_embeddings(teacher, vocab_size)
        teacher_dim = teacher_embeddings.shape[1]
        if config_overrides.get("embedding_dim", teacher_dim) != teacher_dim:
            raise ValueError(
                f"`embedding_dim` is {config_overrides['embedding_dim']}, but `embedding_init='teacher'` copies the "
                f"teacher's {teacher_dim}-d embeddings. Drop `embedding_dim` or use `embedding_init='random'`."
            )
        settings["embedding_dim"] = teacher_dim
    elif embedding_init == "file":
        settings["embedding_init"] = f"file:{embedding_file}"

    config = BiLSTMConfig(**{**config_overrides, **settings}, num_labels=num_labels, is_pair=is_pair)
    student_class = BiLSTMForTokenClassification if token_classification else BiLSTMForSequenceClassification
    student = student_class(config)
    weight = student.get_input_embeddings().weight
    with torch.no_grad():
        if teacher_embeddings is not None:
            weight.copy_(teacher_embeddings)
            logger.info(f"BiLSTM student: copied {vocab_size} word-embedding rows from the teacher.")
        elif embedding_file is not None:
            vectors = read_word_vectors(embedding_file, tokenizer.get_vocab(), config.embedding_dim)
            for token_id, vector in vectors.items():
                weight[token_id] = vector
            logger.info(f"BiLSTM student: filled {len(vectors)}/{vocab_size} embedding rows from {embedding_file}.")
    return student


def _teacher_word_embeddings(teacher: PreTrainedModel | None, vocab_size: int) -> torch.Tensor:
    """The first `vocab_size` rows of the teacher's input word embeddings, `(vocab_size, d)`, detached."""
    if teacher is None:
        raise ValueError(
            "`teacher` is None, but `embedding_init='teacher'` copies its word embeddings. Pass the teacher."
        )
    with gathered_parameters(teacher):
        weight = teacher.get_input_embeddings().weight
        if weight.shape[0] < vocab_size:
            raise ValueError(
                f"`tokenizer` has {vocab_size} tokens, but the teacher's word embeddings have {weight.shape[0]} rows. "
                "Pass the teacher's own tokenizer."
            )
        # A copy: under ZeRO-3 the gathered weight's memory is released when the block ends.
        return weight[:vocab_size].detach().to("cpu", torch.float32, copy=True)


def read_word_vectors(path: str | Path, vocab: dict[str, int], embedding_dim: int) -> dict[int, torch.Tensor]:
    """Vectors of the vocabulary's tokens from a `word v1 ... vd` text file, read with `load_word_vectors`.

    Args:
        path: the word-vector file (UTF-8; a first `count dim` line, as word2vec writes, is skipped).
        vocab: token -> id; a token not in the file is also tried lowercased (cased tokenizers vs uncased GloVe).
        embedding_dim: the width the file must have.

    Returns:
        `{token id: (embedding_dim,) float tensor}` for the tokens found (a word listed twice: its first vector).
    """
    file_dim = word_vector_dim(path, "embedding_file")
    if file_dim != embedding_dim:
        raise ValueError(
            f"`embedding_file` {str(path)!r} has {file_dim}-d vectors, but `embedding_dim` is {embedding_dim}. "
            f"Pass `embedding_dim={file_dim}` or a {embedding_dim}-d file."
        )
    words, vectors = load_word_vectors(path, "embedding_file", keep=set(vocab) | {token.lower() for token in vocab})
    by_word: dict[str, torch.Tensor] = {}
    for word, vector in zip(words, torch.from_numpy(vectors)):
        by_word.setdefault(word, vector)
    found = {}
    for token, token_id in vocab.items():
        vector = by_word.get(token, by_word.get(token.lower()))
        if vector is not None:
            found[token_id] = vector
    return found


__all__ = [
    "BiLSTMConfig",
    "BiLSTMForSequenceClassification",
    "BiLSTMForTokenClassification",
    "build_bilstm_student",
    "read_word_vectors",
]
