"""Choose and build the student a run distils into, from command-line arguments."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedModel
from transformers.utils import logging

from ..guards import check_fields_apply, check_loaded_weights, check_tokenizer_vocabulary, load_pretrained
from ..methods import get_method
from ..peft_utils import classifier_auto_class
from . import bilstm, sps
from .bilstm import build_bilstm_student
from .layer_selection import build_student_from_teacher, parse_layer_ids
from .sps import build_sps_student

logger = logging.get_logger(__name__)

PLAIN_KIND = "plain"
STUDENT_ARCHS = (PLAIN_KIND, sps.STUDENT_KIND, bilstm.STUDENT_KIND)
# Settings only one student kind reads (`guards.check_fields_apply`).
ARCH_FIELDS = {"sps_shuffle_qk": (sps.STUDENT_KIND,)} | {
    name: (bilstm.STUDENT_KIND,)
    for name in ("bilstm_embedding_init", "bilstm_embedding_file", "bilstm_hidden_size", "bilstm_fc_hidden_size",
                 "bilstm_pooling")
}


@dataclass
class StudentArguments:
    """Which student to distil into. By default: the teacher's own class with a subset of its layers."""

    _argument_group_name = "Student"

    student_arch: str | None = field(
        default=None,
        metadata={
            "help": "plain: the teacher's class with selected layers; sps: PeaKD's shuffled-parameter-sharing "
            "student of the teacher's architecture (k stored layers run as 2k); bilstm: Tang et al.'s BiLSTM. "
            "Default: bilstm for --method bilstm, sps for --method peakd, plain otherwise.",
            "choices": list(STUDENT_ARCHS),
        },
    )
    student_layers: int | None = field(
        default=None,
        metadata={"help": "Keep the teacher's first k layers (PKD's initialisation). Default: half the teacher."},
    )
    student_layer_ids: str | None = field(
        default=None, metadata={"help": "Keep these teacher layers (0-based, ascending), e.g. '0,2,4'."}
    )
    student_init_from: str | None = field(
        default=None,
        metadata={
            "help": "plain students: take the selected layers and embeddings from this checkpoint of the same "
            "architecture (e.g. the pre-trained base, as in the PKD paper) instead of the fine-tuned teacher."
        },
    )
    student_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Use this ready-made student instead of building one from the teacher."}
    )
    student_config: str | None = field(
        default=None,
        metadata={
            "help": "A randomly initialised student of the teacher's architecture with these config changes (e.g. "
            "TinyBERT's shapes): a JSON object or file, e.g. "
            '\'{"num_hidden_layers": 4, "hidden_size": 312, "intermediate_size": 1200}\'.'
        },
    )
    student_tokenizer: str | None = field(
        default=None,
        metadata={
            "help": "The student's own tokenizer (a Hub id or folder), when it is not the teacher's: each model reads "
            "the raw text tokenized its way. With `student_config` (a fresh student sized to its vocabulary) or "
            "`student_arch bilstm`; a ready-made `student_model_name_or_path` brings its own."
        },
    )
    sps_shuffle_qk: bool = field(
        default=True, metadata={"help": "sps: swap Query and Key in the second pass (False: paired sharing)."}
    )
    bilstm_embedding_init: str = field(
        default="teacher",
        metadata={
            "help": "bilstm: initial word embeddings: the teacher's input embeddings, a word-vector file "
            "(--bilstm_embedding_file, GloVe text format) or random.",
            "choices": ["teacher", "file", "random"],
        },
    )
    bilstm_embedding_file: str | None = field(default=None, metadata={"help": "bilstm: GloVe-format vectors."})
    bilstm_hidden_size: int = field(default=150, metadata={"help": "bilstm: LSTM units per direction."})
    bilstm_fc_hidden_size: int = field(default=400, metadata={"help": "bilstm: units of the ReLU layer."})
    bilstm_pooling: str = field(
        default="last", metadata={"help": "bilstm: sentence vector.", "choices": ["last", "max", "mean"]}
    )

    def resolved_arch(self, method: str) -> str:
        """`student_arch`, or the student the method's paper uses (`DistillationMethod.default_student`)."""
        if self.student_arch:
            return self.student_arch
        default = get_method(method).default_student
        if default not in STUDENT_ARCHS:
            raise ValueError(
                f"Method {method!r} names {default!r} as its `default_student`, which is not a student kind "
                f"({list(STUDENT_ARCHS)}). Pass `--student_arch`, or fix the method's `default_student`."
            )
        return default


