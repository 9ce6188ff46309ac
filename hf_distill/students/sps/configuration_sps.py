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
        teacher_layer_ids (`list[int]`, *optional*):
            The 0-based teacher layers the stored layers were copied from, recorded by `build_sps_student`.
        kwargs:
            Everything `BertConfig` takes; `num_hidden_layers` is the number of stored layers k.
    """

    model_type = "hf_distill_sps_bert"

    shuffle_qk: bool = True
    teacher_layer_ids: list[int] | None = None

    @property
    def num_executed_layers(self) -> int:
        """Transformer layers one forward pass runs (2k); `output_hidden_states` returns this many plus one."""
        return 2 * self.num_hidden_layers


__all__ = ["SPSBertConfig"]
