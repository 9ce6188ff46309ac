"""The one word-vector file reader, shared by TinyBERT's augmentation and the BiLSTM student."""

import numpy as np
import pytest

from hf_distill.data.word_vectors import load_word_vectors, word_vector_dim


def test_reads_glove_and_word2vec_files_alike(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("the 1 2\nnew york 3 4\ncat 5 6\n", encoding="utf-8")
    word2vec = tmp_path / "w2v.txt"
    word2vec.write_text("3 2\n" + glove.read_text(encoding="utf-8"), encoding="utf-8")
    for path in (glove, word2vec):
        words, vectors = load_word_vectors(path, "x")
        assert words == ["the", "new york", "cat"]  # a word with a space: the vector is the last d fields
        np.testing.assert_array_equal(vectors, np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float32))
        assert word_vector_dim(path, "x") == 2
    words, vectors = load_word_vectors(glove, "x", keep={"cat"})
    assert words == ["cat"] and vectors.shape == (1, 2)
    assert load_word_vectors(glove, "x", max_words=2)[0] == ["the", "new york"]


def test_errors_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match=r"`embedding_file` is .*not a file.*Try this\."):
        load_word_vectors(tmp_path / "missing.txt", "embedding_file", hint="Try this.")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="`glove_file` .* is empty"):
        load_word_vectors(tmp_path / "empty.txt", "glove_file")
    (tmp_path / "nan.txt").write_text("good 1 x\n")
    with pytest.raises(ValueError, match="`glove_file` .* line 1: could not convert"):
        load_word_vectors(tmp_path / "nan.txt", "glove_file")