def _load_ready_made_student(args: StudentArguments, task) -> PreTrainedModel:
    if args.student_layers or args.student_layer_ids or args.student_init_from:
        raise ValueError(
            "`student_model_name_or_path` gives a ready-made student; drop `student_layers`, `student_layer_ids` and "
            "`student_init_from`, which build one from the teacher."
        )
    path, argument = args.student_model_name_or_path, "student_model_name_or_path"
    # A general-distillation checkpoint has no task head: give it the task's labels (a mismatching head is an error).
    student, loading_info = load_pretrained(
        task.auto_model_class.from_pretrained,
        path,
        argument,
        output_loading_info=True,
        **task.label_config(),
    )
    check_loaded_weights(student, loading_info, path, argument, new_head_ok=True)
    return student


def load_student_tokenizer(args: StudentArguments, teacher_tokenizer):
    """The student's tokenizer: `student_tokenizer`, else a ready-made student's own, else the teacher's. One whose
    vocabulary differs from the teacher's makes a cross-tokenizer run (`is_cross_tokenizer`)."""
    if args.student_tokenizer:
        path, argument = args.student_tokenizer, "student_tokenizer"
    elif args.student_model_name_or_path:
        path, argument = args.student_model_name_or_path, "student_model_name_or_path"
    else:
        return teacher_tokenizer
    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, path, argument)
    check_tokenizer_vocabulary(tokenizer, path, argument, source="the student")
    return tokenizer


def is_cross_tokenizer(student_tokenizer, teacher_tokenizer) -> bool:
    if student_tokenizer is teacher_tokenizer:
        return False
    return student_tokenizer.get_vocab() != teacher_tokenizer.get_vocab()


def build_student(
    args: StudentArguments, method: str, teacher: PreTrainedModel, tokenizer, task, student_tokenizer=None
) -> PreTrainedModel:
    """The student for `method`: ready-made, from a config, a BiLSTM, an SPS student or a plain layer selection of the
    teacher; a multi-label task's student is one too (`problem_type`, which its loss and the trainer read).

    `student_tokenizer` (`load_student_tokenizer`), when its vocabulary is not the teacher's `tokenizer`'s, sizes a
    `student_config` or BiLSTM student to its vocabulary; students built from the teacher's layers cannot read it."""
    cross = student_tokenizer is not None and is_cross_tokenizer(student_tokenizer, tokenizer)
    if cross and not (args.student_config or args.student_model_name_or_path
                      or args.resolved_arch(method) == bilstm.STUDENT_KIND):
        raise ValueError(
            "`student_tokenizer` has another vocabulary than the teacher's, but this student is built from the "
            "teacher's layers and embeddings, which read the teacher's token ids. Pass `student_config` (a fresh "
            "student of that vocabulary), `student_arch bilstm` or `student_model_name_or_path`."
        )
    if cross and args.resolved_arch(method) == bilstm.STUDENT_KIND and args.bilstm_embedding_init == "teacher":
        raise ValueError(
            "`bilstm_embedding_init` is 'teacher', but the student's tokenizer has another vocabulary than the "
            "teacher's embeddings. Pass `--bilstm_embedding_init random` or `file`."
        )
    student = _build_student(args, method, teacher, student_tokenizer if cross else tokenizer, task, cross)
    vocab_size = getattr(student.config, "vocab_size", None)
    if cross and vocab_size is not None and len(student_tokenizer) > vocab_size:
        raise ValueError(
            f"The student's tokenizer has {len(student_tokenizer)} tokens, but the student embeds {vocab_size}: "
            "its ids would index past the embeddings. Pass the tokenizer the student was trained with "
            "(`student_tokenizer`), or resize the student's embeddings."
        )
    if task.is_multi_label:
        student.config.problem_type = "multi_label_classification"
    return student


