"""PeaKD's shuffled-parameter-sharing (SPS) BERT student: k stored BERT layers executed as 2k (Cho & Kang 2020).

Self-contained on purpose: `save_pretrained` copies this file and `configuration_sps.py` next to the weights, so the
student loads with `trust_remote_code=True` wherever transformers is installed. Parameter names are those of a
k-layer `BertForSequenceClassification` / `BertForTokenClassification` (`bert.encoder.layer.{i}.…`): the checkpoint
holds exactly k layers.
"""

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.models.bert.modeling_bert import BertEmbeddings, BertLayer, BertPooler, BertPreTrainedModel

from .configuration_sps import SPSBertConfig


def swapped_query_key(layer: BertLayer) -> dict[str, torch.Tensor]:
    """`layer`'s Query and Key parameters under each other's names, for `torch.func.functional_call`.

    The tensors are the layer's own parameters (no copy), so the swapped pass sends its gradients to the same
    weights as the plain pass.
    """
    attention = layer.attention.self
    return {
        "attention.self.query.weight": attention.key.weight,
        "attention.self.query.bias": attention.key.bias,
        "attention.self.key.weight": attention.query.weight,
        "attention.self.key.bias": attention.query.bias,
    }


class SPSBertEncoder(nn.Module):
    """k stored `BertLayer`s run as layers 1…k, then again as layers k+1…2k (Q/K swapped when `shuffle_qk`)."""

    def __init__(self, config: SPSBertConfig):
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList([BertLayer(config, layer_idx=i) for i in range(config.num_hidden_layers)])

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        """Run the 2k executed layers.

        Args:
            hidden_states: (B, L, d) embedding output.
            attention_mask: the mask `create_bidirectional_mask` builds for the configured attention implementation.

        Returns:
            The last hidden state (B, L, d); the 2k+1 hidden states (embeddings, then every executed layer) or
            `None`; the 2k attention probabilities (B, H, L, L) or `None`.
        """
        all_hidden_states = [hidden_states]
        # BertLayer drops its attention probabilities, so they are read off the self-attention modules' outputs.
        all_attentions = []
        hooks = [
            layer.attention.self.register_forward_hook(lambda module, args, output: all_attentions.append(output[1]))
            for layer in (self.layer if output_attentions else ())
        ]
        try:
            for second_pass in (False, True):
                for layer in self.layer:
                    args = (hidden_states, attention_mask)
                    if second_pass and self.config.shuffle_qk:
                        hidden_states = functional_call(layer, swapped_query_key(layer), args)
                    else:
                        hidden_states = layer(*args)
                    all_hidden_states.append(hidden_states)
        finally:
            for hook in hooks:
                hook.remove()
        return (
            hidden_states,
            tuple(all_hidden_states) if output_hidden_states else None,
            tuple(all_attentions) if output_attentions else None,
        )


class SPSBertPreTrainedModel(BertPreTrainedModel):
    """BERT's weight initialisation and attention-implementation support, with the SPS config."""

    config_class = SPSBertConfig
    # Checkpointing would recompute the second pass outside `functional_call`, i.e. silently without the Q/K swap.
    supports_gradient_checkpointing = False
    # Hidden states and attentions are collected by SPSBertEncoder, which sees both passes of each layer.
    _can_record_outputs = None

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        raise ValueError(
            f"{type(self).__name__} cannot use gradient checkpointing: the backward pass would recompute each shared "
            "layer's second pass without its Query/Key swap. Drop `--gradient_checkpointing` (or train a plain "
            "student, `--student_arch plain`)."
        )


