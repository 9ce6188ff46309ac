"""`DistillationTrainer`: a `Trainer` whose loss distils a frozen teacher into the trained model (the student)."""

import inspect
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedModel, TrainerCallback
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.modeling_utils import unwrap_model
from transformers.utils import logging

from . import guards
from .config import DistillationConfig
from .data import TaskSpec
from .data.task_spec import (
    AUGMENTED_COLUMN,
    MULTI_LABEL_CLASSIFICATION,
    SEQUENCE_CLASSIFICATION,
    TOKEN_CLASSIFICATION,
    TRANSFER_COLUMN,
)
from .data.tokenization import MODEL_INPUT_COLUMNS, STUDENT_LABELS, STUDENT_PREFIX
from .distributed import prepare_teacher
from .ensemble import TeacherEnsemble
from .methods import LABELLED_TERMS, DistillationMethod, LossInputs, get_method
from .model_card import build_model_card, hub_model_id
from .peft_utils import classifier_auto_class, is_token_classifier, load_teacher, merge_peft_model
from .sorted_eval import LengthSortedEvaluation
from .summary import count_parameters
from .teacher_cache import (
    CACHE_ROW_COLUMN,
    TeacherCache,
    cast_teacher,
    load_or_build_teacher_cache,
    teacher_autocast,
)

if TYPE_CHECKING:
    from peft import PeftModel

logger = logging.get_logger(__name__)

# Batch columns that are not model inputs: `idx` keys the example (augmented data), `augmented` marks rows made by
# augmentation, `teacher_cache_row` the row of the teacher cache.
_NON_MODEL_COLUMNS = ("labels", "idx", AUGMENTED_COLUMN, TRANSFER_COLUMN, CACHE_ROW_COLUMN)
IGNORE_INDEX = -100


@dataclass(frozen=True)
class ItemCounts:
    """`num_items_in_batch` of a `DistillationTrainer`, over the whole accumulated batch (summed over processes): its
    rows, its predictions that count (the rows; for token classification the labelled tokens) and how many of those
    have a hard label the CE trains on (not -100, not of an augmented row)."""

    examples: torch.Tensor
    predictions: torch.Tensor
    labelled: torch.Tensor


def count_labelled(labels: torch.Tensor) -> torch.Tensor:
    """Predictions with a hard label: labels not -100 (multi-label: rows of `(N, C)` float labels without -100)."""
    if labels.dim() == 2 and labels.is_floating_point():
        return labels.ne(IGNORE_INDEX).all(dim=-1).sum()
    return labels.ne(IGNORE_INDEX).sum()


class _ClearGradients(TrainerCallback):
    """Clears the gradients of weights trained beside the model (TinyBERT's W_h) after each optimizer step, as
    Trainer's `model.zero_grad()` does for the model's own: without it they would sum over all steps."""

    def __init__(self, parameters: list[nn.Parameter]):
        self.parameters = parameters

    def on_step_end(self, args, state, control, **kwargs):
        for parameter in self.parameters:
            parameter.grad = None


