"""BiLSTM student of Tang et al. (2019), "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks".

Self-contained on purpose (transformers' "custom models" pattern): `save_pretrained` copies this file and
`configuration_bilstm.py` next to the weights, so `AutoModelForSequenceClassification.from_pretrained(path,
trust_remote_code=True)` (`AutoModelForTokenClassification` for the tagger) works without `hf_distill` installed.
Keep every import here to torch / transformers.

The student reads the teacher's tokenisation unchanged: a sentence pair arrives as one BERT sequence
`[CLS] A [SEP] B [SEP]` and is split by `token_type_ids` inside the model, so the same batches feed teacher and
student.
"""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

from .configuration_bilstm import BiLSTMConfig


def pool_lstm_outputs(
    outputs: torch.Tensor, final_states: torch.Tensor, mask: torch.Tensor, pooling: str
) -> torch.Tensor:
    """Sentence vectors from bidirectional LSTM outputs.

    Args:
        outputs: `(B, L, 2H)` per-position outputs, zero at padding.
        final_states: `(2, B, H)` final forward and backward states (`h_n` of a packed one-layer BiLSTM).
        mask: `(B, L)` bool, True at real positions; every row has at least one.
        pooling: `"last"` (final states concatenated), `"max"` or `"mean"` over real positions.

    Returns:
        `(B, 2H)`.
    """
    if pooling == "last":
        return torch.cat([final_states[0], final_states[1]], dim=-1)
    mask = mask.unsqueeze(-1)
    if pooling == "max":
        return outputs.masked_fill(~mask, torch.finfo(outputs.dtype).min).amax(dim=1)
    return (outputs * mask).sum(dim=1) / mask.sum(dim=1)


