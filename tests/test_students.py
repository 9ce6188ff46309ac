import copy
import inspect
import logging
import math

import pytest
import torch
from conftest import TINY_VOCAB, make_tiny_bert, make_tiny_bert_config, make_tiny_dataset, make_tiny_tokenizer
from torch import nn
from transformers import (
    AutoModelForSequenceClassification,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    DataCollatorWithPadding,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    ModernBertForTokenClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaModel,
)

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.students import (
    build_sps_student,
    build_student_from_teacher,
    get_encoder_layers,
    layer_selection,
    parse_layer_ids,
    register_encoder_architecture,
    resolve_student_layer_ids,
)

# The tiny tokenizer's vocabulary, so the models also train on `make_tiny_dataset`.
TINY = dict(
    hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37, vocab_size=len(TINY_VOCAB)
)


def make_tiny_roberta(seed: int = 0) -> RobertaForSequenceClassification:
    torch.manual_seed(seed)
    config = RobertaConfig(**TINY, max_position_embeddings=66, pad_token_id=1, num_labels=3)
    return RobertaForSequenceClassification(config).eval()


def make_tiny_electra(seed: int = 0) -> ElectraForSequenceClassification:
    torch.manual_seed(seed)
    return ElectraForSequenceClassification(ElectraConfig(**TINY, embedding_size=16, num_labels=2)).eval()


def make_tiny_distilbert(seed: int = 0) -> DistilBertForSequenceClassification:
    torch.manual_seed(seed)
    config = DistilBertConfig(vocab_size=TINY["vocab_size"], dim=32, n_layers=4, n_heads=4, hidden_dim=37,
                              max_position_embeddings=64)
    return DistilBertForSequenceClassification(config).eval()


def make_tiny_deberta_v2(seed: int = 0) -> DebertaV2ForSequenceClassification:
    torch.manual_seed(seed)
    # Relative attention with both position terms: the layers read the encoder's shared `rel_embeddings`.
    config = DebertaV2Config(**TINY, relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=8,
                             max_relative_positions=-1, position_biased_input=False, num_labels=3)
    return DebertaV2ForSequenceClassification(config).eval()


def modernbert_config(**kwargs) -> ModernBertConfig:
    # Layers 0 and 3 attend globally, 1 and 2 in a sliding window narrower than the test sequences.
    return ModernBertConfig(**TINY, local_attention=4, global_attn_every_n_layers=3, pad_token_id=0,
                            bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, **kwargs)


def make_tiny_modernbert(seed: int = 0) -> ModernBertForSequenceClassification:
    torch.manual_seed(seed)
    return ModernBertForSequenceClassification(modernbert_config(num_labels=2)).eval()


ARCHITECTURES = {
    "bert": lambda: make_tiny_bert(seed=0),
    "roberta": make_tiny_roberta,
    "electra": make_tiny_electra,
    "distilbert": make_tiny_distilbert,
    "deberta-v2": make_tiny_deberta_v2,
    "modernbert": make_tiny_modernbert,
}


