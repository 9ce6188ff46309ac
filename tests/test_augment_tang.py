"""Tang et al. (2019) augmentation: rates, same-tag replacement from the training unigrams, n-grams, uniqueness,
determinism and errors. A dictionary tagger stands in for spaCy."""

import random
import sys
import types
from collections import Counter

import pytest

from hf_distill.data.augment_tang import TangAugmenter
from hf_distill.data.augmentation import Augmenter

TAGS = {
    "the": "DET", "a": "DET",
    "cat": "NOUN", "dog": "NOUN", "apple": "NOUN", "pear": "NOUN",
    "runs": "VERB", "sits": "VERB", "eats": "VERB",
    "big": "ADJ", "red": "ADJ", "green": "ADJ",
    "zzz": "X",
}  # fmt: skip
# NOUN unigrams in the training texts: cat 3, dog 1. "apple", "pear", "eats", "green" never occur in them.
TRAIN_TEXTS = ["the cat runs", "a big cat sits", "the red cat runs", "a dog sits", ""]
TRAIN_BY_TAG = {"DET": {"the", "a"}, "NOUN": {"cat", "dog"}, "VERB": {"runs", "sits"}, "ADJ": {"big", "red"}}


def dict_tagger(words):
    return [TAGS[word] for word in words]


def make(**kwargs):
    settings = dict(p_mask=0.1, p_pos=0.1, p_ng=0.0, n_iter=1, pos_tagger=dict_tagger)
    return TangAugmenter(TRAIN_TEXTS, **{**settings, **kwargs})


def long_text(n_words=2000, seed=0):
    rng = random.Random(seed)
    return " ".join(rng.choice(["apple", "pear", "eats", "green"]) for _ in range(n_words))


def test_is_an_augmenter():
    assert isinstance(make(), Augmenter)


def test_mask_and_replacement_rates_are_p_mask_and_p_pos():
    """Guards against the inverted test of a public reimplementation, which masks 90% of the words."""
    words = long_text().split()
    (variant,) = make().augment(" ".join(words), random.Random(0))
    new = variant.split()
    assert len(new) == len(words)
    masked = sum(w == "[MASK]" for w in new) / len(words)
    replaced = sum(w not in ("[MASK]", old) for w, old in zip(new, words)) / len(words)
    assert abs(masked - 0.1) < 0.025, masked
    assert abs(replaced - 0.1) < 0.025, replaced
    for w, old in zip(new, words):
        assert w in ("[MASK]", old) or w in TRAIN_BY_TAG[TAGS[old]]


def test_masking_only_when_p_pos_is_zero_even_without_tagger():
    augmenter = TangAugmenter(TRAIN_TEXTS, p_mask=0.3, p_pos=0.0, p_ng=0.0, n_iter=1)
    (variant,) = augmenter.augment(long_text(), random.Random(1))
    counts = Counter(variant.split())
    assert abs(counts["[MASK]"] / 2000 - 0.3) < 0.035
    assert set(counts) <= {"[MASK]", "apple", "pear", "eats", "green"}


def test_replacement_follows_the_tags_unigram_distribution():
    text = " ".join(["apple", "eats", "green"] * 700)
    (variant,) = make(p_mask=0.0, p_pos=1.0).augment(text, random.Random(2))
    new = variant.split()
    nouns = Counter(new[0::3])
    assert set(nouns) == {"cat", "dog"}
    assert abs(nouns["cat"] / 700 - 0.75) < 0.06  # cat 3 times, dog once in the training texts
    assert set(new[1::3]) == {"runs", "sits"} and set(new[2::3]) == {"big", "red"}


def test_word_with_a_tag_unseen_in_training_is_kept():
    assert make(p_mask=0.0, p_pos=1.0, n_iter=5).augment("zzz zzz", random.Random(0)) == []


def test_ngrams_are_contiguous_pieces_of_the_modified_words():
    words = "the big red cat runs the dog sits".split()
    augmenter = make(p_mask=0.3, p_pos=0.0, p_ng=1.0, n_iter=20)
    lengths = set()
    for seed in range(20):
        for variant in augmenter.augment(" ".join(words), random.Random(seed)):
            piece = variant.split()
            lengths.add(len(piece))
            assert any(
                all(w in (words[start + i], "[MASK]") for i, w in enumerate(piece))
                for start in range(len(words) - len(piece) + 1)
            ), piece
    assert lengths == {1, 2, 3, 4, 5}


def test_ngram_length_is_capped_at_the_sentence_length():
    variants = make(p_mask=0.5, p_pos=0.0, p_ng=1.0, n_iter=50).augment("big cat", random.Random(0))
    assert variants and all(1 <= len(v.split()) <= 2 for v in variants)


