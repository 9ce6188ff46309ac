"""`ClassifierTrainer`: the `Trainer` for a classifier trained on its own loss (teacher fine-tuning, PeaKD's PTP,
evaluating the teacher)."""

from .sorted_eval import LengthSortedEvaluation


class ClassifierTrainer(LengthSortedEvaluation):
    """`Trainer` for a classifier that computes its own batch-mean loss.

    Sequence-classification heads ignore `num_items_in_batch`, yet their forward takes `**kwargs`, so plain Trainer
    would skip the division by the accumulation steps and multiply the loss by the number of processes (2× loss,
    gradients and logged losses under `torchrun --nproc_per_node 2`). Evaluation and prediction run length-sorted
    (`hf_distill.sorted_eval`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