def sample_inputs(vocab_size: int = 60) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, vocab_size, (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def assert_modules_equal(actual: nn.Module, expected: nn.Module) -> None:
    actual_state, expected_state = actual.state_dict(), expected.state_dict()
    assert actual_state.keys() == expected_state.keys()
    for key, tensor in actual_state.items():
        assert torch.equal(tensor, expected_state[key]), key


def surgery_reference(teacher: nn.Module, ids: list[int]) -> nn.Module:
    """The teacher with its layer list cut down by hand: what a student keeping `ids` must compute.

    Each kept layer module keeps its own attention kind (ModernBERT's global or sliding-window attention)."""
    reference = copy.deepcopy(teacher)
    parent_path, _, name = layer_selection.ENCODER_LAYER_PATHS[teacher.config.model_type].rpartition(".")
    parent = reference.get_submodule(parent_path)
    setattr(parent, name, nn.ModuleList([getattr(parent, name)[i] for i in ids]))
    if isinstance(getattr(reference.config, "layer_types", None), list):
        reference.config.layer_types = [reference.config.layer_types[i] for i in ids]
    return reference


# --- which layers are kept, and exact weights ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, expected_ids",
    [
        (dict(num_layers=2), [0, 1]),
        (dict(layer_ids="0,2"), [0, 2]),
        (dict(layer_ids=[1, 3]), [1, 3]),
        (dict(layer_ids=" 3 "), [3]),
        (dict(num_layers=4), [0, 1, 2, 3]),
    ],
)
def test_kept_layers_and_weights_are_the_teachers(tiny_teacher, kwargs, expected_ids):
    student = build_student_from_teacher(tiny_teacher, **kwargs)

    assert type(student) is BertForSequenceClassification
    assert student.config.num_hidden_layers == len(expected_ids) == len(student.bert.encoder.layer)
    assert student.config.distillation_layer_ids == expected_ids
    for j, i in enumerate(expected_ids):
        assert_modules_equal(student.bert.encoder.layer[j], tiny_teacher.bert.encoder.layer[i])
    assert_modules_equal(student.bert.embeddings, tiny_teacher.bert.embeddings)
    assert_modules_equal(student.bert.pooler, tiny_teacher.bert.pooler)
    assert_modules_equal(student.classifier, tiny_teacher.classifier)
    inputs = sample_inputs()
    with torch.no_grad():
        expected = surgery_reference(tiny_teacher, expected_ids)(**inputs).logits
        assert torch.equal(student(**inputs).logits, expected)


def test_student_owns_its_weights(tiny_teacher):
    student = build_student_from_teacher(tiny_teacher, layer_ids=[0, 2])
    teacher_pointers = {p.data_ptr() for p in tiny_teacher.parameters()}
    assert not teacher_pointers & {p.data_ptr() for p in student.parameters()}
    before = tiny_teacher.bert.encoder.layer[2].output.dense.weight.clone()
    with torch.no_grad():
        student.bert.encoder.layer[1].output.dense.weight.add_(1.0)
    assert torch.equal(tiny_teacher.bert.encoder.layer[2].output.dense.weight, before)


def test_config_is_the_teachers_except_depth():
    teacher = make_tiny_bert(seed=1, num_labels=3, problem_type="single_label_classification")
    teacher.config.id2label = {0: "entailment", 1: "neutral", 2: "contradiction"}
    teacher.config.label2id = {"entailment": 0, "neutral": 1, "contradiction": 2}

    student = build_student_from_teacher(teacher, layer_ids="1,3")

    config = student.config
    assert config.id2label == {0: "entailment", 1: "neutral", 2: "contradiction"}
    assert config.label2id == teacher.config.label2id
    assert config.num_labels == 3 and config.problem_type == "single_label_classification"
    assert config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 4
    skipped = {"num_hidden_layers", "distillation_layer_ids", "distillation_source", "_name_or_path"}
    teacher_dict, student_dict = teacher.config.to_dict(), config.to_dict()
    assert {k: v for k, v in student_dict.items() if k not in skipped} == {
        k: v for k, v in teacher_dict.items() if k not in skipped
    }


def test_dtype_and_attention_implementation_are_preserved():
    teacher = make_tiny_bert(seed=0, attn_implementation="eager").to(torch.bfloat16)
    student = build_student_from_teacher(teacher, layer_ids=[1])
    assert student.dtype == torch.bfloat16
    assert student.config._attn_implementation == "eager"
    assert_modules_equal(student.bert.encoder.layer[0], teacher.bert.encoder.layer[1])
    outputs = student(**sample_inputs(), output_attentions=True)
    assert len(outputs.attentions) == 1 and outputs.attentions[0].shape == (3, 4, 9, 9)


def test_save_and_reload_round_trip(tmp_path, tiny_teacher_dir):
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    student = build_student_from_teacher(teacher, layer_ids="0,3")
    student.save_pretrained(tmp_path / "student")

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student")

    assert type(reloaded) is BertForSequenceClassification
    assert reloaded.config.distillation_layer_ids == [0, 3]
    assert reloaded.config.distillation_source == str(tiny_teacher_dir)
    assert reloaded.config.id2label == {0: "negative", 1: "positive"}
    inputs = sample_inputs()
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, student(**inputs).logits)


