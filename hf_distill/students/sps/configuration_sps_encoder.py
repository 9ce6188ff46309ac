"""Configurations of PeaKD's shuffled-parameter-sharing (SPS) students for the encoders beside BERT: RoBERTa, XLM-R,
CamemBERT, ELECTRA, DistilBERT, DeBERTa-v2/v3 and ModernBERT.

Each is the architecture's own config with the SPS fields added, so the student is the stock model with k stored
layers. Self-contained on purpose: `save_pretrained` copies this file next to the weights, so it imports only
transformers.
"""

from dataclasses import dataclass

from transformers import (
    CamembertConfig,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    ModernBertConfig,
    RobertaConfig,
    XLMRobertaConfig,
)


# A dataclass, so that the config dataclass of each architecture below takes these as its own fields (saved in
# config.json, read back by `from_pretrained`).
@dataclass(kw_only=True, repr=False)
class SharedLayersConfigFields:
    r"""The fields an SPS student adds to its architecture's config; `num_hidden_layers` is the stored k.

    Args:
        shuffle_qk (`bool`, *optional*, defaults to `True`):
            Swap Query and Key in the second pass (SPS); `False` gives paired parameter sharing.
        distillation_layer_ids (`list[int]`, *optional*):
            The 0-based teacher layers the stored layers were copied from, recorded by `build_sps_student`.
        distillation_source (`str`, *optional*):
            The name or path of the teacher the layers were copied from.
    """

    shuffle_qk: bool = True
    distillation_layer_ids: list[int] | None = None
    distillation_source: str | None = None

    @property
    def num_executed_layers(self) -> int:
        """Transformer layers one forward pass runs (2k); `output_hidden_states` returns this many plus one."""
        return 2 * self.num_hidden_layers


class SPSRobertaConfig(SharedLayersConfigFields, RobertaConfig):
    """A `RobertaConfig` for an SPS student: k stored layers, each executed twice."""

    model_type = "hf_distill_sps_roberta"


class SPSXLMRobertaConfig(SharedLayersConfigFields, XLMRobertaConfig):
    """An `XLMRobertaConfig` for an SPS student: k stored layers, each executed twice."""

    model_type = "hf_distill_sps_xlm_roberta"


class SPSCamembertConfig(SharedLayersConfigFields, CamembertConfig):
    """A `CamembertConfig` for an SPS student: k stored layers, each executed twice."""

    model_type = "hf_distill_sps_camembert"


class SPSElectraConfig(SharedLayersConfigFields, ElectraConfig):
    """An `ElectraConfig` for an SPS student: k stored layers, each executed twice."""

    model_type = "hf_distill_sps_electra"


class SPSDistilBertConfig(SharedLayersConfigFields, DistilBertConfig):
    """A `DistilBertConfig` for an SPS student: `n_layers` stored layers, each executed twice."""

    model_type = "hf_distill_sps_distilbert"


class SPSDebertaV2Config(SharedLayersConfigFields, DebertaV2Config):
    """A `DebertaV2Config` (DeBERTa-v2 and v3) for an SPS student: k stored layers, each executed twice."""

    model_type = "hf_distill_sps_deberta_v2"


class SPSModernBertConfig(SharedLayersConfigFields, ModernBertConfig):
    """A `ModernBertConfig` for an SPS student: k stored layers, each executed twice with its own attention kind
    (`layer_types` has one entry per stored layer)."""

    model_type = "hf_distill_sps_modernbert"


__all__ = [
    "SPSCamembertConfig",
    "SPSDebertaV2Config",
    "SPSDistilBertConfig",
    "SPSElectraConfig",
    "SPSModernBertConfig",
    "SPSRobertaConfig",
    "SPSXLMRobertaConfig",
    "SharedLayersConfigFields",
]