class DistillationTrainer(LengthSortedEvaluation):
    """`Trainer` for a student model distilled from `teacher_model`.

    Use it like `Trainer`, with a `DistillationConfig` as `args` and the teacher as an extra argument:

    ```python
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=DistillationConfig(...),
                                  train_dataset=..., eval_dataset=..., processing_class=tokenizer)
    trainer.train()
    ```

    The teacher (a model, a `PeftModel`, or a path/Hub id of either, LoRA adapters included) is merged if it is an
    adapter and runs in eval mode without gradients on the student's device, held in `args.teacher_dtype` (cast
    once here; its logits reach the losses in float32); it is never trained, never wrapped for distributed training
    and never part of a checkpoint. Each loss term is logged separately (`loss_ce`, `loss_kd`, `loss_pkd`, …, with
    `eval_` variants). Evaluation and prediction run length-sorted (`hf_distill.sorted_eval`).
    """

    def __init__(
        self,
        model: PreTrainedModel | nn.Module | None = None,
        teacher_model: "PreTrainedModel | PeftModel | str | None" = None,
        args: DistillationConfig | None = None,
        **kwargs,
    ):
        if args is None:
            args = DistillationConfig()
        if not isinstance(args, DistillationConfig):
            raise ValueError(
                f"`args` must be a `DistillationConfig` (it carries the method and loss weights), got "
                f"{type(args).__name__}. Build one with `DistillationConfig(output_dir=..., method=...)`."
            )
        if model is None:
            raise ValueError("`model` (the student) is required.")
        if teacher_model is None:
            raise ValueError("`teacher_model` is required: pass the fine-tuned teacher model or its path/Hub id.")
        teacher_model = self._load_teachers(teacher_model, model, args)
        train_dataset = kwargs.get("train_dataset")
        cross_tokenizer = STUDENT_PREFIX + "input_ids" in (getattr(train_dataset, "column_names", None) or ())
        _check_compatible(teacher_model, model, cross_tokenizer)
        super().__init__(model=model, args=args, **kwargs)
        # A token classifier predicts at every labelled token (the first sub-token of each word), not once per row.
        self.predicts_per_token = is_token_classifier(model)
        datasets = (train_dataset, kwargs.get("eval_dataset"))
        if any(STUDENT_LABELS in (getattr(data, "column_names", None) or ()) for data in datasets):
            # A cross-tokenizer token task: the student's predictions line up with its own tokens' labels, so those
            # are what evaluation scores them against (the teacher side's `labels` select the teacher's tokens).
            self.label_names = [STUDENT_LABELS]
        guards.check_distributed_launch(args)  # every process one rank of one job, however the trainer is launched
        # Our compute_loss divides summed per-example losses by the number of examples of the whole accumulated
        # batch (`num_items_in_batch`), so Trainer must count them and must not divide by the accumulation steps.
        self.model_accepts_loss_kwargs = True
        self.teacher = self._prepare_teacher(teacher_model)
        # Which tokenizer outputs each forward names, read once: a DistilBERT student takes no `token_type_ids`.
        self._teacher_input_names = named_model_inputs(self.teacher)
        self._student_input_names = named_model_inputs(model)
        # The method's state for this student and teacher (layer maps, TinyBERT's W_h): see `DistillationMethod`.
        # Intermediate-layer terms read one teacher: the ensemble's designated one (`intermediate_teacher`).
        self.intermediate_teacher = getattr(self.teacher, "intermediate", self.teacher)
        if cross_tokenizer and get_method(args.method).reads_aligned_tokens:
            raise ValueError(
                f"`method` {args.method!r} compares teacher and student token by token, but they read the text with "
                "different tokenizers (the training set has `student_input_ids`), which split it differently. Use "
                "kd, pkd or bilstm, whose terms compare per-example quantities, or the teacher's tokenizer."
            )
        self.distillation_method: DistillationMethod = get_method(args.method)(args, model, self.intermediate_teacher)
        if self._extra_parameters():
            self.add_callback(_ClearGradients(self._extra_parameters()))
        self.teacher_cache: TeacherCache | None = self._prepare_teacher_cache() if args.teacher_cache else None
        # What `run_distill.py` adds to the model card: `task`, `summary_rows`, `teacher`, `dataset`, `local_data`,
        # `base_model`, `training_rows` (the keyword arguments of `build_model_card`).
        self.model_card_details: dict[str, Any] = {}
        self._term_buffer: dict[str, dict[str, list[torch.Tensor]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }

    # -- setup ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _load_teachers(teacher_model, student: nn.Module, args: DistillationConfig) -> nn.Module:
        """The teacher: a model or a path/Hub id, or a list of them, distilled as one `TeacherEnsemble` at the
        run's temperature (1 for methods without one)."""
        teachers = list(teacher_model) if isinstance(teacher_model, (list, tuple)) else [teacher_model]
        auto_class = classifier_auto_class(student)
        for k, teacher in enumerate(teachers):
            if isinstance(teacher, str):
                teachers[k] = guards.load_pretrained(
                    lambda path: load_teacher(path, argument="teacher_model", auto_class=auto_class),
                    teacher,
                    "teacher_model",
                )
            # A LoRA teacher only runs inference: merged, it is a plain model without the adapter's extra matmuls.
            teachers[k] = merge_peft_model(teachers[k])
        if len(teachers) == 1:
            if args.intermediate_teacher != 0 and not isinstance(teachers[0], TeacherEnsemble):
                raise ValueError(
                    f"`intermediate_teacher` is {args.intermediate_teacher}, but there is one teacher. Drop it, or "
                    "pass several teachers (`teacher_model_name_or_path A B ...`)."
                )
            return teachers[0]
        return TeacherEnsemble(teachers, temperature=args.temperature or 1.0,
                               intermediate_teacher=args.intermediate_teacher)

    def _prepare_teacher(self, teacher: PreTrainedModel) -> PreTrainedModel:
        plugin = self.accelerator.state.deepspeed_plugin if self.is_deepspeed_enabled else None
        deepspeed_config = plugin.deepspeed_config if plugin is not None else None
        teacher, self._teacher_engine = prepare_teacher(teacher, self.args.device, deepspeed_config)
        if self._teacher_engine is None:  # a ZeRO-3 engine holds the teacher in DeepSpeed's precision
            cast_teacher(teacher, self.args.teacher_torch_dtype)
        return teacher

    def _prepare_teacher_cache(self) -> TeacherCache:
        """Open the cache (built first if needed, by the main process while the others wait) and give the training
        rows the column that keys them to it."""
        args = self.args
        if not isinstance(self.train_dataset, Dataset):
            raise ValueError(
                f"`teacher_cache` needs the training set as a `datasets.Dataset` (rows are keyed by position), got "
                f"{type(self.train_dataset).__name__}. Pass a `datasets.Dataset` or drop `teacher_cache`."
            )
        # With node-local storage each node builds its own copy; with shared storage only the global main process.
        with args.main_process_first(local=args.save_on_each_node, desc="teacher cache"):
            cache = load_or_build_teacher_cache(
                args.teacher_cache,
                self.teacher,
                self.train_dataset,
                method=args.method,
                teacher_layers=self.distillation_method.cached_teacher_layers(),
                teacher_autocast_dtype=args.teacher_autocast_dtype,
                overwrite=args.overwrite_teacher_cache,
                batch_size=args.per_device_eval_batch_size,
                show_progress=not args.disable_tqdm,
            )
        self.train_dataset = cache.attach(self.train_dataset)
        return cache

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        student_inputs = [STUDENT_PREFIX + name for name in MODEL_INPUT_COLUMNS]
        # Trainer keeps the columns the student's forward names; the teacher may read more: a BERT teacher needs
        # the `token_type_ids` of sentence pairs that a DistilBERT or ModernBERT student does not take.
        for column in (*_NON_MODEL_COLUMNS, *student_inputs, STUDENT_LABELS, *self._teacher_input_names):
            if column not in self._signature_columns:
                self._signature_columns.append(column)

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> ItemCounts | None:
        """Rows, predictions and labelled predictions of the accumulated batch, summed over processes: every term is
        a mean over one of them."""
        if not batch_samples or "input_ids" not in batch_samples[0]:
            return None
        examples = predictions = labelled = 0
        for batch in batch_samples:
            mask = self.prediction_mask(batch)
            examples += len(batch["input_ids"])
            predictions += len(batch["input_ids"]) if mask is None else int(mask.sum())
            labels = self.hard_labels(batch)
            labelled += 0 if labels is None else int(count_labelled(labels))
        counts = torch.tensor([examples, predictions, labelled], device=device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            counts = self.accelerator.gather(counts).view(-1, 3).sum(dim=0)
        return ItemCounts(examples=counts[0], predictions=counts[1], labelled=counts[2])

    def prediction_mask(self, inputs: dict[str, torch.Tensor], side: str = "student") -> torch.Tensor | None:
        """Token classification: the `(B, L)` positions whose `labels` are not -100, the predictions that count;
        None when each row is one prediction (sequence and multi-label classification). In a cross-tokenizer batch
        the student's positions are those of `student_labels`, the teacher's (`side="teacher"`) those of `labels`:
        the same words in the same order (`tokenize_for_student`)."""
        labels = inputs.get(_labels_column(inputs) if side == "student" else "labels")
        if not self.predicts_per_token:
            return None
        if labels is None or labels.dim() != 2:
            raise ValueError(
                "The student predicts per token (token classification), but the batch has no `(batch, length)` "
                "`labels`, which mark the tokens that count (the first sub-token of each word). Tokenize the data "
                "with `hf_distill.data.tokenize_dataset` and collate it with `DataCollatorForTokenClassification`."
            )
        return labels.ne(IGNORE_INDEX)

    def hard_labels(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The batch's `labels` (a cross-tokenizer token batch: the student's, `student_labels`) as the hard-label CE
        reads them: -100 (ignored) on unlabelled transfer rows (marked `transfer`, whose label column holds a
        placeholder) and on rows marked `augmented`, whose copied label the augmented text may no longer have, unless
        `train_ce_on_augmented`."""
        labels = inputs.get(_labels_column(inputs))
        if labels is None:
            return None
        unlabelled = [inputs[TRANSFER_COLUMN]] if TRANSFER_COLUMN in inputs else []
        if AUGMENTED_COLUMN in inputs and not self.args.train_ce_on_augmented:
            unlabelled.append(inputs[AUGMENTED_COLUMN])
        for rows in unlabelled:
            labels = labels.masked_fill(rows.bool().view(-1, *([1] * (labels.dim() - 1))), IGNORE_INDEX)
        return labels

    # -- weights the method trains beside the student (TinyBERT's W_h): in the optimizer and checkpoints ---------
    def _extra_parameters(self) -> list[nn.Parameter]:
        module = self.distillation_method.extra_module()
        return [] if module is None else list(module.parameters())

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        module = self.distillation_method.extra_module()
        if module is not None:
            known = {id(p) for group in optimizer.param_groups for p in group["params"]}
            new = [(name, p) for name, p in module.named_parameters() if id(p) not in known]
            for suffix, decay in (("weight", self.args.weight_decay), ("bias", 0.0)):
                params = [p for name, p in new if name.endswith(suffix)]
                if params:
                    optimizer.add_param_group({"params": params, "weight_decay": decay})
        return optimizer

    def _clip_grad_norm(self, model):
        """`max_grad_norm` clips the student and the method's extra weights together, as one set of trained weights
        (under FSDP, apart: each to the norm)."""
        extra = self._extra_parameters()
        if not extra:
            return super()._clip_grad_norm(model)
        if self.is_fsdp_enabled:
            # FSDP's clip needs exactly the wrapped model's parameters (it reduces the norm over shards): the
            # student's norm (the one logged) comes from it, and the replicated extra weights are clipped on their own.
            norm = super()._clip_grad_norm(model)
            torch.nn.utils.clip_grad_norm_(extra, self.args.max_grad_norm)
            return norm
        return self.accelerator.clip_grad_norm_([*model.parameters(), *extra], self.args.max_grad_norm)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            self.distillation_method.save_checkpoint(output_dir)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is not None:
            self.distillation_method.load_checkpoint(checkpoint)
        super()._load_optimizer_and_scheduler(checkpoint)

    # -- loss ----------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Teacher outputs first (cached, or a no-grad pass), then the student's, each inside the method's capture;
        then the method's loss terms, each divided by the rows (or labelled rows) of the accumulated batch."""
        method = self.distillation_method
        labels = self.hard_labels(inputs)
        shared_inputs = {k: v for k, v in inputs.items()
                         if k not in _NON_MODEL_COLUMNS and not k.startswith(STUDENT_PREFIX)}
        teacher_inputs = only_named_inputs(self._teacher_input_names, shared_inputs)
        # A cross-tokenizer batch holds the student's own tokenization of the same rows (`student_input_ids`, ...).
        model_inputs = {k[len(STUDENT_PREFIX):]: v for k, v in inputs.items()
                        if k.startswith(STUDENT_PREFIX) and k != STUDENT_LABELS}
        model_inputs = only_named_inputs(self._student_input_names, model_inputs or shared_inputs)
        with method.capture(self.intermediate_teacher) as teacher_captures:
            teacher_outputs = self._teacher_outputs(inputs, teacher_inputs, method.needs_hidden_states)
        with method.capture(model) as student_captures:
            student_outputs = model(**model_inputs, output_hidden_states=method.needs_hidden_states)
        attention_mask = model_inputs.get("attention_mask")
        if attention_mask is None:
            attention_mask = torch.ones_like(model_inputs["input_ids"])
        mask = self.prediction_mask(inputs)
        predictions = None
        if mask is not None:
            teacher_logits = teacher_outputs.logits
            # Cached teacher outputs of a token task hold the labelled positions only, already in this order.
            predictions = (student_outputs.logits[mask], teacher_logits if teacher_logits.dim() == 2 else
                           teacher_logits[self.prediction_mask(inputs, side="teacher")])
            if predictions[0].shape != predictions[1].shape:
                raise ValueError(
                    f"The student predicts at {predictions[0].size(0)} labelled tokens of this batch, the teacher "
                    f"at {predictions[1].size(0)}: the batch's `labels` select other tokens than the teacher's "
                    "outputs were taken at. Keep the labels the data pipeline made (a custom `data_collator` must "
                    "not change them), or rebuild the `teacher_cache` for this data."
                )
            labels = labels[mask]
        is_multi_label = getattr(self.model.config, "problem_type", None) == MULTI_LABEL_CLASSIFICATION
        terms = method.loss_terms(
            LossInputs(student_outputs, teacher_outputs, labels, attention_mask, student_captures, teacher_captures,
                       predictions, is_multi_label)
        )
        batch_size = student_outputs.logits.size(0)
        batch_predictions = batch_size if mask is None else mask.sum()
        batch_labelled = batch_predictions if labels is None else count_labelled(labels)
        if isinstance(num_items_in_batch, ItemCounts):
            examples, predictions_count, labelled = (
                num_items_in_batch.examples, num_items_in_batch.predictions, num_items_in_batch.labelled
            )
        elif num_items_in_batch is not None:  # a plain count of rows, all taken as labelled
            examples = predictions_count = labelled = num_items_in_batch
        else:
            examples, predictions_count, labelled = batch_size, batch_predictions, batch_labelled
        # A batch of augmented rows only has a CE sum of 0: clamping keeps 0 / 0 from turning the loss into NaN.
        labelled = torch.as_tensor(labelled).clamp(min=1)
        predictions_count = torch.as_tensor(predictions_count).clamp(min=1)
        loss = sum(weight * value / self._term_denominator(name, examples, predictions_count, labelled)
                   for name, (weight, value) in terms.items())
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # DDP averages gradients over processes while the denominator already counts every process's examples.
            loss = loss * self.accelerator.num_processes
        if model.training:
            step = self.state.global_step + 1
            guards.check_finite_loss(loss, terms, step, {"student logits": student_outputs.logits})

        buffer = self._term_buffer["train" if model.training else "eval"]
        for name, (_, value) in terms.items():
            rows = self._term_denominator(name, batch_size, batch_predictions, batch_labelled)
            if rows:  # a batch without labelled rows says nothing about the CE
                buffer[name].append(value.detach() / rows)
        if return_outputs:
            return loss, SequenceClassifierOutput(loss=loss, logits=student_outputs.logits)
        return loss

    def _term_denominator(self, name: str, examples, predictions, labelled):
        """What a term is averaged over: labelled predictions (the CE), examples (the method's intermediate-layer
        `example_terms`) or predictions (every other term)."""
        if name in LABELLED_TERMS:
            return labelled
        return examples if name in self.distillation_method.example_terms else predictions

    def _teacher_outputs(self, inputs, model_inputs, output_hidden_states: bool):
        """Cached outputs for rows of the cached training set, else a no-grad teacher pass (no cache, evaluation)."""
        if self.teacher_cache is not None and CACHE_ROW_COLUMN in inputs:
            return self.teacher_cache.lookup(inputs[CACHE_ROW_COLUMN])
        with torch.no_grad(), teacher_autocast(self.args.teacher_autocast_dtype, self.args.device):
            outputs = self.teacher(**model_inputs, output_hidden_states=output_hidden_states)
        # A bf16/fp16 teacher's logits in float32, as the cache holds them; hidden states and attention maps stay in
        # its dtype (PKD reads only [CLS]) and every loss upcasts its inputs (`hf_distill.losses` computes in fp32).
        outputs.logits = outputs.logits.float()
        return outputs

    # -- logging -------------------------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        buffer = self._term_buffer[mode]
        for name, values in buffer.items():
            # Each process buffered only its own batches; Trainer calls `log` on every process, so average them all.
            logs[prefix + name] = self.accelerator.gather(torch.stack(values).mean()).mean().item()
        buffer.clear()
        super().log(logs, start_time)

    # -- Hub -----------------------------------------------------------------------------------------------------
    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
    ) -> None:
        """Write the distillation model card (`hf_distill.model_card.build_model_card`) to `output_dir/README.md`.

        `push_to_hub` calls this before uploading, so a student pushed from any code carries the same card as one
        pushed by `run_distill.py`, which fills `model_card_details` (task, closing table, data source); without
        them the card describes the task from the student's labels and its latest evaluation. The arguments are
        Trainer's: `tags` are added, `model_name` names the repo (the full `hub_model_id` when it is that repo),
        `finetuned_from` is the Hub `base_model` unless the details name one, `dataset` a Hub dataset id.
        """
        if not self.is_world_process_zero():
            return
        details = dict(self.model_card_details)
        hub_id = self.args.hub_model_id
        if hub_id and model_name in (None, hub_id.split("/")[-1]):
            model_name = hub_id
        extra_tags = (tags,) if isinstance(tags, str) else tuple(tags or ())
        card = build_model_card(
            student=self.model,
            teacher=details.pop("teacher", None) or getattr(self.teacher, "name_or_path", "") or "the teacher",
            args=self.args,
            task=details.pop("task", None) or self._card_task(dataset),
            summary_rows=details.pop("summary_rows", None) or [self._card_student_row()],
            dataset=details.pop("dataset", dataset if isinstance(dataset, str) else None),
            base_model=details.pop("base_model", None) or hub_model_id(finetuned_from),
            model_name=model_name or details.pop("model_name", None),
            tags=extra_tags,
            **details,
        )
        card.save(f"{self.args.output_dir}/README.md")

    def _card_task(self, dataset: str | None) -> TaskSpec:
        """The task as the student's config and the latest evaluation describe it (no `TaskSpec` was given)."""
        config = getattr(unwrap_model(self.model), "config", None)
        id2label = getattr(config, "id2label", None) or {}
        label_names = None if getattr(config, "num_labels", 2) == 1 else tuple(id2label[i] for i in sorted(id2label))
        metrics = tuple(name[len("eval_"):] for name in self._latest_eval_metrics()) or ("loss",)
        if is_token_classifier(unwrap_model(self.model)):
            task_type = TOKEN_CLASSIFICATION
        elif getattr(config, "problem_type", None) == MULTI_LABEL_CLASSIFICATION:
            task_type = MULTI_LABEL_CLASSIFICATION
        else:
            task_type = SEQUENCE_CLASSIFICATION
        return TaskSpec(dataset if isinstance(dataset, str) else "custom", (), label_names, metrics,
                        task_type=task_type)

    def _latest_eval_metrics(self) -> dict[str, float]:
        """The task metrics of the latest evaluation in the log (not its losses or timings)."""
        timings = ("_runtime", "_samples_per_second", "_steps_per_second", "_model_preparation_time")
        for log in reversed(self.state.log_history):
            metrics = {key: value for key, value in log.items() if key.startswith("eval_")}
            if metrics:  # losses (`eval_loss`, `eval_loss_kd`, ...) are not task metrics
                return {key: value for key, value in metrics.items()
                        if not key.startswith("eval_loss") and not key.endswith(timings)}
        return {}

    def _card_student_row(self) -> dict[str, Any]:
        return {
            "model": f"student ({self.args.method})",
            **{name[len("eval_"):]: value for name, value in self._latest_eval_metrics().items()},
            "parameters (M)": count_parameters(self.model) / 1e6,
        }


def _labels_column(inputs: dict[str, torch.Tensor]) -> str:
    """The column of the student's labels: `student_labels` in a cross-tokenizer token batch, else `labels`."""
    return STUDENT_LABELS if STUDENT_LABELS in inputs else "labels"


def named_model_inputs(model: nn.Module) -> tuple[str, ...]:
    """The tokenizer outputs (`input_ids`, `attention_mask`, `token_type_ids`) that `model.forward` names (a PEFT
    wrapper's: its base model's). DistilBERT and ModernBERT take no `token_type_ids`: their forward passes
    swallow unknown keywords, so handing them segment ids would be silently ignored rather than refused."""
    model = unwrap_model(model)
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    parameters = inspect.signature(model.forward).parameters
    return tuple(name for name in MODEL_INPUT_COLUMNS if name in parameters)


def only_named_inputs(named: tuple[str, ...], inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`inputs` without the tokenizer outputs a forward does not name (`named`: its `named_model_inputs`)."""
    return {k: v for k, v in inputs.items() if k not in MODEL_INPUT_COLUMNS or k in named}


def _check_compatible(teacher: PreTrainedModel, student: nn.Module, cross_tokenizer: bool = False) -> None:
    """Fail before training when teacher and student cannot be compared on the same batches (`cross_tokenizer`:
    each reads its own tokenization of them)."""
    student_config = getattr(student, "config", None)
    if student_config is None:
        return
    teacher_head = teacher.intermediate if isinstance(teacher, TeacherEnsemble) else teacher
    if is_token_classifier(teacher_head) != is_token_classifier(student):
        raise ValueError(
            f"The teacher is a {type(teacher_head).__name__} but the student (`model`) a {type(student).__name__}: "
            "one predicts per token, the other per row, so their predictions cannot be compared. Build the student "
            "with the teacher's kind of head (`...ForTokenClassification` or `...ForSequenceClassification`)."
        )
    multi_label = [config.problem_type == MULTI_LABEL_CLASSIFICATION for config in (teacher.config, student_config)]
    if multi_label[0] != multi_label[1]:
        raise ValueError(
            f"The teacher's problem_type is {teacher.config.problem_type!r} but the student's (`model`) is "
            f"{student_config.problem_type!r}: multi-label distillation matches per-label sigmoids, single-label "
            "a softmax, so both must be the same kind. Build the student with the teacher's `problem_type`."
        )
    if teacher.config.num_labels != student_config.num_labels:
        raise ValueError(
            f"The teacher predicts {teacher.config.num_labels} labels but the student (`model`) predicts "
            f"{student_config.num_labels}. Build the student with `num_labels={teacher.config.num_labels}`, or use "
            "the teacher fine-tuned on this task."
        )
    teacher_names, student_names = teacher.config.id2label, student_config.id2label
    if not (has_default_label_names(teacher_names) or has_default_label_names(student_names)) and (
        teacher_names != student_names
    ):
        raise ValueError(
            f"Teacher labels {teacher_names} and student (`model`) labels {student_names} differ: the distillation "
            "terms would compare different classes. Give the student the teacher's id2label/label2id."
        )
    teacher_vocab, student_vocab = teacher.config.vocab_size, getattr(student_config, "vocab_size", None)
    if not cross_tokenizer and student_vocab is not None and teacher_vocab != student_vocab:
        raise ValueError(
            f"Teacher and student read the same `input_ids` but their vocabularies differ (teacher vocab_size="
            f"{teacher_vocab}, student vocab_size={student_vocab}). Build the student with the teacher's tokenizer, "
            "or give the training set the student's own tokenization (`hf_distill.data.tokenize_for_student`)."
        )


def has_default_label_names(id2label: dict[int, str]) -> bool:
    """True for the `LABEL_0, LABEL_1, …` names a config gets when nobody named the labels."""
    return all(name == f"LABEL_{i}" for i, name in id2label.items())
