"""The mechanism of PeaKD's shuffled-parameter-sharing (SPS) students (Cho & Kang 2020), for every encoder.

An SPS student is the architecture's stock model (base, sequence- or token-classification head) with k stored layers
whose layer `nn.ModuleList` is replaced by a `SharedLayerList`: iterating it gives the stored layers 1…k, then the same
layers again as layers k+1…2k, the second time with Query and Key swapped when `config.shuffle_qk` (`query = W_K x +
b_K`, `key = W_Q x + b_Q`; everything else shared). The stock encoders run `for layer in self.layer(s)` and record
hidden states and attentions per call, so the stock forward executes and reports all 2k layers, and the state dict
is that of the stock k-layer model. Each architecture says where its layers are and how its layer swaps Query and
Key (`SharedLayersMixin`); the swap exchanges modules rather than tensors, so `torch.onnx` traces it like any forward.

Self-contained on purpose: `save_pretrained` copies this file next to the weights with the modeling file that imports
it, so a student loads with `trust_remote_code=True` wherever transformers is installed.
"""

import contextlib
from collections.abc import Callable, Iterator

from torch import nn

QueryKeySwap = Callable[[nn.Module], contextlib.AbstractContextManager]


@contextlib.contextmanager
def exchanged(module: nn.Module, first: str, second: str) -> Iterator[None]:
    """`module`'s submodules `first` and `second` under each other's names, restored on exit."""
    a, b = getattr(module, first), getattr(module, second)
    setattr(module, first, b)
    setattr(module, second, a)
    try:
        yield
    finally:
        setattr(module, first, a)
        setattr(module, second, b)


def bert_layer_query_key_swapped(layer: nn.Module) -> contextlib.AbstractContextManager:
    """A BERT-style layer (RoBERTa, XLM-R, CamemBERT, ELECTRA) whose self-attention projects queries with `key` and
    keys with `query`."""
    return exchanged(layer.attention.self, "query", "key")


class SecondPass:
    """Stored layer j as executed layer k+j+1: the same module, called with its Query and Key swapped.

    Not an `nn.Module` (it owns nothing, so the state dict keeps k layers); other attributes are the layer's own,
    e.g. ModernBERT's `attention_type`, which the encoder reads to pick the layer's mask.
    """

    def __init__(self, layer: nn.Module, query_key_swapped: QueryKeySwap):
        self.layer = layer
        self.query_key_swapped = query_key_swapped

    def __getattr__(self, name: str):
        return getattr(self.layer, name)

    def __call__(self, *args, **kwargs):
        with self.query_key_swapped(self.layer):
            return self.layer(*args, **kwargs)


class SharedLayerList(nn.ModuleList):
    """k stored layers that iterate as the 2k executed ones: the layers, then each again (Q/K swapped when
    `shuffle_qk`). Indexing, `len` and the state dict see the k stored layers."""

    def __init__(self, layers: nn.ModuleList, query_key_swapped: QueryKeySwap, shuffle_qk: bool):
        super().__init__(layers)
        self.query_key_swapped = query_key_swapped
        self.shuffle_qk = shuffle_qk

    def __iter__(self) -> Iterator[nn.Module]:
        stored = list(super().__iter__())
        yield from stored
        for layer in stored:
            yield SecondPass(layer, self.query_key_swapped) if self.shuffle_qk else layer


def _refuse_attentions_without_eager(model: nn.Module, args: tuple, kwargs: dict) -> None:
    """Asked for attention probabilities, SDPA and flash attention return none (the stock models warn and give an
    empty tuple, which TinyBERT's attention loss would only trip on later): a clear error instead."""
    wanted = kwargs.get("output_attentions")
    if wanted is None:
        wanted = model.config.output_attentions
    implementation = model.config._attn_implementation
    if wanted and implementation != "eager":
        raise ValueError(
            f"`output_attentions=True` needs eager attention, but this {type(model).__name__} uses "
            f"{implementation!r}. Load it with `attn_implementation='eager'`."
        )


class SharedLayersMixin:
    """Turns a stock model class into its SPS student: after the stock `__init__` builds k layers, the layer list at
    `stored_layers_path` (inside the base model) becomes a `SharedLayerList` using the architecture's swap."""

    stored_layers_path: str
    query_key_swapped: QueryKeySwap
    # Checkpointing would recompute the second pass outside the swap, i.e. silently without it.
    supports_gradient_checkpointing = False

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        parent_path, _, name = self.stored_layers_path.rpartition(".")
        parent = self.base_model.get_submodule(parent_path)
        # Looked up on the class: a function stored on an instance would not be bound, but here it must not be.
        swap = type(self).query_key_swapped
        setattr(parent, name, SharedLayerList(getattr(parent, name), swap, config.shuffle_qk))
        # A hook, not a `forward` override: Trainer and the export read the stock forward's signature.
        self.register_forward_pre_hook(_refuse_attentions_without_eager, with_kwargs=True)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        raise ValueError(
            f"{type(self).__name__} cannot use gradient checkpointing: the backward pass would recompute each shared "
            "layer's second pass without its Query/Key swap. Drop `--gradient_checkpointing` (or train a plain "
            "student, `--student_arch plain`)."
        )


class BertLayerSharing(SharedLayersMixin):
    """The rule for BERT's layer (BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA): the layers at `encoder.layer`, Query and
    Key swapped in the self-attention."""

    stored_layers_path = "encoder.layer"
    query_key_swapped = staticmethod(bert_layer_query_key_swapped)


__all__ = [
    "BertLayerSharing",
    "QueryKeySwap",
    "SecondPass",
    "SharedLayerList",
    "SharedLayersMixin",
    "bert_layer_query_key_swapped",
    "exchanged",
]