def test_logs_one_line_per_layer(tiny_teacher, caplog):
    with caplog.at_level(logging.INFO, logger=layer_selection.__name__):
        build_student_from_teacher(tiny_teacher, layer_ids=[1, 3])
    assert "student layer 0 <- teacher layer 1" in caplog.text
    assert "student layer 1 <- teacher layer 3" in caplog.text
    assert "Freshly initialised" not in caplog.text


# --- init_from: PKD's pre-trained initialisation ------------------------------------------------------------------


@pytest.fixture
def base_bert():
    torch.manual_seed(7)
    return BertModel(make_tiny_bert_config()).eval()


def test_init_from_saved_base_checkpoint(tmp_path, tiny_teacher, base_bert, caplog):
    base_bert.save_pretrained(tmp_path / "base")

    with caplog.at_level(logging.INFO, logger=layer_selection.__name__):
        student = build_student_from_teacher(tiny_teacher, num_layers=2, init_from=str(tmp_path / "base"))

    assert type(student) is BertForSequenceClassification
    for j in range(2):
        assert_modules_equal(student.bert.encoder.layer[j], base_bert.encoder.layer[j])
    assert_modules_equal(student.bert.embeddings, base_bert.embeddings)
    assert_modules_equal(student.bert.pooler, base_bert.pooler)
    assert not torch.equal(student.classifier.weight, tiny_teacher.classifier.weight)
    assert student.config.distillation_layer_ids == [0, 1]
    assert student.config.distillation_source == str(tmp_path / "base")
    assert "student layer 1 <- init_from layer 1" in caplog.text
    assert "Freshly initialised (not in init_from): classifier.weight, classifier.bias" in caplog.text


def test_init_from_model_instances(tiny_teacher, base_bert):
    from_base = build_student_from_teacher(tiny_teacher, layer_ids=[2], init_from=base_bert)
    assert_modules_equal(from_base.bert.encoder.layer[0], base_bert.encoder.layer[2])

    torch.manual_seed(3)
    masked_lm = BertForMaskedLM(make_tiny_bert_config())
    from_head = build_student_from_teacher(tiny_teacher, layer_ids=[3], init_from=masked_lm)
    assert_modules_equal(from_head.bert.encoder.layer[0], masked_lm.bert.encoder.layer[3])
    assert_modules_equal(from_head.bert.embeddings, masked_lm.bert.embeddings)
    assert not torch.equal(from_head.classifier.weight, tiny_teacher.classifier.weight)


def test_init_from_roberta_base_into_roberta_head(tmp_path):
    teacher = make_tiny_roberta()
    torch.manual_seed(5)
    base = RobertaModel(teacher.config).eval()
    base.save_pretrained(tmp_path / "roberta-base")
    student = build_student_from_teacher(teacher, layer_ids="1,2", init_from=tmp_path / "roberta-base")
    assert_modules_equal(student.roberta.encoder.layer[1], base.encoder.layer[2])
    assert_modules_equal(student.roberta.embeddings, base.embeddings)


# --- other architectures ------------------------------------------------------------------------------------------


# ModernBERT's layer 0 has no `attn_norm`, so its students keep layer 0 first; [0, 2] keeps a global and a
# sliding-window layer.
KEPT_LAYERS = {"modernbert": [0, 2]}


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_architectures(architecture):
    teacher = ARCHITECTURES[architecture]()
    ids = KEPT_LAYERS.get(architecture, [1, 3])
    student = build_student_from_teacher(teacher, layer_ids=ids)

    assert type(student) is type(teacher)
    assert student.config.model_type == architecture
    assert student.config.num_hidden_layers == 2
    teacher_layers, student_layers = get_encoder_layers(teacher), get_encoder_layers(student)
    assert len(teacher_layers) == 4 and len(student_layers) == 2
    for j, i in enumerate(ids):
        assert_modules_equal(student_layers[j], teacher_layers[i])
    teacher_state = teacher.state_dict()
    layers_path = layer_selection.ENCODER_LAYER_PATHS[architecture]
    for key, tensor in student.state_dict().items():  # embeddings, encoder-level tensors, pooler and head
        if not key.startswith(layers_path + "."):
            assert torch.equal(tensor, teacher_state[key]), key
    inputs = sample_inputs()
    with torch.no_grad():
        assert torch.equal(student(**inputs).logits, surgery_reference(teacher, ids)(**inputs).logits)


