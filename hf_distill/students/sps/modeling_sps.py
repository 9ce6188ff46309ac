"""PeaKD's shuffled-parameter-sharing (SPS) BERT student: k stored BERT layers executed as 2k (Cho & Kang 2020).

The stock `BertModel`, `BertForSequenceClassification` and `BertForTokenClassification` with a shared layer list
(`shared_layers.py`): the stored layers run as layers 1…k, then again as layers k+1…2k, the second time with the
self-attention's `query` and `key` modules exchanged when `shuffle_qk`. Parameter names are those of the k-layer
stock model (`bert.encoder.layer.{i}.…`): the checkpoint holds exactly k layers.

Self-contained on purpose: `save_pretrained` copies this file, `configuration_sps.py` and `shared_layers.py` next to
the weights, so the student loads with `trust_remote_code=True` wherever transformers is installed.
"""

from transformers import BertForSequenceClassification, BertForTokenClassification, BertModel

from .configuration_sps import SPSBertConfig
from .shared_layers import BertLayerSharing


class _BertSharing(BertLayerSharing):
    config_class = SPSBertConfig


class SPSBertModel(_BertSharing, BertModel):
    """`BertModel` executing its k stored layers twice (SPS); `hidden_states` has 2k+1 entries."""


class SPSBertForSequenceClassification(_BertSharing, BertForSequenceClassification):
    """`BertForSequenceClassification` executing its k stored layers twice (SPS)."""


class SPSBertForTokenClassification(_BertSharing, BertForTokenClassification):
    """`BertForTokenClassification` executing its k stored layers twice (SPS)."""


__all__ = ["SPSBertForSequenceClassification", "SPSBertForTokenClassification", "SPSBertModel"]
