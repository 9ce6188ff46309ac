"""SPS students of RoBERTa, XLM-R, CamemBERT, ELECTRA, DistilBERT, DeBERTa-v2/v3 and ModernBERT: equivalence with a
stock 2k-layer model unrolled by hand,
gradients of both passes, the copied weights, heads, save/load (in process and with `trust_remote_code`), export,
and PeaKD from the command line."""

import copy
import inspect
import json
import sys

import pytest
import torch
from conftest import REPO_ROOT, make_tiny_tokenizer, run_without_hf_distill
from test_students import TINY, modernbert_config
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    CamembertConfig,
    CamembertForSequenceClassification,
    CamembertForTokenClassification,
    DebertaConfig,
    DebertaForSequenceClassification,
    DebertaForTokenClassification,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    DebertaV2ForTokenClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    ElectraForTokenClassification,
    ModernBertForSequenceClassification,
    ModernBertForTokenClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    XLMRobertaForTokenClassification,
)

from hf_distill.export import export_onnx
from hf_distill.students import build_sps_student, build_student_from_teacher
from hf_distill.students.layer_selection import ENCODER_LAYER_PATHS
from hf_distill.students.sps import (
    SPSDebertaV2ForSequenceClassification,
    SPSDistilBertForSequenceClassification,
    SPSDistilBertModel,
    SPSModernBertForSequenceClassification,
    SPSModernBertForTokenClassification,
    SPSRobertaForSequenceClassification,
)

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402

K = 2


def deberta_config(share_att_key: bool, **kwargs) -> DebertaV2Config:
    # Relative attention with both position terms. v3 shares the content Q/K projections with the position terms
    # (`share_att_key`); v2 checkpoints may have separate `pos_key_proj` / `pos_query_proj`.
    return DebertaV2Config(**TINY, relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=8,
                           max_relative_positions=-1, position_biased_input=False, share_att_key=share_att_key,
                           **kwargs)


# The encoders whose layers are BERT's (self-attention `query` / `key` modules): config, sequence and token heads.
BERT_LAYER_HEADS = {
    "roberta": (RobertaConfig, RobertaForSequenceClassification, RobertaForTokenClassification),
    "xlm-roberta": (XLMRobertaConfig, XLMRobertaForSequenceClassification, XLMRobertaForTokenClassification),
    "camembert": (CamembertConfig, CamembertForSequenceClassification, CamembertForTokenClassification),
    "electra": (ElectraConfig, ElectraForSequenceClassification, ElectraForTokenClassification),
}


def make_teacher(architecture: str, token: bool = False, num_labels: int | None = None) -> nn.Module:
    """A tiny 4-layer teacher with eager attention (so attentions are returned) and noise on every parameter: the
    stock init leaves attention near uniform and biases at zero, where a missing or partial swap would go unnoticed."""
    torch.manual_seed(0)
    num_labels = num_labels or (5 if token else 3)
    if architecture in BERT_LAYER_HEADS:
        config_class, sequence_head, token_head = BERT_LAYER_HEADS[architecture]
        extra = {"embedding_size": 16} if architecture == "electra" else {}
        config = config_class(**TINY, num_labels=num_labels, **extra)
        head = token_head if token else sequence_head
    elif architecture == "distilbert":
        config = DistilBertConfig(vocab_size=TINY["vocab_size"], dim=32, n_layers=4, n_heads=4, hidden_dim=37,
                                  max_position_embeddings=64, num_labels=num_labels)
        head = DistilBertForTokenClassification if token else DistilBertForSequenceClassification
    elif architecture.startswith("deberta"):
        config = deberta_config(share_att_key=architecture == "deberta-v3", num_labels=num_labels)
        head = DebertaV2ForTokenClassification if token else DebertaV2ForSequenceClassification
    else:
        # Attention biases, so the fused projection's bias rows are swapped too.
        config = modernbert_config(num_labels=num_labels, attention_bias=True)
        head = ModernBertForTokenClassification if token else ModernBertForSequenceClassification
    config._attn_implementation = "eager"
    teacher = head(config).eval()
    with torch.no_grad():
        for param in teacher.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return teacher


ARCHITECTURES = [*BERT_LAYER_HEADS, "distilbert", "deberta-v2", "deberta-v3", "modernbert"]
# ModernBERT builds its layer 0 without `attn_norm`, so a ModernBERT student starts with layer 0.
KEPT_LAYERS = {"modernbert": [0, 3]}


def kept_layers(architecture: str) -> list[int]:
    return KEPT_LAYERS.get(architecture, [1, 3])