def test_ngram_probability_is_p_ng():
    text = "the big red cat runs the dog sits a cat"  # 10 words: any n-gram (n <= 5) differs from the text
    augmenter = make(p_mask=0.0, p_pos=0.0, p_ng=0.25)
    rate = sum(bool(augmenter.augment(text, random.Random(seed))) for seed in range(1000)) / 1000
    assert abs(rate - 0.25) < 0.05, rate


def test_variants_are_unique_and_never_the_original():
    text = "the big cat runs"
    variants = make(p_mask=0.3, p_pos=0.3, p_ng=0.25, n_iter=20).augment(text, random.Random(0))
    assert 1 < len(variants) <= 20
    assert len(set(variants)) == len(variants) and text not in variants
    # a one-word text masked or not has only one possible new variant
    assert make(p_mask=0.5, p_pos=0.0, n_iter=20).augment("cat", random.Random(0)) == ["[MASK]"]


def test_original_is_dropped_even_with_irregular_spacing():
    assert make(p_mask=0.0, p_pos=0.0, n_iter=3).augment("  the  cat ", random.Random(0)) == []


def test_custom_mask_token():
    variants = make(p_mask=1.0, p_pos=0.0, mask_token="<mask>").augment("the cat", random.Random(0))
    assert variants == ["<mask> <mask>"]


def test_deterministic_given_the_rng():
    augmenter = make(p_mask=0.2, p_pos=0.2, p_ng=0.25, n_iter=10)
    text = "the big red cat runs the dog sits"
    first = augmenter.augment(text, random.Random(42))
    assert first == augmenter.augment(text, random.Random(42))
    assert first != augmenter.augment(text, random.Random(43))
    rng = random.Random(42)
    assert augmenter.augment(text, rng) == first and augmenter.augment(text, rng) != first


def test_empty_text():
    assert make().augment("", random.Random(0)) == []
    assert make().augment("   ", random.Random(0)) == []


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (dict(p_mask=-0.1), "`p_mask` is -0.1"),
        (dict(p_pos=1.2), "`p_pos` is 1.2"),
        (dict(p_ng=2), "`p_ng` is 2"),
        (dict(p_mask=0.6, p_pos=0.5), r"`p_mask` \+ `p_pos` is 0.6 \+ 0.5"),
        (dict(n_iter=0), "`n_iter` is 0"),
        (dict(n_iter=2.5), "`n_iter` is 2.5"),
        (dict(pos_tagger=lambda words: ["NOUN"]), "`pos_tagger` returned 1 tags for 3 words"),
    ],
)
def test_validation_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        make(**kwargs)


def _assert_spacy_help(error):
    message = str(error.value)
    assert "`p_pos`" in message and "`pos_tagger=`" in message and "`p_pos=0`" in message
    assert "pip install spacy && python -m spacy download en_core_web_sm" in message


def test_missing_spacy_gives_install_instructions(monkeypatch):
    monkeypatch.setitem(sys.modules, "spacy", None)  # import spacy -> ImportError
    with pytest.raises(ValueError) as error:
        TangAugmenter(TRAIN_TEXTS)
    _assert_spacy_help(error)
    assert TangAugmenter(TRAIN_TEXTS, p_pos=0.0).augment("", random.Random(0)) == []


def _fake_spacy(load):
    spacy = types.ModuleType("spacy")
    tokens = types.ModuleType("spacy.tokens")

    class Doc(list):
        def __init__(self, vocab, words):
            super().__init__(types.SimpleNamespace(text=w, tag_=TAGS[w].lower()) for w in words)

    tokens.Doc = Doc
    spacy.tokens = tokens
    spacy.load = load
    return spacy, tokens


def test_missing_spacy_model_gives_install_instructions(monkeypatch):
    def load(name, disable=()):
        raise OSError(f"[E050] Can't find model '{name}'.")

    spacy, tokens = _fake_spacy(load)
    monkeypatch.setitem(sys.modules, "spacy", spacy)
    monkeypatch.setitem(sys.modules, "spacy.tokens", tokens)
    with pytest.raises(ValueError, match="E050") as error:
        TangAugmenter(TRAIN_TEXTS)
    _assert_spacy_help(error)


class IdentityPipeline:
    """A loaded fake model: the fake Doc already carries the tags."""

    vocab = None

    def __call__(self, doc):
        return doc


def test_default_tagger_tags_the_given_words_with_spacy(monkeypatch):
    loaded = []

    def load(name, disable=()):
        loaded.append(name)
        return IdentityPipeline()

    spacy, tokens = _fake_spacy(load)
    monkeypatch.setitem(sys.modules, "spacy", spacy)
    monkeypatch.setitem(sys.modules, "spacy.tokens", tokens)
    augmenter = TangAugmenter(TRAIN_TEXTS, p_mask=0.0, p_pos=1.0, p_ng=0.0, n_iter=1)
    assert loaded == ["en_core_web_sm"]
    (variant,) = augmenter.augment("apple eats", random.Random(0))
    first, second = variant.split()
    assert first in {"cat", "dog"} and second in {"runs", "sits"}
