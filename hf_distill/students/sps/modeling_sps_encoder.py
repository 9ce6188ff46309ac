"""PeaKD's shuffled-parameter-sharing (SPS) students for the encoders beside BERT (Cho & Kang 2020): RoBERTa, XLM-R,
CamemBERT, ELECTRA, DistilBERT, DeBERTa-v2/v3 and ModernBERT: the stock classes with a shared layer list
(`shared_layers.py`), and how each architecture's layer swaps Query and Key in its second pass:
- RoBERTa, XLM-R, CamemBERT, ELECTRA (BERT's layer): the self-attention's `query` and `key` modules trade places.
- DistilBERT: the `q_lin` and `k_lin` modules of the layer's attention trade places for the call.
- DeBERTa-v2/v3: the content projections `query_proj` and `key_proj` trade places. With `share_att_key` (v3's
  setting) the relative-position terms project through those same modules, so they follow the swap; with separate
  `pos_query_proj` / `pos_key_proj` those stay as they are.
- ModernBERT: the fused `Wqkv` (rows [Q; K; V]) is read with its Q and K outputs exchanged. A stored layer keeps its
  own attention kind (global or sliding window) in both passes, and layer 0, which ModernBERT builds without
  `attn_norm`, runs without it in its second pass too.

Self-contained on purpose: `save_pretrained` copies this file, `configuration_sps_encoder.py` and `shared_layers.py`
next to the weights, so the student loads with `trust_remote_code=True` wherever transformers is installed.
"""

import contextlib
from collections.abc import Iterator

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
from .shared_layers import BertLayerSharing, SharedLayersMixin, exchanged


def distilbert_query_key_swapped(layer: nn.Module) -> contextlib.AbstractContextManager:
    """A DistilBERT `TransformerBlock` whose attention projects queries with `k_lin` and keys with `q_lin`."""
    return exchanged(layer.attention, "q_lin", "k_lin")


def deberta_v2_query_key_swapped(layer: nn.Module) -> contextlib.AbstractContextManager:
    """A `DebertaV2Layer` whose attention projects queries with `key_proj` and keys with `query_proj`."""
    return exchanged(layer.attention.self, "query_proj", "key_proj")


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


class _RobertaSharing(BertLayerSharing):
    config_class = SPSRobertaConfig


class _XLMRobertaSharing(BertLayerSharing):
    config_class = SPSXLMRobertaConfig


class _CamembertSharing(BertLayerSharing):
    config_class = SPSCamembertConfig


class _ElectraSharing(BertLayerSharing):
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
]
