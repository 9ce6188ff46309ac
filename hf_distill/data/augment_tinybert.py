"""TinyBERT's data augmentation (Jiao et al. 2020, Algorithm 1): `TinyBertAugmenter`, an `Augmenter` (see
`hf_distill.data.augmentation`, whose `augment_dataset` applies it to a `datasets.Dataset`).

Differences from the reference implementation, all deliberate:
- The masked copies of many sentences go through the masked LM together (`augment_batch`): sorted by length,
  `batch_size` copies per forward, each padded to its batch's longest (the reference runs one forward per word, the
  slowest part of its pipeline); only the masked positions' vocabulary logits are computed. Padding leaves every
  prediction as it is unpadded up to float rounding, so top-K lists match the one-sentence path except where two
  candidates' logits tie to rounding (none did in 200 SST-2 sentences, `benchmarks/augment_throughput.py`).
- `##` pieces, special tokens and the word itself are removed *before* taking the top K, so every single-piece word
  gets exactly K candidates (the reference filters `##` pieces after its top K and keeps the word itself).
- Pair tasks: each side is augmented with the other side unchanged (the reference pairs the second side's variants
  with the first side's last variant).
- Without a GloVe file, multi-piece words take their neighbours from the masked LM's own input embeddings
  (`WordEmbeddings.from_mlm_input_embeddings`) so augmentation works offline; the paper uses GloVe.
"""

import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForMaskedLM, AutoTokenizer, BasicTokenizer, PreTrainedModel
from transformers.utils import logging

from .word_vectors import load_word_vectors

logger = logging.get_logger(__name__)

