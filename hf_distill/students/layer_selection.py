"""Students that keep a subset of a teacher's transformer layers, as stock model classes.

A student built here is an instance of the teacher's own class (e.g. `BertForSequenceClassification`) with
`num_hidden_layers = k`; it saves and loads with the `Auto*` classes and needs no remote code. Its weights are copied
explicitly from the teacher, or from a pre-trained checkpoint (`init_from`, as in the PKD paper), through a computed
key map with a shape check per tensor (`copy_selected_layers`, which SPS students share). The kept layers are recorded
in the student's config as `distillation_layer_ids` (0-based ids into the source's layers) and `distillation_source`.

Layer ids here are 0-based indices into the encoder's `nn.ModuleList` (unlike `layer_mapping`, where 0 is the
embedding output).
"""

import copy
import os
import re
from collections.abc import Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import logging

from ..distributed import gathered_parameters
from ..guards import check_loaded_weights, load_pretrained
from ..layer_mapping import parse_layer_list

logger = logging.get_logger(__name__)

ENCODER_LAYER_PATHS: dict[str, str] = {}
_DOTTED_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def register_encoder_architecture(model_type: str, layers_path: str) -> None:
    """Declare where the transformer layers of `model_type` live, so layer selection supports it.

    Args:
        model_type: the config's `model_type`, e.g. `"bert"`.
        layers_path: dotted path to the `nn.ModuleList` of layers inside the task-head model, starting with the
            base model's attribute (its `base_model_prefix`), e.g. `"bert.encoder.layer"`.
    """
    if not isinstance(model_type, str) or not model_type:
        raise ValueError(f"`model_type` must be a non-empty string such as 'bert', got {model_type!r}.")
    if not isinstance(layers_path, str) or not _DOTTED_PATH.fullmatch(layers_path):
        raise ValueError(
            f"`layers_path` must be a dotted attribute path with at least two parts, starting with the base model's "
            f"attribute, such as 'bert.encoder.layer'; got {layers_path!r}."
        )
    registered = ENCODER_LAYER_PATHS.get(model_type)
    if registered is not None and registered != layers_path:
        raise ValueError(
            f"`model_type` {model_type!r} is already registered with layers at {registered!r}, got {layers_path!r}. "
            f"Each architecture has one layer path; register a new `model_type` instead."
        )
    ENCODER_LAYER_PATHS[model_type] = layers_path


for _model_type, _layers_path in {
    "bert": "bert.encoder.layer",
    "roberta": "roberta.encoder.layer",
    "xlm-roberta": "roberta.encoder.layer",
    "camembert": "roberta.encoder.layer",
    "electra": "electra.encoder.layer",
    "distilbert": "distilbert.transformer.layer",
    "deberta": "deberta.encoder.layer",
    "deberta-v2": "deberta.encoder.layer",
    "modernbert": "model.layers",
}.items():
    register_encoder_architecture(_model_type, _layers_path)


def _base_prefix(model: PreTrainedModel) -> str:
    """The state-dict prefix of the base model inside `model`: `"bert."` for a head model, `""` for `BertModel`."""
    return "" if model.base_model is model else f"{model.base_model_prefix}."


def _layers_path(model: PreTrainedModel) -> str:
    """The registered layer path of `model`'s architecture, relative to `model` itself."""
    model_type = model.config.model_type
    if model_type not in ENCODER_LAYER_PATHS:
        raise ValueError(
            f"Layer selection does not support model_type {model_type!r} ({type(model).__name__}); supported: "
            f"{', '.join(sorted(ENCODER_LAYER_PATHS))}. Use a model of a supported type, or declare where its "
            f"layers live with `register_encoder_architecture({model_type!r}, '<base>.encoder.layer')`."
        )
    path = ENCODER_LAYER_PATHS[model_type]
    prefix = f"{model.base_model_prefix}."
    # The registry names paths inside head models; a base model is that path without its own attribute.
    if model.base_model is model and path.startswith(prefix):
        path = path[len(prefix) :]
    return path