class BiLSTMPreTrainedModel(PreTrainedModel):
    """The layers both BiLSTM heads share and their initialisation: word embeddings -> one bidirectional LSTM layer
    (`run_lstm`), and dropout -> ReLU fully-connected layer -> logits (`classify`).

    The sequence head classifies a pooled sentence vector, the token head every position's LSTM output. The layers
    are attributes of the head model itself (`embeddings`, `lstm`, `fc`, `classifier`), so checkpoint keys carry no
    base-model prefix.
    """

    config_class = BiLSTMConfig
    base_model_prefix = "bilstm"
    # The loss is a per-batch mean that ignores `num_items_in_batch`, so `Trainer` must scale it for accumulation.
    accepts_loss_kwargs = False

    def __init__(self, config: BiLSTMConfig, classifier_features: int):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_size, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(classifier_features, config.fc_hidden_size)
        self.classifier = nn.Linear(config.fc_hidden_size, config.num_labels)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LSTM):
            for name, param in module.named_parameters():
                if name.startswith("weight_ih"):
                    init.xavier_uniform_(param)
                elif name.startswith("weight_hh"):
                    init.orthogonal_(param)
                else:
                    init.zeros_(param)
                    # Forget-gate bias 1 (gate order i, f, g, o) keeps early gradients flowing through time.
                    if name.startswith("bias_ih") and not getattr(param, "_is_hf_initialized", False):
                        init.ones_(param[module.hidden_size : 2 * module.hidden_size])
        elif isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def run_lstm(
        self, input_ids: torch.Tensor, selected: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the BiLSTM over the selected positions of each row as one sequence; other positions are skipped.

        Args:
            input_ids: `(B, L)`.
            selected: `(B, L)` bool, the sequence's positions (any layout: left/right padding, second segment);
                at least one per row.

        Returns:
            The embeddings `(B, L, E)` and the LSTM outputs `(B, L, 2H)` (both directions concatenated) at the input
            positions, zero elsewhere, and the final forward and backward states `(2, B, H)`.
        """
        length = input_ids.shape[1]
        lengths = selected.sum(dim=1)
        # A stable sort moves the selected positions to the front in their original order, so packing sees them.
        order = torch.argsort((~selected).to(torch.int32), dim=1, stable=True)
        embeds = self.embeddings(input_ids.gather(1, order))
        packed = pack_padded_sequence(embeds, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_outputs, (final_states, _) = self.lstm(packed)
        outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=length)

        inverse = torch.argsort(order, dim=1).unsqueeze(-1)
        keep = selected.unsqueeze(-1)
        embeds, outputs = (
            states.gather(1, inverse.expand(-1, -1, states.shape[-1])) * keep for states in (embeds, outputs)
        )
        return embeds, outputs, final_states

    def _output_flags(self, output_hidden_states: bool | None, return_dict: bool | None) -> tuple[bool, bool]:
        """The forward's `output_hidden_states` and `return_dict`, the config's where not given."""
        hidden = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return hidden, self.config.return_dict if return_dict is None else return_dict

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits `(..., num_labels)` of features `(..., classifier_features)`: dropout -> ReLU layer -> linear."""
        return self.classifier(torch.relu(self.fc(self.dropout(features))))

    def _segments(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """The `(B, L)` bool mask of each sentence (all real tokens without `attention_mask`), checked to be
        non-empty in every example."""
        if attention_mask is None:
            self.warn_if_padding_and_no_attention_mask(input_ids, attention_mask)
            attention_mask = torch.ones_like(input_ids)
        real = attention_mask.bool()
        if not self.config.is_pair:
            segments = {"the sentence": real}
        elif token_type_ids is None:
            raise ValueError(
                "`token_type_ids` is None, but this BiLSTM student has `is_pair=True` and splits the pair by it. "
                "Pass the `token_type_ids` the tokenizer returns for `tokenizer(text_a, text_b)`."
            )
        else:
            segments = {"sentence A": real & (token_type_ids == 0), "sentence B": real & (token_type_ids == 1)}
        for name, selected in segments.items():
            empty = (~selected.any(dim=1)).nonzero().flatten().tolist()
            if empty:
                raise ValueError(
                    f"`attention_mask`/`token_type_ids` leave {name} empty in batch rows {empty}. Single sentences "
                    "need at least one real token; pairs need `token_type_ids` 0 on sentence A and 1 on sentence B "
                    "(use `tokenizer(text_a, text_b)`, and `is_pair=False` for single-sentence tasks)."
                )
        return list(segments.values())


class BiLSTMForSequenceClassification(BiLSTMPreTrainedModel):
    """Embeddings -> one bidirectional LSTM layer -> pooling -> dropout -> ReLU layer -> logits.

    Pair mode (`config.is_pair`): sentence A is the real tokens with `token_type_ids == 0` (with `[CLS]` and the first
    `[SEP]`), sentence B those with `token_type_ids == 1`; both go through the same encoder and the classifier sees
    `[h1, h2, h1 * h2, |h1 - h2|]`. Padding never changes the result: the LSTM runs on packed sequences.
    """

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config, classifier_features=2 * config.hidden_size * (4 if config.is_pair else 1))

    def encode(
        self, input_ids: torch.Tensor, selected: torch.Tensor, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Encode the selected positions of each row as one sentence.

        Args:
            input_ids: `(B, L)`.
            selected: `(B, L)` bool, the sentence's positions (any layout: left/right padding, second segment);
                at least one per row.
            output_hidden_states: also return the per-position states.

        Returns:
            The pooled sentence vectors `(B, 2H)` and, if asked for, the hidden states `(embeddings (B, L, E), LSTM
            outputs (B, L, 2H))` at the original positions, zero elsewhere (else None).
        """
        embeds, outputs, final_states = self.run_lstm(input_ids, selected)
        pooled = pool_lstm_outputs(outputs, final_states, selected, self.config.pooling)
        return pooled, (embeds, outputs) if output_hidden_states else None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple[torch.Tensor, ...]:
        """Logits `(B, num_labels)`; loss (CE, MSE when `num_labels == 1`, BCE for multi-label) when `labels` given.

        `hidden_states`, when asked for, is `(embeddings (B, L, E), LSTM outputs (B, L, 2H))` at the input
        positions, zero at padding; in pair mode each sentence is encoded on its own and written to its positions.
        Extra keyword arguments (e.g. `position_ids` from a BERT collator) are ignored.
        """
        output_hidden_states, return_dict = self._output_flags(output_hidden_states, return_dict)

        pooled, hidden_states = [], None
        for selected in self._segments(input_ids, attention_mask, token_type_ids):
            sentence, states = self.encode(input_ids, selected, output_hidden_states)
            pooled.append(sentence)
            if output_hidden_states:
                # Segments are disjoint and zero outside their own positions, so adding merges them.
                hidden_states = states if hidden_states is None else tuple(map(torch.add, hidden_states, states))
        if self.config.is_pair:
            h1, h2 = pooled
            features = torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], dim=-1)
        else:
            features = pooled[0]
        logits = self.classify(features)

        loss = None if labels is None else self._loss(logits, labels)
        output = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states)
        return output if return_dict else output.to_tuple()

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Same problem-type rules as `BertForSequenceClassification`."""
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            if self.num_labels == 1:
                return nn.functional.mse_loss(logits.view(-1), labels.view(-1).to(logits.dtype))
            return nn.functional.mse_loss(logits, labels.to(logits.dtype))
        if self.config.problem_type == "single_label_classification":
            return nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class BiLSTMForTokenClassification(BiLSTMPreTrainedModel):
    """Embeddings -> one bidirectional LSTM layer -> per position: dropout -> ReLU layer -> logits (a tagger: NER).

    Each position's features are its LSTM output, both directions concatenated (`2 * hidden_size`); `pooling` does
    not apply. Padding never changes the real positions' logits: the LSTM runs on packed sequences. One sentence per
    row (`config.is_pair` must be False); `token_type_ids` are ignored.
    """

    def __init__(self, config: BiLSTMConfig):
        if config.is_pair:
            raise ValueError(
                "`is_pair` is True, but BiLSTMForTokenClassification labels the tokens of one sentence per row; "
                "sentence-pair token classification is not supported. Use `is_pair=False`."
            )
        super().__init__(config, classifier_features=2 * config.hidden_size)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> TokenClassifierOutput | tuple[torch.Tensor, ...]:
        """Logits `(B, L, num_labels)`; with `labels` `(B, L)`, the cross-entropy over the positions whose label is
        not -100 (special tokens, padding and continuation sub-tokens carry -100).

        Padded positions get the logits of a zero LSTM output (they carry no label). `hidden_states`, when asked for,
        is `(embeddings (B, L, E), LSTM outputs (B, L, 2H))`, zero at padding. Extra keyword arguments (e.g.
        `position_ids` from a BERT collator) are ignored.
        """
        output_hidden_states, return_dict = self._output_flags(output_hidden_states, return_dict)

        (sentence,) = self._segments(input_ids, attention_mask, token_type_ids)
        embeds, outputs, _ = self.run_lstm(input_ids, sentence)
        logits = self.classify(outputs)

        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1), ignore_index=-100)
        hidden_states = (embeds, outputs) if output_hidden_states else None
        output = TokenClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states)
        return output if return_dict else output.to_tuple()


__all__ = [
    "BiLSTMForSequenceClassification",
    "BiLSTMForTokenClassification",
    "BiLSTMPreTrainedModel",
    "pool_lstm_outputs",
]