def hand_built_one_layer_model(teacher: nn.Module, kept: int) -> nn.Module:
    """A 1-layer model of the teacher's class built from a fresh config, with the teacher's weights loaded by name
    (layer `kept` renamed to layer 0), strictly: no surgery code involved."""
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = 1
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[kept]]
    layers_path = layer_selection.ENCODER_LAYER_PATHS[config.model_type]
    state = {}
    for key, tensor in teacher.state_dict().items():
        if key.startswith(f"{layers_path}.{kept}."):
            state[f"{layers_path}.0." + key[len(f"{layers_path}.{kept}.") :]] = tensor
        elif not key.startswith(layers_path + "."):
            state[key] = tensor
    model = type(teacher)(config).eval()
    model.load_state_dict(state, strict=True)
    return model


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_one_kept_layer_equals_a_hand_built_model(architecture):
    teacher = ARCHITECTURES[architecture]()
    kept = 0 if architecture == "modernbert" else 2
    student = build_student_from_teacher(teacher, layer_ids=[kept])
    inputs = sample_inputs()
    with torch.no_grad():
        assert torch.equal(student(**inputs).logits, hand_built_one_layer_model(teacher, kept)(**inputs).logits)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_architecture_save_and_reload_round_trip(tmp_path, architecture):
    teacher = ARCHITECTURES[architecture]()
    student = build_student_from_teacher(teacher, layer_ids=KEPT_LAYERS.get(architecture, [1, 3]))
    student.save_pretrained(tmp_path / "student")

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student").eval()

    assert type(reloaded) is type(teacher) and reloaded.config.num_hidden_layers == 2
    assert reloaded.config.distillation_layer_ids == student.config.distillation_layer_ids
    inputs = sample_inputs()
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, student(**inputs).logits)


def test_modernbert_students_keep_each_layers_attention_kind():
    teacher = make_tiny_modernbert()
    assert teacher.config.layer_types == ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]

    student = build_student_from_teacher(teacher, layer_ids=[0, 3])

    assert student.config.layer_types == ["full_attention", "full_attention"]
    assert [layer.attention_type for layer in student.model.layers] == ["full_attention", "full_attention"]
    # The 1-layer teacher would rebuild the window from its position: the kept global layer must stay global.
    inputs = {"input_ids": torch.randint(5, 60, (2, 12), generator=torch.Generator().manual_seed(1))}
    with torch.no_grad():
        assert torch.equal(student(**inputs).logits, surgery_reference(teacher, [0, 3])(**inputs).logits)


def test_modernbert_token_classification_student():
    torch.manual_seed(0)
    teacher = ModernBertForTokenClassification(modernbert_config(num_labels=5)).eval()
    student = build_student_from_teacher(teacher, num_layers=2)
    inputs = sample_inputs()
    with torch.no_grad():
        assert student(**inputs).logits.shape == (3, 9, 5)
        assert torch.equal(student(**inputs).logits, surgery_reference(teacher, [0, 1])(**inputs).logits)


@pytest.mark.parametrize("ids", [[1, 3], [2]])
def test_modernbert_refuses_moving_a_layer_built_by_position(ids):
    with pytest.raises(ValueError, match=r"cannot become student layer 0.*attn_norm.*start with layer 0"):
        build_student_from_teacher(make_tiny_modernbert(), layer_ids=ids)


