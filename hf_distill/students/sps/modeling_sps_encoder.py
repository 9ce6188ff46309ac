"""PeaKD's shuffled-parameter-sharing (SPS) students for the encoders beside BERT (Cho & Kang 2020): RoBERTa, XLM-R,
CamemBERT, ELECTRA, DistilBERT, DeBERTa-v2/v3 and ModernBERT.

Each class is the architecture's stock model (base, sequence- or token-classification head) with k stored layers and
its layer `nn.ModuleList` replaced by a `SharedLayerList`: iterating it gives the stored layers 1…k, then the same
layers again as layers k+1…2k, the second time with Query and Key swapped when `config.shuffle_qk` (SPS). The stock
encoders run `for layer in self.layer(s)`, and record hidden states and attentions per call, so the stock forward
executes and reports all 2k layers; the state dict is that of the stock k-layer model.

How the second pass swaps Query and Key (`query = W_K x + b_K`, `key = W_Q x + b_Q`; everything else shared):
- RoBERTa, XLM-R, CamemBERT, ELECTRA (BERT's layer): the self-attention's `query` and `key` modules trade places.
- DistilBERT: the `q_lin` and `k_lin` modules of the layer's attention trade places for the call.
- DeBERTa-v2/v3: the content projections `query_proj` and `key_proj` trade places. With `share_att_key` (v3's
  setting) the relative-position terms project through those same modules, so they follow the swap; with separate
  `pos_query_proj` / `pos_key_proj` those stay as they are.
- ModernBERT: the fused `Wqkv` (rows [Q; K; V]) is read with its Q and K outputs exchanged. A stored layer keeps its
  own attention kind (global or sliding window) in both passes, and layer 0, which ModernBERT builds without
  `attn_norm`, runs without it in its second pass too.

The swap exchanges modules rather than tensors, so it is traced by `torch.onnx` like any forward. Self-contained on
purpose: `save_pretrained` copies this file and `configuration_sps_encoder.py` next to the weights, so the student
loads with `trust_remote_code=True` wherever transformers is installed.
"""

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn
from transformers import (
    CamembertForSequenceClassification,
    CamembertForTokenClassification,
    CamembertModel,
    DebertaV2ForSequenceClassification,
    DebertaV2ForTokenClassification,
    DebertaV2Model,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    DistilBertModel,
    ElectraForSequenceClassification,
    ElectraForTokenClassification,
    ElectraModel,
    ModernBertForSequenceClassification,
    ModernBertForTokenClassification,
    ModernBertModel,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
    XLMRobertaForSequenceClassification,
    XLMRobertaForTokenClassification,
    XLMRobertaModel,
)

from .configuration_sps_encoder import (
    SPSCamembertConfig,
    SPSDebertaV2Config,
    SPSDistilBertConfig,
    SPSElectraConfig,
    SPSModernBertConfig,
    SPSRobertaConfig,
    SPSXLMRobertaConfig,
)

QueryKeySwap = Callable[[nn.Module], contextlib.AbstractContextManager]


@contextlib.contextmanager
def _exchanged(module: nn.Module, first: str, second: str) -> Iterator[None]:
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
    return _exchanged(layer.attention.self, "query", "key")


def distilbert_query_key_swapped(layer: nn.Module) -> contextlib.AbstractContextManager:
    """A DistilBERT `TransformerBlock` whose attention projects queries with `k_lin` and keys with `q_lin`."""
    return _exchanged(layer.attention, "q_lin", "k_lin")


def deberta_v2_query_key_swapped(layer: nn.Module) -> contextlib.AbstractContextManager:
    """A `DebertaV2Layer` whose attention projects queries with `key_proj` and keys with `query_proj`."""
    return _exchanged(layer.attention.self, "query_proj", "key_proj")


class QueryKeySwappedFusedProjection(nn.Module):
    """A fused [Q; K; V] projection whose output reads [K; Q; V]: the same `nn.Linear`, its Q and K parts exchanged."""

    def __init__(self, fused: nn.Linear):
        super().__init__()
        self.fused = fused

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        query, key, value = self.fused(hidden_states).chunk(3, dim=-1)
        return torch.cat([key, query, value], dim=-1)


@contextlib.contextmanager
def modernbert_query_key_swapped(layer: nn.Module) -> Iterator[None]:
    """A `ModernBertEncoderLayer` whose `Wqkv` gives the key projection as queries and the query projection as keys."""
    attention = layer.attn
    fused = attention.Wqkv
    attention.Wqkv = QueryKeySwappedFusedProjection(fused)
    try:
        yield
    finally:
        attention.Wqkv = fused


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

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        raise ValueError(
            f"{type(self).__name__} cannot use gradient checkpointing: the backward pass would recompute each shared "
            "layer's second pass without its Query/Key swap. Drop `--gradient_checkpointing` (or train a plain "
            "student, `--student_arch plain`)."
        )


class _BertLayerSharing(SharedLayersMixin):
    stored_layers_path = "encoder.layer"
    query_key_swapped = staticmethod(bert_layer_query_key_swapped)


class _RobertaSharing(_BertLayerSharing):
    config_class = SPSRobertaConfig


class _XLMRobertaSharing(_BertLayerSharing):
    config_class = SPSXLMRobertaConfig


class _CamembertSharing(_BertLayerSharing):
    config_class = SPSCamembertConfig


class _ElectraSharing(_BertLayerSharing):
    config_class = SPSElectraConfig