def get_encoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The `nn.ModuleList` of transformer layers of a supported model (any head class, or the base model)."""
    path = _layers_path(model)
    try:
        layers = model.get_submodule(path)
    except AttributeError as error:
        raise ValueError(
            f"The layers of model_type {model.config.model_type!r} are registered at {path!r}, but "
            f"{type(model).__name__} has no such submodule ({error}). Fix the path given to "
            f"`register_encoder_architecture`."
        ) from error
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(
            f"The layers of model_type {model.config.model_type!r} are registered at {path!r}, which is a "
            f"{type(layers).__name__} in {type(model).__name__}, not an nn.ModuleList. Fix the path given to "
            f"`register_encoder_architecture`."
        )
    return layers


def parse_layer_ids(spec: str | Sequence[int]) -> list[int]:
    """Parse `"0,2,4"` (spaces allowed) or a sequence of ints into `[0, 2, 4]`; order and values are kept as given.

    `layer_mapping.parse_layer_list` with errors naming `student_layer_ids`; an empty spec gives `[]`.
    """
    expected = "integers, as a list such as [0, 2, 4] or a string such as '0,2,4'"
    return parse_layer_list(spec, "student_layer_ids", expected) or []


def resolve_student_layer_ids(
    num_teacher_layers: int, *, num_layers: int | None = None, layer_ids: str | Sequence[int] | None = None
) -> list[int]:
    """The 0-based teacher layers a student keeps, from exactly one of `num_layers` (the first k) or `layer_ids`.

    Explicit ids must be unique, within `[0, num_teacher_layers - 1]` and ascending: the student runs its layers in
    order, so `[3, 1]` would silently reverse the teacher's computation.
    """
    if (num_layers is None) == (layer_ids is None):
        raise ValueError(
            f"Give exactly one of `student_layers` (keep the first k layers) or `student_layer_ids` (keep these "
            f"0-based layers), got student_layers={num_layers!r} and student_layer_ids={layer_ids!r}."
        )
    last = num_teacher_layers - 1
    if num_layers is not None:
        if (
            isinstance(num_layers, bool)
            or not isinstance(num_layers, int)
            or not 1 <= num_layers <= num_teacher_layers
        ):
            raise ValueError(
                f"`student_layers` is {num_layers!r}, but the teacher has {num_teacher_layers} layers. "
                f"Use an integer in [1, {num_teacher_layers}]."
            )
        return list(range(num_layers))
    ids = parse_layer_ids(layer_ids)
    if not ids:
        raise ValueError(
            f"`student_layer_ids` is empty. Give at least one 0-based layer id in [0, {last}], e.g. '0,2'."
        )
    outside = [i for i in ids if not 0 <= i <= last]
    if outside:
        raise ValueError(
            f"`student_layer_ids` contains {', '.join(map(str, outside))}, but the teacher has {num_teacher_layers} "
            f"layers (0-{last}). Use ids in [0, {last}]."
        )
    if len(set(ids)) != len(ids):
        raise ValueError(
            f"`student_layer_ids` {ids} repeats a layer; each teacher layer can be kept once. "
            f"Use unique ids, e.g. {sorted(set(ids))}."
        )
    if ids != sorted(ids):
        raise ValueError(
            f"`student_layer_ids` {ids} is not in ascending order; the student runs its layers in the given order, "
            f"so it must follow the teacher's. Use {sorted(ids)}."
        )
    return ids


def _load_init_source(init_from: str | os.PathLike | PreTrainedModel, teacher: PreTrainedModel) -> PreTrainedModel:
    """Load `init_from` as a base model after checking it matches the teacher's architecture and width."""
    if isinstance(init_from, PreTrainedModel):
        config = init_from.config
    elif isinstance(init_from, (str, os.PathLike)):
        config = load_pretrained(AutoConfig.from_pretrained, init_from, "student_init_from")
    else:
        raise ValueError(
            f"`student_init_from` must be a local path, a Hub id or a PreTrainedModel, got {type(init_from).__name__}."
        )
    expected = teacher.config
    label = type(init_from).__name__ if isinstance(init_from, PreTrainedModel) else repr(str(init_from))
    for field in ("model_type", "hidden_size", "num_attention_heads"):
        received, wanted = getattr(config, field, None), getattr(expected, field)
        if received != wanted:
            raise ValueError(
                f"`student_init_from` ({label}) has {field}={received!r}, but the teacher has {field}={wanted!r}. "
                f"Use a checkpoint of the teacher's architecture and size, e.g. the pre-trained model the teacher "
                f"was fine-tuned from."
            )
    if isinstance(init_from, PreTrainedModel):
        return init_from
    model, loading_info = load_pretrained(
        AutoModel.from_pretrained, init_from, "student_init_from", output_loading_info=True
    )
    check_loaded_weights(model, loading_info, str(init_from), "student_init_from", new_head_ok=True)
    return model