def inputs_for(model: nn.Module) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, TINY["vocab_size"], (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        inputs["token_type_ids"] = torch.zeros_like(input_ids)
    return inputs


def second_pass_tensor(model_type: str, name: str, tensor: torch.Tensor) -> tuple[str, torch.Tensor]:
    """Where a stored layer's tensor `name` sits in its second pass (Q/K swapped), written from the definition
    `query = W_K x + b_K`, `key = W_Q x + b_Q` on the weights themselves."""
    renames = {
        **{f"hf_distill_sps_{name}": ("attention.self.query.", "attention.self.key.")
           for name in ("roberta", "xlm_roberta", "camembert", "electra")},
        "hf_distill_sps_distilbert": ("attention.q_lin.", "attention.k_lin."),
        "hf_distill_sps_deberta_v2": ("attention.self.query_proj.", "attention.self.key_proj."),
    }
    if model_type in renames:
        query, key = renames[model_type]
        if name.startswith(query):
            return key + name[len(query) :], tensor
        if name.startswith(key):
            return query + name[len(key) :], tensor
        return name, tensor
    if name.startswith("attn.Wqkv."):  # rows [Q; K; V] become [K; Q; V]
        query, key, value = tensor.chunk(3, dim=0)
        return name, torch.cat([key, query, value])
    return name, tensor


def unrolled_stock_model(student: nn.Module, teacher: nn.Module) -> nn.Module:
    """A stock 2k-layer model of the teacher's class whose layers k..2k-1 hold copies of the student's k layers with
    Q/K swapped when `shuffle_qk`, loaded strictly by name."""
    k = student.config.num_hidden_layers
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = 2 * k
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = list(student.config.layer_types) * 2
    model = type(teacher)(config).eval()
    layers_path = ENCODER_LAYER_PATHS[teacher.config.model_type]
    if teacher.config.model_type == "modernbert":
        # Layer 0 has no attn_norm in ModernBERT, and its second pass (stock layer k) runs without it too.
        model.get_submodule(layers_path)[k].attn_norm = nn.Identity()
    state = {}
    for key, tensor in student.state_dict().items():
        if not key.startswith(layers_path + "."):
            state[key] = tensor
            continue
        index, rest = key[len(layers_path) + 1 :].split(".", 1)
        state[f"{layers_path}.{index}.{rest}"] = tensor
        if student.config.shuffle_qk:
            rest, tensor = second_pass_tensor(student.config.model_type, rest, tensor)
        state[f"{layers_path}.{int(index) + k}.{rest}"] = tensor
    model.load_state_dict(state, strict=True)
    return model


@pytest.mark.parametrize("shuffle_qk", [True, False], ids=["sps", "paired"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_forward_equals_the_unrolled_stock_model(architecture, shuffle_qk):
    teacher = make_teacher(architecture)
    student = build_sps_student(teacher, layer_ids=kept_layers(architecture), shuffle_qk=shuffle_qk).eval()
    reference = unrolled_stock_model(student, teacher)
    inputs = inputs_for(teacher)
    with torch.no_grad():
        actual = student(**inputs, output_hidden_states=True, output_attentions=True)
        expected = reference(**inputs, output_hidden_states=True, output_attentions=True)

    assert len(actual.hidden_states) == 2 * K + 1 and len(actual.attentions) == 2 * K
    # Not bitwise: ModernBERT's swap reorders the fused projection's outputs where the reference reorders its rows.
    torch.testing.assert_close(actual.logits, expected.logits, rtol=0, atol=1e-5)
    for got, want in zip(actual.hidden_states + actual.attentions, expected.hidden_states + expected.attentions):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_swap_changes_the_model(architecture):
    teacher = make_teacher(architecture)
    inputs = inputs_for(teacher)
    with torch.no_grad():
        sps, paired = (build_sps_student(teacher, num_layers=K, shuffle_qk=s).eval()(**inputs).logits
                       for s in (True, False))
    assert (sps - paired).abs().max() > 1e-2


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_shared_weights_get_the_gradients_of_both_passes(architecture):
    teacher = make_teacher(architecture)
    student = build_sps_student(teacher, layer_ids=kept_layers(architecture)).eval()
    reference = unrolled_stock_model(student, teacher)
    inputs = inputs_for(teacher)
    student(**inputs).logits.square().sum().backward()
    reference(**inputs).logits.square().sum().backward()

    layers_path = ENCODER_LAYER_PATHS[teacher.config.model_type]
    reference_grads = {name: param.grad for name, param in reference.named_parameters()}
    for name, param in student.named_parameters():
        if not name.startswith(layers_path + "."):
            expected = reference_grads[name]
        else:
            index, rest = name[len(layers_path) + 1 :].split(".", 1)
            # The second pass's gradient, moved back to the stored tensor it came from (the swap is its own inverse).
            swapped_name, _ = second_pass_tensor(student.config.model_type, rest, param)
            second = reference_grads[f"{layers_path}.{int(index) + K}.{swapped_name}"]
            _, second = second_pass_tensor(student.config.model_type, rest, second)
            expected = reference_grads[name] + second
        # The two passes' gradients are summed in another order than the unrolled model's, so they agree to float32
        # rounding relative to the tensor's scale (the noisy weights give gradients up to ~200).
        assert (param.grad - expected).abs().max() <= 1e-6 * expected.abs().max().clamp(min=1.0), name


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_stored_tensors_are_those_of_the_plain_k_layer_student(architecture):
    teacher = make_teacher(architecture)
    ids = kept_layers(architecture)
    student = build_sps_student(teacher, layer_ids=ids)
    plain = build_student_from_teacher(teacher, layer_ids=ids)

    student_state, plain_state = student.state_dict(), plain.state_dict()
    assert student_state.keys() == plain_state.keys()
    for key, tensor in student_state.items():
        assert torch.equal(tensor, plain_state[key]), key
    config = student.config
    assert config.model_type.startswith("hf_distill_sps_") and config.shuffle_qk
    assert (config.num_hidden_layers, config.num_executed_layers, config.distillation_layer_ids) == (K, 2 * K, ids)
    assert config.id2label == teacher.config.id2label
    if architecture == "modernbert":
        assert config.layer_types == ["full_attention", "full_attention"]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_token_classification_students(architecture):
    teacher = make_teacher(architecture, token=True)
    student = build_sps_student(teacher, num_layers=K).eval()
    inputs = inputs_for(teacher)
    labels = torch.full(inputs["input_ids"].shape, -100)
    labels[:, 1:4] = 2
    output = student(**inputs, labels=labels)

    assert type(student).__name__.endswith("ForTokenClassification")
    assert output.logits.shape == (3, 9, 5)
    with torch.no_grad():
        expected = unrolled_stock_model(student, teacher)(**inputs).logits
    torch.testing.assert_close(output.logits, expected, rtol=0, atol=1e-5)
    selected = labels != -100
    ce = nn.functional.cross_entropy(output.logits[selected], labels[selected])
    assert output.loss.item() == pytest.approx(ce.item(), rel=1e-6)


def test_modernbert_student_refuses_moving_layer_one_to_position_zero():
    with pytest.raises(ValueError, match=r"cannot become student layer 0.*attn_norm.*start with layer 0"):
        build_sps_student(make_teacher("modernbert"), layer_ids=[1, 3])


def test_gradient_checkpointing_is_refused():
    student = build_sps_student(make_teacher("distilbert"), num_layers=K)
    with pytest.raises(ValueError, match="cannot use gradient checkpointing.*Drop `--gradient_checkpointing`"):
        student.gradient_checkpointing_enable()


def test_base_model_class_runs_2k_layers():
    student = build_sps_student(make_teacher("distilbert"), num_layers=K).eval()
    base = SPSDistilBertModel(student.config).eval()
    base.load_state_dict(student.distilbert.state_dict())
    inputs = inputs_for(base)
    with torch.no_grad():
        hidden = base(**inputs, output_hidden_states=True).hidden_states
        expected = student.distilbert(**inputs, output_hidden_states=True).hidden_states
    assert len(hidden) == 2 * K + 1
    for got, want in zip(hidden, expected):
        assert torch.equal(got, want)


@pytest.mark.parametrize("head", [DebertaForSequenceClassification, DebertaForTokenClassification])
def test_sps_refuses_teachers_without_a_defined_swap(head):
    # DeBERTa (v1) fuses Q, K and V into one `in_proj` with separate biases: no SPS student is written for it.
    teacher = head(DebertaConfig(**TINY, num_labels=2))
    with pytest.raises(ValueError, match=rf"no shuffled-parameter-sharing student for a {head.__name__} "
                                         r"teacher.*--student_arch plain"):
        build_sps_student(teacher, num_layers=1)


# --- save / load / export ------------------------------------------------------------------------------------------

SAVED = {
    "roberta": SPSRobertaForSequenceClassification,
    "distilbert": SPSDistilBertForSequenceClassification,
    "deberta-v2": SPSDebertaV2ForSequenceClassification,
    "modernbert": SPSModernBertForSequenceClassification,
}


@pytest.fixture
def saved_students(tmp_path):
    """One saved SPS sequence classifier per architecture (with the tiny tokenizer), and its logits."""
    folders = {}
    for architecture in SAVED:
        student = build_sps_student(make_teacher(architecture), num_layers=K).eval()
        folder = tmp_path / architecture
        student.save_pretrained(folder)
        make_tiny_tokenizer().save_pretrained(folder)
        with torch.no_grad():
            folders[architecture] = (folder, student(**inputs_for(student)).logits)
    return folders


def test_save_writes_k_layers_the_code_and_auto_map(saved_students):
    for architecture, (folder, _) in saved_students.items():
        config = json.loads((folder / "config.json").read_text())
        assert config["auto_map"] == {
            "AutoConfig": f"configuration_sps_encoder.{SAVED[architecture].config_class.__name__}",
            "AutoModelForSequenceClassification": f"modeling_sps_encoder.{SAVED[architecture].__name__}",
        }
        assert {"configuration_sps_encoder.py", "modeling_sps_encoder.py"} <= {p.name for p in folder.glob("*.py")}
        assert config["shuffle_qk"] is True and config[
            "n_layers" if architecture == "distilbert" else "num_hidden_layers"] == K


def test_in_process_auto_classes_load_the_students(saved_students):
    for architecture, (folder, logits) in saved_students.items():
        # Eager attention, as the saved student ran (the attention implementation is not saved).
        model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
        assert type(model) is SAVED[architecture]
        with torch.no_grad():
            assert torch.equal(model(**inputs_for(model)).logits, logits)
        assert type(AutoModel.from_pretrained(folder)).__name__.endswith("Model")
    token_folder = saved_students["modernbert"][0]
    assert type(AutoModelForTokenClassification.from_pretrained(token_folder)) is SPSModernBertForTokenClassification


def test_fresh_process_loads_with_trust_remote_code(saved_students, tmp_path):
    script = """
        import sys, torch
        from transformers import AutoModelForSequenceClassification
        for folder in sys.argv[1:]:
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, trust_remote_code=True, attn_implementation="eager"
            ).eval()
            generator = torch.Generator().manual_seed(0)
            input_ids = torch.randint(5, model.config.vocab_size, (3, 9), generator=generator)
            attention_mask = torch.ones_like(input_ids)
            attention_mask[1, 6:] = 0
            with torch.no_grad():
                logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            print(type(model).__module__, type(model).__name__, logits.flatten().tolist())
    """
    folders = [str(folder) for folder, _ in saved_students.values()]
    lines = run_without_hf_distill(script, tmp_path, *folders).stdout.strip().splitlines()
    assert len(lines) == len(SAVED)
    for line, (architecture, (_, logits)) in zip(lines, saved_students.items()):
        module, name, values = line.split(" ", 2)
        assert module.startswith("transformers_modules") and module.endswith(".modeling_sps_encoder"), module
        assert name == SAVED[architecture].__name__
        # Bitwise: both processes run one thread, and a float32 survives the trip through a Python float.
        assert torch.equal(torch.tensor(json.loads(values)).view_as(logits), logits), architecture


def test_export_matches_pytorch(saved_students):
    for architecture, (folder, _) in saved_students.items():
        result = export_onnx(folder, quantize=False)
        assert 0 <= result["max_abs_diff_fp32"] <= 1e-4, architecture


# --- PeaKD from the command line -----------------------------------------------------------------------------------


# RoBERTa's head is a module whose `out_proj` PTP replaces; DistilBERT's and ModernBERT's are a plain `classifier`.
@pytest.mark.parametrize("architecture", ["roberta", "distilbert", "modernbert"])
def test_peakd_trains_an_sps_student_of_the_teachers_architecture(tmp_path, tiny_sst2_dir, architecture):
    teacher = make_teacher(architecture, num_labels=2)
    teacher.config.id2label = {0: "negative", 1: "positive"}
    teacher.config.label2id = {"negative": 0, "positive": 1}
    teacher.save_pretrained(tmp_path / "teacher")
    make_tiny_tokenizer().save_pretrained(tmp_path / "teacher")
    out = tmp_path / "out"
    metrics = run_distill.main([
        "--teacher_model_name_or_path", str(tmp_path / "teacher"), "--task_name", "sst2", "--data_dir",
        str(tiny_sst2_dir), "--method", "peakd", "--student_layers", "2", "--ptp_num_train_epochs", "1",
        "--max_steps", "3", "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--output_dir", str(out),
        "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true",
    ])
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == f"hf_distill_sps_{architecture}" and config["shuffle_qk"] is True
    assert config["id2label"] == {"0": "negative", "1": "positive"}  # the task head, not PTP's 4-way one
    assert (out / "_ptp").is_dir() and "eval_loss_pkd" in metrics