@pytest.mark.parametrize("method", ["kd", "pkd", "tinybert"])
@pytest.mark.parametrize("architecture", ["distilbert", "deberta-v2", "modernbert"])
def test_methods_train_students_of_the_new_architectures(tmp_path, architecture, method):
    teacher = ARCHITECTURES[architecture]()
    student = build_student_from_teacher(teacher, num_layers=2)
    data = make_tiny_dataset(16)
    if "token_type_ids" not in inspect.signature(teacher.forward).parameters:
        data = data.remove_columns("token_type_ids")
    extra = {"tinybert_stage": 1} if method == "tinybert" else {}
    trainer = DistillationTrainer(
        model=student, teacher_model=teacher, train_dataset=data, data_collator=DataCollatorWithPadding(
            make_tiny_tokenizer()), args=DistillationConfig(
            output_dir=str(tmp_path), method=method, max_steps=2, per_device_train_batch_size=8, report_to=[],
            use_cpu=True, save_strategy="no", **extra))
    if method == "tinybert" and architecture == "deberta-v2":
        # DeBERTa's disentangled attention does not run through transformers' attention interface.
        with pytest.raises(ValueError, match="read 0 attention maps from the student.*AttentionInterface"):
            trainer.train()
        return
    assert math.isfinite(trainer.train().training_loss)


def test_get_encoder_layers_on_base_and_head_models(tiny_teacher):
    assert get_encoder_layers(tiny_teacher) is tiny_teacher.bert.encoder.layer
    assert get_encoder_layers(tiny_teacher.bert) is tiny_teacher.bert.encoder.layer


def test_base_model_teacher(tiny_teacher):
    student = build_student_from_teacher(tiny_teacher.bert, layer_ids=[2])
    assert type(student) is BertModel
    assert_modules_equal(student.encoder.layer[0], tiny_teacher.bert.encoder.layer[2])
    assert_modules_equal(student.embeddings, tiny_teacher.bert.embeddings)


def make_tiny_gpt2() -> GPT2ForSequenceClassification:
    torch.manual_seed(0)
    return GPT2ForSequenceClassification(GPT2Config(n_embd=32, n_layer=4, n_head=4, vocab_size=60)).eval()


def test_unsupported_architectures():
    with pytest.raises(ValueError, match=r"model_type 'gpt2'.*supported: bert, camembert, deberta, deberta-v2, "
                                         r"distilbert, electra, modernbert, roberta"):
        build_student_from_teacher(make_tiny_gpt2(), num_layers=1)


def test_registering_an_architecture_enables_it(monkeypatch):
    monkeypatch.setattr(layer_selection, "ENCODER_LAYER_PATHS", dict(layer_selection.ENCODER_LAYER_PATHS))
    register_encoder_architecture("gpt2", "transformer.h")
    teacher = make_tiny_gpt2()
    student = build_student_from_teacher(teacher, layer_ids=[0, 3])
    assert student.config.n_layer == 2
    assert_modules_equal(student.transformer.h[1], teacher.transformer.h[3])


@pytest.mark.parametrize(
    "model_type, layers_path, message",
    [
        ("", "x.encoder.layer", "`model_type`"),
        ("mine", "layer", "`layers_path`"),
        ("mine", "bert.encoder.layer.", "`layers_path`"),
        ("bert", "bert.encoder.layers", "already registered"),
    ],
)
def test_register_validates(model_type, layers_path, message):
    with pytest.raises(ValueError, match=message):
        register_encoder_architecture(model_type, layers_path)


# --- parsing and errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected", [("0,2,4", [0, 2, 4]), (" 1, 3 ", [1, 3]), ("5", [5]), ([0, 2], [0, 2]), ((3, 1), [3, 1])]
)
def test_parse_layer_ids(spec, expected):
    assert parse_layer_ids(spec) == expected