class _DistilBertSharing(SharedLayersMixin):
    config_class = SPSDistilBertConfig
    stored_layers_path = "transformer.layer"
    query_key_swapped = staticmethod(distilbert_query_key_swapped)


class _DebertaV2Sharing(SharedLayersMixin):
    config_class = SPSDebertaV2Config
    stored_layers_path = "encoder.layer"
    query_key_swapped = staticmethod(deberta_v2_query_key_swapped)


class _ModernBertSharing(SharedLayersMixin):
    config_class = SPSModernBertConfig
    stored_layers_path = "layers"
    query_key_swapped = staticmethod(modernbert_query_key_swapped)


class SPSRobertaModel(_RobertaSharing, RobertaModel):
    """`RobertaModel` executing its k stored layers twice (SPS)."""


class SPSRobertaForSequenceClassification(_RobertaSharing, RobertaForSequenceClassification):
    """`RobertaForSequenceClassification` executing its k stored layers twice (SPS)."""


class SPSRobertaForTokenClassification(_RobertaSharing, RobertaForTokenClassification):
    """`RobertaForTokenClassification` executing its k stored layers twice (SPS)."""


class SPSXLMRobertaModel(_XLMRobertaSharing, XLMRobertaModel):
    """`XLMRobertaModel` executing its k stored layers twice (SPS)."""


class SPSXLMRobertaForSequenceClassification(_XLMRobertaSharing, XLMRobertaForSequenceClassification):
    """`XLMRobertaForSequenceClassification` executing its k stored layers twice (SPS)."""


class SPSXLMRobertaForTokenClassification(_XLMRobertaSharing, XLMRobertaForTokenClassification):
    """`XLMRobertaForTokenClassification` executing its k stored layers twice (SPS)."""


class SPSCamembertModel(_CamembertSharing, CamembertModel):
    """`CamembertModel` executing its k stored layers twice (SPS)."""


class SPSCamembertForSequenceClassification(_CamembertSharing, CamembertForSequenceClassification):
    """`CamembertForSequenceClassification` executing its k stored layers twice (SPS)."""


class SPSCamembertForTokenClassification(_CamembertSharing, CamembertForTokenClassification):
    """`CamembertForTokenClassification` executing its k stored layers twice (SPS)."""


class SPSElectraModel(_ElectraSharing, ElectraModel):
    """`ElectraModel` executing its k stored layers twice (SPS)."""


class SPSElectraForSequenceClassification(_ElectraSharing, ElectraForSequenceClassification):
    """`ElectraForSequenceClassification` executing its k stored layers twice (SPS)."""


class SPSElectraForTokenClassification(_ElectraSharing, ElectraForTokenClassification):
    """`ElectraForTokenClassification` executing its k stored layers twice (SPS)."""


class SPSDistilBertModel(_DistilBertSharing, DistilBertModel):
    """`DistilBertModel` executing its k stored layers twice (SPS)."""


class SPSDistilBertForSequenceClassification(_DistilBertSharing, DistilBertForSequenceClassification):
    """`DistilBertForSequenceClassification` executing its k stored layers twice (SPS)."""


class SPSDistilBertForTokenClassification(_DistilBertSharing, DistilBertForTokenClassification):
    """`DistilBertForTokenClassification` executing its k stored layers twice (SPS)."""


class SPSDebertaV2Model(_DebertaV2Sharing, DebertaV2Model):
    """`DebertaV2Model` executing its k stored layers twice (SPS)."""


class SPSDebertaV2ForSequenceClassification(_DebertaV2Sharing, DebertaV2ForSequenceClassification):
    """`DebertaV2ForSequenceClassification` executing its k stored layers twice (SPS)."""


class SPSDebertaV2ForTokenClassification(_DebertaV2Sharing, DebertaV2ForTokenClassification):
    """`DebertaV2ForTokenClassification` executing its k stored layers twice (SPS)."""


class SPSModernBertModel(_ModernBertSharing, ModernBertModel):
    """`ModernBertModel` executing its k stored layers twice (SPS)."""


class SPSModernBertForSequenceClassification(_ModernBertSharing, ModernBertForSequenceClassification):
    """`ModernBertForSequenceClassification` executing its k stored layers twice (SPS)."""


class SPSModernBertForTokenClassification(_ModernBertSharing, ModernBertForTokenClassification):
    """`ModernBertForTokenClassification` executing its k stored layers twice (SPS)."""


__all__ = [
    "SPSCamembertForSequenceClassification",
    "SPSCamembertForTokenClassification",
    "SPSCamembertModel",
    "SPSDebertaV2ForSequenceClassification",
    "SPSDebertaV2ForTokenClassification",
    "SPSDebertaV2Model",
    "SPSDistilBertForSequenceClassification",
    "SPSDistilBertForTokenClassification",
    "SPSDistilBertModel",
    "SPSElectraForSequenceClassification",
    "SPSElectraForTokenClassification",
    "SPSElectraModel",
    "SPSModernBertForSequenceClassification",
    "SPSModernBertForTokenClassification",
    "SPSModernBertModel",
    "SPSRobertaForSequenceClassification",
    "SPSRobertaForTokenClassification",
    "SPSRobertaModel",
    "SPSXLMRobertaForSequenceClassification",
    "SPSXLMRobertaForTokenClassification",
    "SPSXLMRobertaModel",
    "SharedLayerList",
]
