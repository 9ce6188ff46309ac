"""Learned maps from the student's width to the teacher's, trained beside the student and never saved in it.

TinyBERT's `W_h` maps student hidden states (methods.md §3); PKD uses one for [CLS] states when the widths differ
(an extension: the paper's students share the teacher's width). The trainer puts a method's projections in the
optimizer and gradient clipping (`DistillationMethod.extra_module`); checkpoints hold them in a file of their own.
"""

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class WidthProjections(nn.Module):
    """Linear maps from the student width `d_S` to the teacher width `d_T`, applied to student hidden states.

    `shared=True` (TinyBERT v1's reference) uses one map for the embeddings and every layer; `False` one per student
    layer in `student_layers`. Initialised like BERT's linear layers (normal, std `initializer_range`, zero bias).
    Under several processes their gradients are averaged across processes (DDP averages only the model it wraps).
    """

    def __init__(
        self,
        student_width: int,
        teacher_width: int,
        student_layers: list[int],
        shared: bool = True,
        initializer_range: float = 0.02,
    ):
        super().__init__()
        self.shared = shared
        names = ["shared"] if shared else [str(layer) for layer in student_layers]
        self.maps = nn.ModuleDict({name: nn.Linear(student_width, teacher_width) for name in names})
        for linear in self.maps.values():
            nn.init.normal_(linear.weight, std=initializer_range)
            nn.init.zeros_(linear.bias)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for parameter in self.parameters():
                parameter.register_hook(_average_gradient_across_processes)

    def forward(self, hidden_states: torch.Tensor, student_layer: int) -> torch.Tensor:
        """`(..., d_S)` states of `student_layer` (0 = embeddings) → `(..., d_T)`."""
        return self.maps["shared" if self.shared else str(student_layer)](hidden_states)


def _average_gradient_across_processes(grad: torch.Tensor) -> torch.Tensor:
    grad = grad.clone()
    torch.distributed.all_reduce(grad)
    return grad / torch.distributed.get_world_size()


def save_projections(projections: WidthProjections | None, checkpoint_dir: str, filename: str) -> None:
    if projections is not None:
        save_file(projections.state_dict(), str(Path(checkpoint_dir) / filename))


def load_projections(
    projections: WidthProjections | None, checkpoint_dir: str, filename: str, device, holder: str
) -> None:
    """Restore `projections` from `checkpoint_dir/filename`; `holder` names the run whose checkpoints hold it."""
    if projections is None:
        return
    path = Path(checkpoint_dir) / filename
    if not path.is_file():
        raise ValueError(
            f"`resume_from_checkpoint` {checkpoint_dir!r} has no {filename}, which a checkpoint of {holder} holds. "
            f"Resume from a checkpoint of the same run."
        )
    projections.load_state_dict(load_file(str(path), device=str(device)))
