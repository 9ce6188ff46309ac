"""Configuration of PeaKD's shuffled-parameter-sharing (SPS) BERT student (Cho & Kang 2020).

Self-contained on purpose: `save_pretrained` copies this file next to the weights, so it imports only transformers.
"""

from transformers import BertConfig


class SPSBertConfig(BertConfig):
    r"""A `BertConfig` for a student that stores `num_hidden_layers` (k) transformer layers and executes each twice.

    The forward pass runs the stored layers 1…k, then the same k layers again as layers k+1…2k. With
    `shuffle_qk=True` (SPS) each layer's second pass swaps the Query and Key projections (`query = W_K x + b_K`,
    `key = W_Q x + b_Q`); Value, attention output, feed-forward and LayerNorms are shared unchanged. With
    `shuffle_qk=False` the second pass repeats the layer as it is ("paired parameter sharing").

    Args:
        shuffle_qk (`bool`, *optional*, defaults to `True`):
            Swap Query and Key in the second pass (SPS); `False` gives paired parameter sharing.
        distillation_layer_ids (`list[int]`, *optional*):
            The 0-based teacher layers the stored layers were copied from, recorded by `build_sps_student` (the key
            plain students use too). `teacher_layer_ids`, the key of earlier versions, reads and sets it.
        distillation_source (`str`, *optional*):
            The name or path of the teacher the layers were copied from.
        kwargs:
            Everything `BertConfig` takes; `num_hidden_layers` is the number of stored layers k.
    """

    model_type = "hf_distill_sps_bert"

    shuffle_qk: bool = True
    distillation_layer_ids: list[int] | None = None
    distillation_source: str | None = None

    @property
    def teacher_layer_ids(self) -> list[int] | None:
        """`distillation_layer_ids` under its former name (configs saved before may hold this key)."""
        return self.distillation_layer_ids

    @teacher_layer_ids.setter
    def teacher_layer_ids(self, value: list[int] | None) -> None:
        self.distillation_layer_ids = value

    @property
    def num_executed_layers(self) -> int:
        """Transformer layers one forward pass runs (2k); `output_hidden_states` returns this many plus one."""
        return 2 * self.num_hidden_layers


__all__ = ["SPSBertConfig"]
