"""Data augmentation of Tang et al. (2019), "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks".

Per word draw X ~ U[0, 1]: X < p_mask -> `[MASK]`; p_mask <= X < p_mask + p_pos -> a random word with the same
part-of-speech tag, drawn from that tag's unigram distribution over the training texts; else unchanged. Then, with
probability p_ng, keep only a random n-gram, n uniform in [1, 5]. Repeated n_iter times; duplicates and the original
are dropped. The teacher labels every variant (the transfer set).

A public reimplementation inverts the masking test and masks 90% of the words; `tests/test_augment_tang.py` checks
the rate.
"""

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

from transformers.utils import logging

logger = logging.get_logger(__name__)

PosTagger = Callable[[list[str]], list[str]]

MAX_NGRAM = 5
SPACY_MODEL = "en_core_web_sm"
SPACY_INSTALL = f"pip install spacy && python -m spacy download {SPACY_MODEL}"


def spacy_pos_tagger() -> PosTagger:
    """A tagger returning spaCy's fine-grained (Penn Treebank) tags, which keep inflection (VBD vs VBZ), for words
    already split on whitespace (spaCy must not re-tokenise them, or tags and words would misalign)."""
    try:
        import spacy
        from spacy.tokens import Doc

        nlp = spacy.load(SPACY_MODEL, disable=["parser", "ner", "lemmatizer"])
    except (ImportError, OSError) as err:
        raise ValueError(
            f"`p_pos` > 0 needs a part-of-speech tagger, and the default one needs spaCy with `{SPACY_MODEL}` "
            f"({err}). Install it with `{SPACY_INSTALL}`, pass `pos_tagger=` a callable mapping a list of words to "
            "a list of tags, or set `p_pos=0` to turn POS-guided replacement off."
        ) from err

    def tag(words: list[str]) -> list[str]:
        return [token.tag_ for token in nlp(Doc(nlp.vocab, words=words))]

    return tag


class TangAugmenter:
    """Tang et al.'s masking, POS-guided replacement and n-gram sampling.

    Args:
        train_texts: the task's training texts; their words, by tag, are the replacement vocabulary.
        p_mask: probability of replacing a word by `mask_token`.
        p_pos: probability of replacing a word by a same-tag word (needs a tagger; 0 turns it off).
        p_ng: probability of keeping only a random n-gram, n in [1, 5], of the modified words.
        n_iter: attempts per text; `augment` returns at most this many variants.
        mask_token: the student tokenizer's mask token.
        pos_tagger: words -> one tag per word; defaults to spaCy's `en_core_web_sm` (`spacy_pos_tagger`). A word
            whose tag never occurs in `train_texts` is left unchanged.

    Paper defaults: p_mask = p_pos = 0.1, p_ng = 0.25, n_iter = 20 (SST-2) or 10 (MNLI, QQP).
    """

    # `python -m hf_distill.augment --method` of these rules.
    rules_name = "tang"

    def __init__(
        self,
        train_texts: Sequence[str],
        *,
        p_mask: float = 0.1,
        p_pos: float = 0.1,
        p_ng: float = 0.25,
        n_iter: int = 20,
        mask_token: str = "[MASK]",
        pos_tagger: PosTagger | None = None,
    ):
        for name, value in (("p_mask", p_mask), ("p_pos", p_pos), ("p_ng", p_ng)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` is {value!r}; use a probability in [0, 1].")
        if p_mask + p_pos > 1.0:
            raise ValueError(
                f"`p_mask` + `p_pos` is {p_mask} + {p_pos} = {p_mask + p_pos}, but they are the probabilities of two "
                "exclusive outcomes of one draw per word. Use values whose sum is at most 1."
            )
        if not isinstance(n_iter, int) or n_iter < 1:
            raise ValueError(f"`n_iter` is {n_iter!r}; use a positive integer.")
        self.p_mask = p_mask
        self.p_pos = p_pos
        self.p_ng = p_ng
        self.n_iter = n_iter
        self.mask_token = mask_token
        self.pos_tagger = None
        # tag -> (words, cumulative counts) for `random.choices`, built once.
        self._unigrams: dict[str, tuple[list[str], list[int]]] = {}
        if p_pos > 0:
            self.pos_tagger = pos_tagger if pos_tagger is not None else spacy_pos_tagger()
            self._unigrams = self._tag_unigrams(train_texts)
            logger.info(f"Tang augmentation: replacement vocabulary over {len(self._unigrams)} POS tags.")

    def _tags(self, words: list[str]) -> list[str]:
        tags = list(self.pos_tagger(words))
        if len(tags) != len(words):
            raise ValueError(
                f"`pos_tagger` returned {len(tags)} tags for {len(words)} words ({words[:8]}...). It must return one "
                "tag per word of its input list."
            )
        return tags

    def _tag_unigrams(self, train_texts: Sequence[str]) -> dict[str, tuple[list[str], list[int]]]:
        counts: dict[str, Counter] = defaultdict(Counter)
        for text in train_texts:
            words = text.split()
            if words:
                for word, tag in zip(words, self._tags(words)):
                    counts[tag][word] += 1
        unigrams = {}
        for tag, counter in counts.items():
            words = sorted(counter)  # a fixed order, so draws depend on the rng only
            cumulative, total = [], 0
            for word in words:
                total += counter[word]
                cumulative.append(total)
            unigrams[tag] = (words, cumulative)
        return unigrams

    def _variant(self, words: list[str], tags: list[str] | None, rng: random.Random) -> list[str]:
        new = []
        for i, word in enumerate(words):
            x = rng.random()
            if x < self.p_mask:
                new.append(self.mask_token)
            elif x < self.p_mask + self.p_pos and tags[i] in self._unigrams:
                population, cumulative = self._unigrams[tags[i]]
                new.append(rng.choices(population, cum_weights=cumulative)[0])
            else:
                new.append(word)
        if rng.random() < self.p_ng:
            n = min(rng.randint(1, MAX_NGRAM), len(new))
            start = rng.randint(0, len(new) - n)
            new = new[start : start + n]
        return new

    def augment(self, text: str, rng: random.Random) -> list[str]:
        """Up to `n_iter` distinct variants of `text` (words joined by single spaces), never the text itself.

        Deterministic given `rng`'s state (and a deterministic tagger). Empty text gives `[]`.
        """
        words = text.split()
        if not words:
            return []
        tags = self._tags(words) if self.p_pos > 0 else None
        seen = {text, " ".join(words)}
        variants = []
        for _ in range(self.n_iter):
            variant = " ".join(self._variant(words, tags, rng))
            if variant not in seen:
                seen.add(variant)
                variants.append(variant)
        return variants


__all__ = ["TangAugmenter", "spacy_pos_tagger"]
