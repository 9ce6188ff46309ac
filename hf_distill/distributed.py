"""Where the teacher lives in a multi-process run.

The teacher only runs inference: it is never wrapped for training (no DDP, no FSDP, not in the optimizer). What each
backend needs instead:

- plain data parallelism and FSDP: a full replica on every rank, made identical by a broadcast from rank 0 (with
  FSDP's RAM-efficient loading only rank 0 is guaranteed to hold the checkpoint's weights; the same broadcast is what
  FSDP's `sync_module_states` does for the student);
- DeepSpeed ZeRO-1/2: a full replica too (those stages shard optimizer states and gradients, which a frozen model has
  none of);
- DeepSpeed ZeRO-3: the teacher is partitioned across ranks (transformers loads it under `deepspeed.zero.Init` once a
  ZeRO-3 config is active) and runs as an inference-only DeepSpeed engine built from the training config without its
  optimizer and scheduler, which gathers each layer's weights for its forward pass (the two-model setup of
  Accelerate's "Using multiple models with DeepSpeed" guide). Code that reads the teacher's weights (student weight
  surgery) gathers them first with `gathered_parameters`.
"""

import copy
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers.utils import logging

logger = logging.get_logger(__name__)


def is_partitioned(model: nn.Module) -> bool:
    """Whether `model`'s parameters are DeepSpeed ZeRO-3 partitioned (each rank holds a shard; `p.shape` is empty)."""
    return any(hasattr(parameter, "ds_id") for parameter in model.parameters())


@contextmanager
def gathered_parameters(model: nn.Module):
    """Inside the block a ZeRO-3-partitioned `model` holds its full weights on every rank, for reading; a no-op for
    any other model. Every rank must enter the block: it all-gathers."""
    if not is_partitioned(model):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
        yield


def num_parameters(parameter: nn.Parameter) -> int:
    """Elements of a parameter, counting the whole tensor of a ZeRO-3-partitioned one (not this rank's shard)."""
    return getattr(parameter, "ds_numel", parameter.numel())


def deepspeed_inference_config(train_config: dict, hidden_size: int) -> dict:
    """The ZeRO-3 config of an inference-only engine, from the training run's (resolved) DeepSpeed config.

    The optimizer and scheduler sections go (nothing is trained); batch sizes and precision stay (DeepSpeed checks
    the first, the second casts the teacher as it casts the student). Bucket sizes the Trainer would fill from the
    trained model's width at `train()` ("auto") are filled from the teacher's, with the values transformers'
    DeepSpeed docs give for "auto".
    """
    config = copy.deepcopy(train_config)
    config.pop("optimizer", None)
    config.pop("scheduler", None)
    zero = config["zero_optimization"]
    auto_values = {
        "reduce_bucket_size": hidden_size * hidden_size,
        "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "stage3_param_persistence_threshold": 10 * hidden_size,
    }
    for key, value in auto_values.items():
        if zero.get(key) == "auto":
            zero[key] = value
    unresolved = sorted(_auto_keys(config))
    if unresolved:
        raise ValueError(
            f"The DeepSpeed config still has 'auto' values for {unresolved} when the teacher is prepared. Set them "
            "explicitly in the `deepspeed` config file."
        )
    return config


def _auto_keys(config: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        if isinstance(value, dict):
            keys += _auto_keys(value, f"{prefix}{key}.")
        elif value == "auto":
            keys.append(prefix + key)
    return keys


def broadcast_from_main_process(model: nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (a no-op outside a multi-process run)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if torch.distributed.get_world_size() == 1:
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            torch.distributed.broadcast(tensor.data, src=0)


def prepare_teacher(
    teacher: nn.Module, device: torch.device | str, deepspeed_config: dict | None = None
) -> tuple[nn.Module, Any]:
    """Frozen, in eval mode, placed for inference: returns the teacher to call and, under ZeRO-3, the DeepSpeed
    engine that owns its partitioned weights (keep a reference to it while the teacher is used).

    Args:
        teacher: the teacher model (partitioned or not).
        device: this rank's device for a replicated teacher.
        deepspeed_config: the training run's resolved DeepSpeed config, or None without DeepSpeed. With ZeRO stage 3
            the teacher is partitioned and wrapped in an inference engine; with stages 0-2 it is replicated.
    """
    teacher.requires_grad_(False)
    zero_stage = (deepspeed_config or {}).get("zero_optimization", {}).get("stage", 0)
    engine = None
    if zero_stage == 3:
        import deepspeed

        config = deepspeed_inference_config(deepspeed_config, teacher.config.hidden_size)
        # The engine registers hooks on the module's layers that gather their weights around each forward, so the
        # module itself stays callable (with its config and `output_hidden_states`).
        engine, *_ = deepspeed.initialize(model=teacher, config=config)
        engine.eval()
        logger.info("Teacher: inference-only DeepSpeed ZeRO-3 engine (partitioned across ranks).")
    else:
        if is_partitioned(teacher):
            raise ValueError(
                "The teacher's weights are ZeRO-3 partitioned, but the training config is not ZeRO-3. Load the "
                "teacher under the same DeepSpeed config as the training run."
            )
        teacher.to(device)
        broadcast_from_main_process(teacher)
    teacher.eval()
    return teacher, engine