def _source_key_map(
    student: PreTrainedModel, source: PreTrainedModel, layer_ids: Sequence[int], layers_path: str | None = None
) -> dict[str, str | None]:
    """Map each student state-dict key to the source key it is copied from, or None when the source lacks it.

    Student `<base>.<layers>.{j}.*` comes from source `<base>.<layers>.{layer_ids[j]}.*`; every other tensor keeps
    its name. Keys are compared relative to each model's base model, so a head-model student can be filled from a
    base-model checkpoint (`encoder.layer.0.*` vs `bert.encoder.layer.0.*`); head tensors such as the classifier
    then have no source. `layers_path` is the layer list's path inside the student's base model (default: the
    registered path of its architecture).
    """
    student_prefix, source_prefix = _base_prefix(student), _base_prefix(source)
    layers_prefix = f"{layers_path or _layers_path(student.base_model)}."
    source_keys = set(source.state_dict())
    key_map = {}
    for key in student.state_dict():
        if key.startswith(student_prefix):
            relative = key[len(student_prefix) :]
            if relative.startswith(layers_prefix):
                index, rest = relative[len(layers_prefix) :].split(".", 1)
                relative = f"{layers_prefix}{layer_ids[int(index)]}.{rest}"
            candidate = source_prefix + relative
        else:
            candidate = key if source_prefix else None
        key_map[key] = candidate if candidate in source_keys else None
    return key_map


def _layer_tensor_names(layer: nn.Module) -> set[str]:
    return set(layer.state_dict())


def _check_same_layer_structure(
    student: PreTrainedModel,
    source: PreTrainedModel,
    layer_ids: Sequence[int],
    source_label: str,
    layers_path: str | None,
) -> None:
    """Refuse a copy where student layer j and source layer `layer_ids[j]` hold different tensors.

    Some architectures build a layer by its position: ModernBERT's layer 0 has no `attn_norm` (the embeddings'
    norm stands in for it), every later layer has one. Moving such a layer to another position would drop a tensor
    or leave a freshly initialised one in the middle of the copied computation, so the student would silently
    differ from the teacher's layer.
    """
    student_layers = student.base_model.get_submodule(layers_path or _layers_path(student.base_model))
    source_layers = get_encoder_layers(source)
    for student_index, source_index in enumerate(layer_ids):
        wanted = _layer_tensor_names(student_layers[student_index])
        given = _layer_tensor_names(source_layers[source_index])
        if wanted != given:
            only_source = ", ".join(sorted(given - wanted)) or "none"
            only_student = ", ".join(sorted(wanted - given)) or "none"
            raise ValueError(
                f"{source_label.capitalize()} layer {source_index} cannot become student layer {student_index}: "
                f"{type(student).__name__} builds its layers by position, and the two hold different tensors "
                f"(only in the {source_label} layer: {only_source}; only in the student layer: {only_student}). "
                f"Choose `student_layer_ids` that keep such layers at their position (for ModernBERT, whose first "
                f"layer has no `attn_norm`, start with layer 0), or use `student_layers` (the first k layers)."
            )


