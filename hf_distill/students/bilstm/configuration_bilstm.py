"""Configuration of the BiLSTM student of Tang et al. (2019), "Distilling Task-Specific Knowledge from BERT into Simple
Neural Networks".

Self-contained on purpose (transformers' "custom models" pattern): `save_pretrained` copies this file next to the
weights so that `AutoConfig.from_pretrained(path, trust_remote_code=True)` works without `hf_distill` installed.
"""

from transformers import PreTrainedConfig

POOLING_CHOICES = ("last", "max", "mean")


class BiLSTMConfig(PreTrainedConfig):
    r"""
    Configuration of [`BiLSTMForSequenceClassification`]: word embeddings -> one bidirectional LSTM layer -> pooling
    -> dropout -> ReLU fully-connected layer -> logits. Pair tasks run the same encoder on each sentence and classify
    `[h1, h2, h1 * h2, |h1 - h2|]`. [`BiLSTMForTokenClassification`] (a tagger) applies dropout, the ReLU layer and
    the logits to every position's LSTM output instead; `pooling` does not apply to it and `is_pair` must be False.

    Args:
        vocab_size (`int`, defaults to 30522):
            Rows of the word-embedding matrix; the student shares the teacher's tokenizer, so use `len(tokenizer)`.
        embedding_dim (`int`, defaults to 300):
            Word-embedding width (300-d word2vec in the paper; the teacher's hidden size when its embeddings are
            copied).
        hidden_size (`int`, defaults to 150):
            LSTM hidden size per direction; a sentence vector has `2 * hidden_size` features.
        fc_hidden_size (`int`, defaults to 400):
            Width of the ReLU layer between the sentence features and the logits.
        pooling (`str`, defaults to `"last"`):
            `"last"`: final forward state and final backward state concatenated (the paper); `"max"` / `"mean"`: over
            the real (unpadded) positions of the LSTM outputs. Unused by the token-classification head.
        dropout (`float`, defaults to 0.1):
            Dropout on the sentence (token head: per-position) features, before the ReLU layer.
        is_pair (`bool`, defaults to `False`):
            Sentence-pair task: the model splits one BERT-tokenised pair by `token_type_ids` and encodes each side.
            Sequence classification only.
        initializer_range (`float`, defaults to 0.1):
            Standard deviation of randomly initialised word embeddings (word2vec / GloVe vectors have a similar
            scale).
        embedding_init (`str`, defaults to `"random"`):
            Where the word embeddings came from (`"random"`, `"teacher"` or `"file:<path>"`); informative only, set by
            `build_bilstm_student`.
        pad_token_id (`int`, *optional*, defaults to 0):
            Padding id; its embedding row is zero and receives no gradient.
        num_labels (`int`, defaults to 2):
            Number of logits; 1 means regression (MSE loss), as in BERT.
    """

    model_type = "hf_distill_bilstm"

    vocab_size: int = 30522
    embedding_dim: int = 300
    hidden_size: int = 150
    fc_hidden_size: int = 400
    pooling: str = "last"
    dropout: float = 0.1
    is_pair: bool = False
    initializer_range: float = 0.1
    embedding_init: str = "random"
    pad_token_id: int | None = 0

    def __post_init__(self, **kwargs):
        if self.pooling not in POOLING_CHOICES:
            raise ValueError(f"`pooling` is {self.pooling!r}; use one of {', '.join(map(repr, POOLING_CHOICES))}.")
        for name in ("vocab_size", "embedding_dim", "hidden_size", "fc_hidden_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` is {value!r}; use a positive integer.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` is {self.dropout!r}; use a probability in [0, 1).")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"`pad_token_id` is {self.pad_token_id}, but `vocab_size` is {self.vocab_size}. "
                f"Use an id in [0, {self.vocab_size - 1}] or None."
            )
        super().__post_init__(**kwargs)


__all__ = ["BiLSTMConfig"]
