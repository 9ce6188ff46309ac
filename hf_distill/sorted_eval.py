"""Length-sorted evaluation and prediction: `Trainer.evaluate` and `Trainer.predict` batch the rows longest first, so
each batch pads to little more than its own rows, and hand back predictions, labels and metrics in dataset order.

SST-2 sentences run from 2 to 60 tokens: batched in dataset order, most batches pad every row to a long one. Sorted,
the same rows cost a fraction of the padded positions. The results are those of the unsorted pass up to float
rounding (padding is masked): `predictions[i]` is still row `i`'s, `compute_metrics` sees rows in dataset order.
Token classification predictions, padded per batch and then to the longest batch with -100, are reordered by row;
the positions past a row's length hold padding either way (model outputs at pad tokens, or -100).

Trainer's loss metrics (`eval_loss`, the distillation terms) are means of batch means and weight the last, shorter
batch like a full one; sorting changes which rows that batch holds, so they move by that weighting unless the batch
size divides the row count.
"""

from collections.abc import Mapping
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from accelerate.data_loader import get_sampler
from transformers import Trainer
from transformers.trainer_utils import EvalLoopOutput, EvalPrediction

LENGTH_COLUMN = "input_ids"


def row_lengths(dataset, column: str = LENGTH_COLUMN) -> np.ndarray | None:
    """Tokens in each row's `column`, in row order; None when the rows have no such column (or there are none)."""
    if isinstance(dataset, datasets.Dataset):
        if column not in dataset.column_names or len(dataset) == 0:
            return None
        table = dataset.select_columns([column]).with_format("arrow")[:]
        return pc.list_value_length(table.column(column)).to_numpy()
    if len(dataset) == 0 or not isinstance(dataset[0], Mapping) or column not in dataset[0]:
        return None
    return np.array([len(dataset[i][column]) for i in range(len(dataset))])


class LengthSortedSampler(torch.utils.data.Sampler[int]):
    """The rows longest first, ties in dataset order: the first batch is the largest, so one that does not fit in
    memory fails at the first step, not the last."""

    def __init__(self, lengths: np.ndarray):
        self.order = np.argsort(-np.asarray(lengths), kind="stable")
        self._position = np.empty_like(self.order)
        self._position[self.order] = np.arange(len(self.order))

    def __iter__(self):
        return iter(self.order.tolist())

    def __len__(self) -> int:
        return len(self.order)

    def restore(self, values: Any) -> Any:
        """Per-row `values` in sampler order (an array of rows, or tuples, lists, dicts of them) in dataset order."""
        if values is None:
            return None
        if isinstance(values, (list, tuple)):
            return type(values)(self.restore(value) for value in values)
        if isinstance(values, Mapping):
            return type(values)({name: self.restore(value) for name, value in values.items()})
        return values[self._position]

    def restore_prediction(self, prediction: EvalPrediction) -> EvalPrediction:
        """What `compute_metrics` receives, with its rows in dataset order."""
        return EvalPrediction(predictions=self.restore(prediction.predictions),
                              label_ids=self.restore(prediction.label_ids),
                              inputs=self.restore(prediction.inputs), losses=prediction.losses)


class LengthSortedEvaluation(Trainer):
    """A `Trainer` whose evaluation and prediction passes read the rows in `LengthSortedSampler` order and return
    them in dataset order; the base of `ClassifierTrainer` and `DistillationTrainer`. Set `sort_eval_by_length =
    False` (class or instance) for Trainer's own order."""

    sort_eval_by_length = True

    def _get_eval_sampler(self, eval_dataset) -> torch.utils.data.Sampler | None:
        args = self.args
        # Under several processes Accelerate shards the eval batches across ranks and `gather_for_metrics` trims
        # the rows it repeated to even them out; the gathered order is then Accelerate's to define, so the rows stay
        # in Trainer's order there. Dropping the last batch, per-batch predictions (`eval_do_concat_batches`) and
        # per-batch losses (`include_for_metrics` "loss") leave no row-by-row results to put back in order.
        if (not self.sort_eval_by_length or args.world_size > 1 or args.dataloader_drop_last
                or not args.eval_do_concat_batches or "loss" in args.include_for_metrics):
            return super()._get_eval_sampler(eval_dataset)
        lengths = row_lengths(eval_dataset)
        return super()._get_eval_sampler(eval_dataset) if lengths is None else LengthSortedSampler(lengths)

    def evaluation_loop(self, dataloader, *args, **kwargs) -> EvalLoopOutput:
        sampler = get_sampler(dataloader)
        if not isinstance(sampler, LengthSortedSampler):
            return super().evaluation_loop(dataloader, *args, **kwargs)
        compute_metrics = self.compute_metrics
        if compute_metrics is not None and not self.args.batch_eval_metrics:  # batch metrics accumulate, any order
            self.compute_metrics = lambda prediction: compute_metrics(sampler.restore_prediction(prediction))
        try:
            output = super().evaluation_loop(dataloader, *args, **kwargs)
        finally:
            self.compute_metrics = compute_metrics
        return output._replace(predictions=sampler.restore(output.predictions),
                               label_ids=sampler.restore(output.label_ids))