# NLTK's English stop words (the list TinyBERT's reference uses), alphabetic entries only: the others can never be
# candidates because candidates must be alphabetic.
DEFAULT_STOPWORDS = frozenset(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself
    it its itself they them their theirs themselves what which who whom this that these those am is are was were be
    been being have has had having do does did doing a an the and but if or because as until while of at by for
    with about against between into through during before after above below to from up down in out on off over
    under again further then once here there when where why how all any both each few more most other some such no
    nor not only own same so than too very s t can will just don should now d ll m o re ve y ain aren couldn didn
    doesn hadn hasn haven isn ma mightn mustn needn shan shouldn wasn weren won wouldn
    """.split()
)


class WordEmbeddings:
    """Static word vectors with cosine nearest neighbours (one matmul against a row-normalised matrix).

    Build with `from_glove` (the paper's choice) or `from_mlm_input_embeddings` (our offline fallback). Words
    outside the vocabulary have no neighbours, except in the fallback, where a word is the mean of its WordPieces.
    """

    def __init__(self, words: Sequence[str], vectors: torch.Tensor, *, tokenizer=None, piece_vectors=None):
        """
        Args:
            words: `N` distinct words, row order of `vectors`.
            vectors: `(N, d)` word vectors (normalised here).
            tokenizer, piece_vectors: for the fallback only: the tokenizer and its `(V, d)` input-embedding matrix,
                used to represent a word without a row as the mean of its pieces' vectors.
        """
        if len(words) != vectors.shape[0]:
            raise ValueError(
                f"`words` has {len(words)} entries but `vectors` {vectors.shape[0]} rows; make them match."
            )
        self.words = list(words)
        self._index = {word: row for row, word in enumerate(self.words)}
        self._unit = F.normalize(vectors.float(), dim=-1)
        self._tokenizer = tokenizer
        self._piece_vectors = piece_vectors

    @classmethod
    def from_glove(cls, glove_file: str | Path, max_words: int | None = 100_000) -> "WordEmbeddings":
        """Read a GloVe text file (`word v1 ... vd` per line) with `load_word_vectors`, keeping its first
        `max_words` words (the reference keeps 100k)."""
        words, vectors = load_word_vectors(
            glove_file,
            "glove_file",
            max_words=max_words,
            hint="Or leave `glove_file` unset to use the masked LM's own input embeddings.",
        )
        logger.info(f"Loaded {len(words)} {vectors.shape[1]}-d word vectors from {glove_file}.")
        return cls(words, torch.from_numpy(vectors))

    @classmethod
    def from_mlm_input_embeddings(cls, model: PreTrainedModel, tokenizer) -> "WordEmbeddings":
        """Our offline fallback, not the paper's: neighbours from the model's input-embedding matrix over its
        whole-word vocabulary entries (alphabetic, no `##`, no special tokens). A word split into several pieces is
        represented by the mean of its pieces' embeddings.
        """
        matrix = model.get_input_embeddings().weight.detach().float().cpu()
        special = set(tokenizer.all_special_tokens)
        entries = sorted(
            (index, token)
            for token, index in tokenizer.get_vocab().items()
            if index < matrix.shape[0] and token.isalpha() and token not in special
        )
        rows = torch.tensor([index for index, _ in entries], dtype=torch.long)
        return cls([token for _, token in entries], matrix[rows], tokenizer=tokenizer, piece_vectors=matrix)

    def _query(self, word: str) -> torch.Tensor | None:
        """`(d,)` unit vector of `word`, or None when it has none."""
        row = self._index.get(word)
        if row is not None:
            return self._unit[row]
        if self._tokenizer is None:
            return None
        piece_ids = self._tokenizer.convert_tokens_to_ids(self._tokenizer.tokenize(word))
        if not piece_ids:
            return None
        return F.normalize(self._piece_vectors[piece_ids].mean(dim=0), dim=0)

    def nearest(self, word: str, k: int) -> list[str]:
        """The `k` words closest to `word` by cosine, best first, never `word` itself; [] for an unknown word."""
        if k < 1:
            raise ValueError(f"`k` must be >= 1, got {k}. Ask for at least one neighbour.")
        query = self._query(word)
        if query is None:
            return []
        similarity = self._unit @ query
        own_row = self._index.get(word)
        if own_row is not None:
            similarity[own_row] = -torch.inf
        k = min(k, len(self.words) - (own_row is not None))
        return [self.words[row] for row in similarity.topk(k).indices.tolist()]


def load_masked_lm(name_or_path: str, *, cache_dir: str | None = None) -> tuple[PreTrainedModel, object]:
    """Load a masked LM and its tokenizer in eval mode, warning loudly when the MLM head was initialised randomly
    (sentence-embedding checkpoints such as all-MiniLM-L6-v2 ship without one: their candidates are noise).
    """
    model, loading_info = AutoModelForMaskedLM.from_pretrained(
        name_or_path, cache_dir=cache_dir, output_loading_info=True
    )
    missing = sorted(loading_info["missing_keys"])
    if missing:
        logger.warning(
            f"{name_or_path} has no trained masked-LM head: {', '.join(missing)} were initialised randomly, so the "
            "MLM's word candidates are random. Fine for timing; for real augmentation use a checkpoint with an MLM "
            "head (e.g. google-bert/bert-base-uncased or the teacher's pre-trained BERT)."
        )
    return model.eval(), AutoTokenizer.from_pretrained(name_or_path, cache_dir=cache_dir)


class TinyBertAugmenter:
    """TinyBERT Algorithm 1: replace words by masked-LM predictions (single-piece words) or by embedding
    neighbours (multi-piece words), `n_aug` times with probability `p_t` per candidate word.

    Variants are the basic-tokenised words joined by single spaces (lower-cased for uncased tokenizers), as in
    the reference.
    """

    # `python -m hf_distill.augment --method` of these rules.
    rules_name = "tinybert"

    def __init__(
        self,
        mlm_model: PreTrainedModel,
        tokenizer,
        *,
        word_embeddings: "WordEmbeddings | None" = None,
        top_k: int = 15,
        p_t: float = 0.4,
        n_aug: int = 20,
        stopwords: Iterable[str] = DEFAULT_STOPWORDS,
        batch_size: int = 64,
    ):
        """
        Args:
            mlm_model: a masked LM (e.g. `BertForMaskedLM`) whose `get_output_embeddings()` maps hidden states to
                vocabulary logits.
            tokenizer: its WordPiece tokenizer.
            word_embeddings: neighbours for multi-piece words; None builds the fallback from the MLM's input
                embeddings (`WordEmbeddings.from_mlm_input_embeddings`).
            top_k: candidates per word (K).
            p_t: probability of replacing each candidate word in a variant.
            n_aug: variants drawn per sentence (N_a); duplicates and the original are dropped.
            stopwords: words never replaced (compared lower-cased).
            batch_size: most masked copies per MLM forward, from one sentence or several (`augment_batch`).
        """
        for name, value, example in (("top_k", top_k, 15), ("n_aug", n_aug, 20), ("batch_size", batch_size, 64)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}. Use e.g. `{name}={example}`.")
        if not 0.0 <= p_t <= 1.0:
            raise ValueError(f"`p_t` must be a probability in [0, 1], got {p_t!r}. The paper uses `p_t=0.4`.")
        if mlm_model.get_output_embeddings() is None:
            raise ValueError(
                f"`mlm_model` ({type(mlm_model).__name__}) has no output embeddings, so it is not a masked LM. Load "
                "it with AutoModelForMaskedLM."
            )
        self.model = mlm_model.eval()
        self.tokenizer = tokenizer
        self.word_embeddings = (
            word_embeddings
            if word_embeddings is not None
            else WordEmbeddings.from_mlm_input_embeddings(mlm_model, tokenizer)
        )
        self.top_k, self.p_t, self.n_aug, self.batch_size = top_k, p_t, n_aug, batch_size
        self.stopwords = frozenset(word.lower() for word in stopwords)
        self.basic_tokenizer = BasicTokenizer(do_lower_case=getattr(tokenizer, "do_lower_case", True))
        self.max_length = getattr(mlm_model.config, "max_position_embeddings", tokenizer.model_max_length)
        # The second segment needs token type 1; single-segment models (RoBERTa) get no token types at all.
        self.use_token_types = getattr(mlm_model.config, "type_vocab_size", 1) >= 2
        vocab_size = mlm_model.get_output_embeddings().weight.shape[0]
        special = set(tokenizer.all_special_tokens)
        self.allowed_ids = torch.zeros(vocab_size, dtype=torch.bool)
        for token, index in tokenizer.get_vocab().items():
            # "[unused0]"-style placeholders are not special tokens for the tokenizer but are no words either.
            is_placeholder = token.startswith("[") and token.endswith("]")
            if index < vocab_size and not (token.startswith("##") or token in special or is_placeholder):
                self.allowed_ids[index] = True

    def is_candidate(self, word: str) -> bool:
        return word.isalpha() and word.lower() not in self.stopwords

    def candidates(self, words: Sequence[str]) -> dict[int, list[str]]:
        """Replacement candidates per word position, for the eligible words that have at least one."""
        return self.candidates_batch([words])[0]

    def candidates_batch(self, sentences: Sequence[Sequence[str]]) -> list[dict[int, list[str]]]:
        """`candidates` of each sentence (a list of words), the masked-LM queries of all of them batched together."""
        results, queries, owners = [], [], []
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        for sentence_index, words in enumerate(sentences):
            piece_ids = [self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(word)) for word in words]
            result, mlm_positions, mlm_words = {}, [], []
            offset = 1  # [CLS]
            for index, word in enumerate(words):
                if self.is_candidate(word):
                    if len(piece_ids[index]) == 1 and piece_ids[index][0] != self.tokenizer.unk_token_id:
                        mlm_positions.append(offset)
                        mlm_words.append(index)
                    else:
                        result[index] = self.word_embeddings.nearest(word, self.top_k)
                offset += len(piece_ids[index])
            results.append(result)
            if not mlm_words:
                continue
            flat = [piece for word_ids in piece_ids for piece in word_ids]
            # The reference's input: [CLS] masked sentence [SEP] original sentence [SEP], cut at the model's limit.
            sequence = [cls_id, *flat, sep_id, *flat, sep_id][: self.max_length]
            token_types = ([0] * (len(flat) + 2) + [1] * (len(flat) + 1))[: self.max_length]
            for position, index in zip(mlm_positions, mlm_words, strict=True):
                if position < self.max_length:
                    queries.append((sequence, token_types, position, piece_ids[index][0]))
                    owners.append((sentence_index, index))
        for (sentence_index, index), words_k in zip(owners, self.mlm_top_k(queries), strict=True):
            results[sentence_index][index] = words_k
        return [{index: result[index] for index in sorted(result) if result[index]} for result in results]

    @torch.inference_mode()
    def mlm_top_k(self, queries: Sequence[tuple[list[int], list[int], int, int]]) -> list[list[str]]:
        """Top-K MLM predictions for each query, one masked copy of its sequence each.

        Args:
            queries: `(input_ids, token_type_ids, position, own_id)` per copy: the pair sequence, the position to
                mask and the token there, which is excluded from its own candidates. Copies are sorted by length
                and run `batch_size` per forward, right-padded to the longest of their batch.
        Returns:
            One list of `top_k` tokens per query, best first, in the order of `queries`.
        """
        device = self.model.device
        order = sorted(range(len(queries)), key=lambda query: len(queries[query][0]), reverse=True)
        results: list[list[str] | None] = [None] * len(queries)
        for start in range(0, len(order), self.batch_size):
            batch = [queries[query] for query in order[start : start + self.batch_size]]
            width = len(batch[0][0])
            ids = torch.full((len(batch), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
            types = torch.zeros_like(ids)
            attention = torch.zeros_like(ids)
            for row, (input_ids, token_type_ids, _, _) in enumerate(batch):
                ids[row, : len(input_ids)] = torch.tensor(input_ids)
                types[row, : len(input_ids)] = torch.tensor(token_type_ids)
                attention[row, : len(input_ids)] = 1
            rows = torch.arange(len(batch))
            positions = torch.tensor([position for _, _, position, _ in batch])
            ids[rows, positions] = self.tokenizer.mask_token_id
            inputs = {"input_ids": ids.to(device), "attention_mask": attention.to(device)}
            if self.use_token_types:
                inputs["token_type_ids"] = types.to(device)
            rows, positions = rows.to(device), positions.to(device)
            # Project only the masked positions onto the vocabulary: full (R, L, V) logits take gigabytes for long
            # sentences with many maskable words.
            handle = self.model.get_output_embeddings().register_forward_pre_hook(
                lambda module, args, rows=rows, positions=positions: (args[0][rows, positions].unsqueeze(1), *args[1:])
            )
            try:
                logits = self.model(**inputs).logits[:, 0].float()  # (R, V)
            finally:
                handle.remove()
            allowed = self.allowed_ids.to(device).expand_as(logits).clone()
            allowed[rows, torch.tensor([own_id for *_, own_id in batch], device=device)] = False
            k = min(self.top_k, int(allowed[0].sum()))
            top = logits.masked_fill(~allowed, -torch.inf).topk(k, dim=-1).indices
            for query, row in zip(order[start : start + self.batch_size], top.tolist(), strict=True):
                results[query] = self.tokenizer.convert_ids_to_tokens(row)
        return results

    def augment(self, text: str, rng: random.Random) -> list[str]:
        return self.augment_batch([text], [rng])[0]

    def augment_batch(self, texts: Sequence[str], rngs: Sequence[random.Random]) -> list[list[str]]:
        """`augment` of each text with its own rng, the masked-LM work of all of them batched (`candidates_batch`).
        Each text's variants are those `augment(text, rng)` draws."""
        sentences = [self.basic_tokenizer.tokenize(text) for text in texts]
        return [
            self._draw_variants(words, candidates, rng)
            for words, candidates, rng in zip(sentences, self.candidates_batch(sentences), rngs, strict=True)
        ]

    def _draw_variants(self, words: list[str], candidates: dict[int, list[str]], rng: random.Random) -> list[str]:
        original = " ".join(words)
        seen, variants = {original}, []
        if not candidates:
            return variants
        for _ in range(self.n_aug):
            new_words = list(words)
            for index, options in candidates.items():
                if rng.random() < self.p_t:
                    new_words[index] = rng.choice(options)
            variant = " ".join(new_words)
            if variant not in seen:
                seen.add(variant)
                variants.append(variant)
        return variants
