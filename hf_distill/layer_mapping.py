"""Which teacher layer each student layer learns from.

Layer numbers follow `output_hidden_states`: 0 is the embedding output, `1 … N` the transformer layers. A map is a
list of `(student_layer, teacher_layer)` pairs; `hidden_states[s]` of the student is matched with
`hidden_states[t]` of the teacher.
"""

import operator
from collections.abc import Sequence

LayerMap = list[tuple[int, int]]


def _require_divisible(num_teacher_layers: int, num_student_layers: int, strategy: str, argument: str) -> None:
    if num_student_layers < 1 or num_teacher_layers % num_student_layers:
        raise ValueError(
            f"`{argument}`={strategy!r} maps student layer m to teacher layer m·N/M, which needs the teacher depth "
            f"N={num_teacher_layers} to be a multiple of the student depth M={num_student_layers}. "
            f"Choose a student depth that divides {num_teacher_layers}, or pass an explicit layer map."
        )


def pkd_skip_map(num_teacher_layers: int, num_student_layers: int) -> LayerMap:
    """PKD-Skip: student layer `j` (1 … M−1) learns from teacher layer `j·N/M` (12→6: 2,4,6,8,10; 6→3: 2,4)."""
    _require_divisible(num_teacher_layers, num_student_layers, "skip", "pkd_strategy")
    step = num_teacher_layers // num_student_layers
    return [(j, j * step) for j in range(1, num_student_layers)]


def pkd_last_map(num_teacher_layers: int, num_student_layers: int) -> LayerMap:
    """PKD-Last: student layer `j` (1 … M−1) learns from teacher layer `N − M + j` (12→6: 7…11; 6→3: 4,5)."""
    offset = num_teacher_layers - num_student_layers
    return [(j, offset + j) for j in range(1, num_student_layers)]


def uniform_map(num_teacher_layers: int, num_student_layers: int) -> LayerMap:
    """TinyBERT: `g(m) = m·N/M` for `m = 0 … M`, the embedding output (0→0) included."""
    _require_divisible(num_teacher_layers, num_student_layers, "uniform", "tinybert_layer_map")
    step = num_teacher_layers // num_student_layers
    return [(m, m * step) for m in range(num_student_layers + 1)]


def _to_layer(item: str | int) -> int:
    if isinstance(item, str):
        return int(item.strip())
    if isinstance(item, bool):  # True would otherwise pass as layer 1
        raise TypeError("bool is not a layer number")
    return operator.index(item)  # refuses 1.5 instead of truncating it


def parse_layer_list(
    spec: str | Sequence[int] | None,
    argument: str,
    expected: str = "a comma-separated list of layer numbers such as '2,4'",
) -> list[int] | None:
    """`"2,4"` (spaces allowed) or `[2, 4]` → `[2, 4]`, order and values kept as given; `None`/`""` → `None`.

    The one parser of layer lists (`pkd_layer_map`, `tinybert_layer_map`, `student_layer_ids`); an item that is not
    an integer (`"a"`, `""`, `1.5`, `True`) raises "`{argument}` must be {expected}, got ...".
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    try:
        return [_to_layer(item) for item in (spec.split(",") if isinstance(spec, str) else spec)]
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{argument}` must be {expected}, got {spec!r}.") from error


def explicit_map(teacher_layers: Sequence[int], student_layers: Sequence[int], argument: str) -> LayerMap:
    """Pair `student_layers[i]` with `teacher_layers[i]`; the caller validates the result with `validate_layer_map`."""
    if len(teacher_layers) != len(student_layers):
        raise ValueError(
            f"`{argument}` lists {len(teacher_layers)} teacher layers ({list(teacher_layers)}) but the student has "
            f"{len(student_layers)} layers to map ({list(student_layers)}). Give one teacher layer per student layer."
        )
    return list(zip(student_layers, teacher_layers))


def validate_layer_map(
    layer_map: LayerMap, num_student_layers: int, num_teacher_layers: int, argument: str
) -> LayerMap:
    """Check that every pair names existing layers (0 … M for the student, 0 … N for the teacher)."""
    for student_layer, teacher_layer in layer_map:
        if not 0 <= student_layer <= num_student_layers:
            raise ValueError(
                f"`{argument}` maps student layer {student_layer}, but the student has {num_student_layers} layers "
                f"(hidden states 0–{num_student_layers}, 0 = embeddings). "
                f"Use student layers in [0, {num_student_layers}]."
            )
        if not 0 <= teacher_layer <= num_teacher_layers:
            raise ValueError(
                f"`{argument}` maps to teacher layer {teacher_layer}, but the teacher has {num_teacher_layers} layers "
                f"(hidden states 0–{num_teacher_layers}, 0 = embeddings). "
                f"Use teacher layers in [0, {num_teacher_layers}]."
            )
    return layer_map


def pkd_layer_map(
    strategy: str, num_teacher_layers: int, num_student_layers: int, teacher_layers: Sequence[int] | None = None
) -> LayerMap:
    """The PKD map for `strategy` in {"skip", "last"}, or an explicit list of teacher layers for student layers
    `1 … M−1`."""
    if teacher_layers is not None:
        layer_map = explicit_map(teacher_layers, range(1, num_student_layers), "pkd_layer_map")
    elif strategy == "skip":
        layer_map = pkd_skip_map(num_teacher_layers, num_student_layers)
    elif strategy == "last":
        layer_map = pkd_last_map(num_teacher_layers, num_student_layers)
    else:
        raise ValueError(f"`pkd_strategy` must be 'skip' or 'last', got {strategy!r}.")
    return validate_layer_map(layer_map, num_student_layers, num_teacher_layers, "pkd_layer_map")


def num_executed_layers(model) -> int:
    """Transformer layers a forward pass runs: `config.num_executed_layers` for students that reuse layers (SPS),
    else `config.num_hidden_layers`. It is the number of hidden states minus one (the embedding output)."""
    config = model.config
    return getattr(config, "num_executed_layers", None) or config.num_hidden_layers