def copy_selected_layers(
    student: PreTrainedModel,
    source: PreTrainedModel,
    layer_ids: Sequence[int],
    *,
    source_label: str = "teacher",
    layers_path: str | None = None,
) -> list[str]:
    """The one weight copy of plain and SPS students: student layer j <- `source` layer `layer_ids[j]`, every other
    tensor by name, and the map recorded in the student's config.

    Computes the key map (`_source_key_map`), copies under `torch.no_grad()` (gathering a ZeRO-3-partitioned
    source) with a shape check per tensor, logs "student layer j <- {source_label} layer i" per layer and the
    tensors the source lacks (they keep their fresh initialisation), and records `distillation_layer_ids` (the
    0-based source layers) and `distillation_source` (its name or path, None for an unsaved in-memory model).

    Returns:
        The student state-dict keys the source lacks, left freshly initialised (empty when every tensor was copied).

    Raises:
        ValueError: a source tensor's shape differs from the student's, naming both keys and shapes.
    """
    _check_same_layer_structure(student, source, layer_ids, source_label, layers_path)
    key_map = _source_key_map(student, source, layer_ids, layers_path)
    with torch.no_grad(), gathered_parameters(source):
        student_state, source_state = student.state_dict(), source.state_dict()
        for key, source_key in key_map.items():
            if source_key is None:
                continue
            target, value = student_state[key], source_state[source_key]
            if target.shape != value.shape:
                fix = (
                    "Use a `student_init_from` checkpoint with the teacher's dimensions (vocab_size, "
                    "intermediate_size, max_position_embeddings, ...)."
                    if source_label != "teacher"
                    else "Build the student from the teacher's own config."
                )
                raise ValueError(
                    f"Cannot copy {source_label} tensor `{source_key}` of shape {tuple(value.shape)} into student "
                    f"tensor `{key}` of shape {tuple(target.shape)} (the student follows the teacher's config). {fix}"
                )
            target.copy_(value)
    for student_index, source_index in enumerate(layer_ids):
        logger.info(f"student layer {student_index} <- {source_label} layer {source_index}")
    fresh = [key for key, source_key in key_map.items() if source_key is None]
    if fresh:
        logger.info(f"Freshly initialised (not in {source_label}): {', '.join(fresh)}")
    student.config.distillation_layer_ids = list(layer_ids)
    student.config.distillation_source = source.name_or_path or None
    return fresh


def select_layers_in_config(config: PretrainedConfig, layer_ids: Sequence[int]) -> None:
    """Make a copy of the teacher's config describe the kept layers, in place: `num_hidden_layers = k`, and
    per-layer entries (ModernBERT's `layer_types`, global vs sliding-window attention) follow the kept layers."""
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == config.num_hidden_layers:
        config.layer_types = [layer_types[i] for i in layer_ids]
    config.num_hidden_layers = len(layer_ids)


def build_student_from_teacher(
    teacher: PreTrainedModel,
    *,
    num_layers: int | None = None,
    layer_ids: str | Sequence[int] | None = None,
    init_from: str | os.PathLike | PreTrainedModel | None = None,
) -> PreTrainedModel:
    """Build a shallower copy of `teacher` that keeps the selected layers, as an instance of the teacher's class.

    Args:
        teacher: a model of a registered architecture (see `register_encoder_architecture`), any head class.
        num_layers: keep the first k layers (PKD initialisation). Exclusive with `layer_ids`.
        layer_ids: keep these 0-based layers, ascending, e.g. `"0,2"` or `[1, 3]`. Exclusive with `num_layers`.
        init_from: take the embeddings, the selected layers and the pooler from this checkpoint (a path, a Hub id,
            or a model of the teacher's `model_type` and width) instead of the teacher, e.g. the pre-trained base
            model as in the PKD paper. Student tensors it lacks (the classifier of a base checkpoint) keep their
            fresh initialisation. Paths are loaded with `AutoModel`.

    Returns:
        The student, in eval mode (like `from_pretrained`), on the teacher's device and dtype, with the teacher's
        config except `num_hidden_layers = k`, plus `distillation_layer_ids` (the kept ids in the source) and
        `distillation_source` (the source's name or path, None for an unsaved in-memory model).
    """
    source = teacher if init_from is None else _load_init_source(init_from, teacher)
    ids = resolve_student_layer_ids(len(get_encoder_layers(source)), num_layers=num_layers, layer_ids=layer_ids)
    source_label = "teacher" if init_from is None else "init_from"

    config = copy.deepcopy(teacher.config)  # deep copy keeps label maps, problem_type and `_attn_implementation`
    select_layers_in_config(config, ids)
    config.name_or_path = ""
    student = type(teacher)(config).to(device=teacher.device, dtype=teacher.dtype)
    copy_selected_layers(student, source, ids, source_label=source_label)
    return student.eval()