class SPSBertModel(SPSBertPreTrainedModel):
    """BERT embeddings, the SPS encoder (k stored layers, 2k executed) and BERT's pooler."""

    _no_split_modules = ["BertEmbeddings", "BertLayer"]

    def __init__(self, config: SPSBertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = SPSBertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPooling | tuple:
        """input_ids / token_type_ids / position_ids / attention_mask: (B, L); inputs_embeds: (B, L, d).

        `hidden_states` has 2k+1 entries: the embedding output, then each of the 2k executed layers.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds`.")
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        if output_attentions and self.config._attn_implementation != "eager":
            raise ValueError(
                f"`output_attentions=True` needs eager attention, but the model uses "
                f"{self.config._attn_implementation!r}. Load it with `attn_implementation='eager'`."
            )
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict

        embedding_output = self.embeddings(
            input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds
        )
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
        )
        sequence_output, hidden_states, attentions = self.encoder(
            embedding_output, attention_mask, output_hidden_states, output_attentions
        )
        output = BaseModelOutputWithPooling(
            last_hidden_state=sequence_output,
            pooler_output=self.pooler(sequence_output) if self.pooler is not None else None,
            hidden_states=hidden_states,
            attentions=attentions,
        )
        return output if return_dict else output.to_tuple()


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, config: SPSBertConfig) -> torch.Tensor:
    """The loss `BertForSequenceClassification` uses: MSE for regression, CE for single-label, BCE for multi-label.

    logits: (B, C); labels: (B,) class ids, (B,) or (B, 1) scores when C == 1, or (B, C) multi-hot.
    Infers and stores `config.problem_type` when unset, as BERT does.
    """
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        if config.num_labels == 1:
            return MSELoss()(logits.squeeze(), labels.squeeze())
        return MSELoss()(logits, labels)
    if config.problem_type == "single_label_classification":
        return CrossEntropyLoss()(logits.view(-1, config.num_labels), labels.view(-1))
    return BCEWithLogitsLoss()(logits, labels)


class SPSBertClassifier(SPSBertPreTrainedModel):
    """The SPS BERT body with BERT's classification head (dropout + linear over `hidden_size` features).

    A head class says whether the body keeps BERT's pooler (`uses_pooler`, which also says what the classifier reads:
    the pooled [CLS] or every position), how it is trained (its `classification_loss(logits, labels)`) and what it
    returns (`output_class`). Attribute
    names are BERT's, so the state dict is that of the matching k-layer BERT head model.
    """

    uses_pooler: bool
    # Where the k stored layers live inside the base model (`build_sps_student` copies the teacher's layers there).
    stored_layers_path = "encoder.layer"
    output_class: type[SequenceClassifierOutput] | type[TokenClassifierOutput]

    def __init__(self, config: SPSBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = SPSBertModel(config, add_pooling_layer=self.uses_pooler)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def classifier_input(self, outputs: BaseModelOutputWithPooling) -> torch.Tensor:
        """The features the head classifies: the pooled [CLS] (B, d) with the pooler, else every position (B, L, d)."""
        return outputs.pooler_output if self.uses_pooler else outputs.last_hidden_state

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | TokenClassifierOutput | tuple:
        """Inputs as `SPSBertModel.forward`; logits and labels as the head class documents. With labels, the loss."""
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(self.classifier_input(outputs)))
        output = self.output_class(
            loss=self.classification_loss(logits, labels) if labels is not None else None,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


class SPSBertForSequenceClassification(SPSBertClassifier):
    """The SPS encoder with BERT's sequence-classification head (dropout + linear on the pooled [CLS]).

    Logits (B, C); labels (B,) class ids, scores (regression) or (B, C) multi-hot, as `BertForSequenceClassification`.
    """

    uses_pooler = True
    output_class = SequenceClassifierOutput

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return sequence_classification_loss(logits, labels, self.config)


class SPSBertForTokenClassification(SPSBertClassifier):
    """The SPS encoder with BERT's token-classification head (dropout + linear on every position), no pooler.

    Logits (B, L, C); labels (B, L) class ids, -100 at positions that carry no label (special tokens, padding,
    continuation sub-tokens), as `BertForTokenClassification`.
    """

    uses_pooler = False
    output_class = TokenClassifierOutput

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the (B·L) positions; -100 labels are left out of the mean."""
        return CrossEntropyLoss(ignore_index=-100)(logits.view(-1, self.num_labels), labels.view(-1))


__all__ = [
    "SPSBertClassifier",
    "SPSBertForSequenceClassification",
    "SPSBertForTokenClassification",
    "SPSBertModel",
    "SPSBertPreTrainedModel",
]