def _build_student(
    args: StudentArguments, method: str, teacher: PreTrainedModel, tokenizer, task, cross_tokenizer: bool
) -> PreTrainedModel:
    check_fields_apply(args, ARCH_FIELDS, args.resolved_arch(method), "student_arch")
    if args.student_config:
        other_choices = (
            "student_arch",
            "student_model_name_or_path",
            "student_layers",
            "student_layer_ids",
            "student_init_from",
        )
        clashing = [name for name in other_choices if getattr(args, name)]
        if clashing:
            raise ValueError(
                f"`student_config` builds a fresh student of the teacher's architecture; drop {clashing}, which "
                "choose another student."
            )
        vocabulary = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id} if cross_tokenizer else {}
        return build_student_from_config(args.student_config, teacher, vocabulary)
    if args.student_model_name_or_path:
        return _load_ready_made_student(args, task)
    arch = args.resolved_arch(method)
    if arch == bilstm.STUDENT_KIND:
        return build_bilstm_student(
            tokenizer,
            num_labels=task.num_labels,
            is_pair=task.is_pair,
            teacher=teacher,
            embedding_init=args.bilstm_embedding_init,
            embedding_file=args.bilstm_embedding_file,
            hidden_size=args.bilstm_hidden_size,
            fc_hidden_size=args.bilstm_fc_hidden_size,
            pooling=args.bilstm_pooling,
            token_classification=task.is_token_classification,
        )
    num_layers = args.student_layers
    if num_layers is None and args.student_layer_ids is None:
        num_layers = max(1, teacher.config.num_hidden_layers // 2)
        logger.info("No student size given: keeping the teacher's first %d layers", num_layers)
    if arch == sps.STUDENT_KIND:
        if args.student_init_from:
            raise ValueError(
                "`student_init_from` applies to plain students; an SPS student copies its layers from the teacher. "
                "Drop it or use `--student_arch plain`."
            )
        layer_ids = parse_layer_ids(args.student_layer_ids) if args.student_layer_ids else None
        return build_sps_student(teacher, num_layers=num_layers, layer_ids=layer_ids, shuffle_qk=args.sps_shuffle_qk)
    return build_student_from_teacher(
        teacher, num_layers=num_layers, layer_ids=args.student_layer_ids, init_from=args.student_init_from
    )


def build_student_from_config(spec: str, teacher: PreTrainedModel, vocabulary: dict | None = None) -> PreTrainedModel:
    """A randomly initialised student of the teacher's architecture, resized by `spec`.

    `spec` is a JSON object or the path of a JSON file with config keys to change, e.g.
    `{"num_hidden_layers": 4, "hidden_size": 312, "num_attention_heads": 12, "intermediate_size": 1200}`
    (TinyBERT-4). Everything else, labels and vocabulary included, is the teacher's, unless `vocabulary`
    (`vocab_size`, `pad_token_id` of the student's own tokenizer) gives another vocabulary.
    """
    text = Path(spec).read_text(encoding="utf-8") if Path(spec).is_file() else spec
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError:
        overrides = None
    if not isinstance(overrides, dict):
        raise ValueError(
            f"`student_config` must be a JSON object or the path of a JSON file holding one, got {spec!r}. Example: "
            '\'{"num_hidden_layers": 4, "hidden_size": 312, "num_attention_heads": 12, "intermediate_size": 1200}\'.'
        )
    unknown = sorted(key for key in overrides if not hasattr(teacher.config, key))
    if unknown:
        raise ValueError(
            f"`student_config` sets {unknown}, which {type(teacher.config).__name__} does not have. Use keys of the "
            f"teacher's config.json, e.g. num_hidden_layers, hidden_size, num_attention_heads, intermediate_size."
        )
    fixed = {"vocab_size", "num_labels", "id2label", "label2id", "problem_type"} & overrides.keys()
    if fixed:
        raise ValueError(
            f"`student_config` sets {sorted(fixed)}, but the student must read the teacher's token ids and predict "
            "its labels. Drop these keys: they are copied from the teacher."
        )
    sizes = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
    not_positive = {key: overrides[key] for key in sizes if key in overrides and not _is_positive_int(overrides[key])}
    if not_positive:
        raise ValueError(
            f"`student_config` sets {not_positive}, but sizes must be whole numbers ≥ 1. Example: "
            '\'{"num_hidden_layers": 4, "hidden_size": 312, "num_attention_heads": 12, "intermediate_size": 1200}\'.'
        )
    try:
        config = type(teacher.config).from_dict({**teacher.config.to_dict(), **overrides, **(vocabulary or {})})
        student = classifier_auto_class(teacher).from_config(config)
    except (ValueError, TypeError) as error:  # e.g. a hidden_size that num_attention_heads does not divide
        raise ValueError(
            f"`student_config` {overrides} does not give a valid {type(teacher.config).__name__}: "
            f"{type(error).__name__}: {error} Change those values (e.g. a hidden_size that num_attention_heads "
            "divides)."
        ) from error
    logger.info("Student built from `student_config` with random weights: %s", overrides)
    return student


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