@pytest.mark.parametrize("spec", ["a,b", "0,,2", [True], [1.5], "0;2"])
def test_parse_layer_ids_rejects(spec):
    with pytest.raises(ValueError, match="`student_layer_ids` must be integers"):
        parse_layer_ids(spec)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layer_ids=[0, 4]), r"`student_layer_ids` contains 4, but the teacher has 4 layers \(0-3\)"),
        (dict(layer_ids="-1,2"), r"`student_layer_ids` contains -1"),
        (dict(layer_ids=[2, 1]), r"not in ascending order.*Use \[1, 2\]"),
        (dict(layer_ids=[1, 1, 2]), r"repeats a layer.*Use unique ids, e\.g\. \[1, 2\]"),
        (dict(layer_ids=[]), r"`student_layer_ids` is empty"),
        (dict(num_layers=0), r"`student_layers` is 0, but the teacher has 4 layers"),
        (dict(num_layers=5), r"Use an integer in \[1, 4\]"),
        (dict(num_layers=2, layer_ids=[0, 1]), r"exactly one of `student_layers`"),
        (dict(), r"exactly one of `student_layers`.*student_layers=None"),
    ],
)
def test_resolve_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resolve_student_layer_ids(4, **kwargs)


def test_build_rejects_bad_selection(tiny_teacher):
    with pytest.raises(ValueError, match="`student_layer_ids` contains 7"):
        build_student_from_teacher(tiny_teacher, layer_ids=[0, 7])


def test_init_from_of_another_architecture(tmp_path, tiny_teacher):
    torch.manual_seed(0)
    RobertaModel(RobertaConfig(**TINY)).save_pretrained(tmp_path / "roberta")
    with pytest.raises(ValueError, match=r"`student_init_from` .* model_type='roberta', but the teacher has "):
        build_student_from_teacher(tiny_teacher, num_layers=2, init_from=str(tmp_path / "roberta"))


def test_init_from_of_another_width(tiny_teacher):
    wider = BertModel(make_tiny_bert_config(hidden_size=64))
    with pytest.raises(ValueError, match=r"`student_init_from` \(BertModel\) has hidden_size=64.*hidden_size=32"):
        build_student_from_teacher(tiny_teacher, num_layers=2, init_from=wider)


def test_init_from_with_mismatched_tensor_shape(tiny_teacher):
    other_ffn = BertModel(make_tiny_bert_config(intermediate_size=48))
    with pytest.raises(
        ValueError, match=r"tensor `encoder\.layer\.0\.intermediate\.dense\.weight` of shape \(48, 32\)"
    ):
        build_student_from_teacher(tiny_teacher, num_layers=1, init_from=other_ffn)


@pytest.mark.parametrize("kind", ["plain", "sps"])
def test_the_shared_weight_copy_refuses_a_shape_mismatch(kind):
    teacher, other_ffn = make_tiny_bert(0), make_tiny_bert(1, intermediate_size=48)
    if kind == "plain":
        student, layers_path = build_student_from_teacher(teacher, num_layers=2), None
    else:
        student, layers_path = build_sps_student(teacher, num_layers=2), "encoder.layer"
    with pytest.raises(
        ValueError,
        match=r"teacher tensor `bert\.encoder\.layer\.1\.intermediate\.dense\.weight` of shape \(48, 32\) into "
        r"student tensor `bert\.encoder\.layer\.0\.intermediate\.dense\.weight` of shape \(37, 32\)",
    ):
        layer_selection.copy_selected_layers(student, other_ffn, [1, 3], layers_path=layers_path)


def test_init_from_of_wrong_type(tiny_teacher):
    with pytest.raises(ValueError, match="`student_init_from` must be a local path"):
        build_student_from_teacher(tiny_teacher, num_layers=1, init_from=42)


def test_real_minilm_pretrained_initialisation(minilm_path):
    """The PKD recipe on a real checkpoint: a 3-layer student of a MiniLM classifier, layers from the base weights."""
    teacher = AutoModelForSequenceClassification.from_pretrained(minilm_path, num_labels=2)
    student = build_student_from_teacher(teacher, layer_ids="0,2,4", init_from=minilm_path)
    base = BertModel.from_pretrained(minilm_path)
    assert student.config.num_hidden_layers == 3 and student.config.hidden_size == 384
    for j, i in enumerate([0, 2, 4]):
        assert_modules_equal(student.bert.encoder.layer[j], base.encoder.layer[i])
    assert_modules_equal(student.bert.embeddings, base.embeddings)
