"""SPS student: equivalence with an unrolled plain 2k-layer BERT, gradients, masks, save/load, and the builder."""

import json
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_bert, make_tiny_bert_config, run_without_hf_distill
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
)

from hf_distill.students.sps import (
    SPSBertConfig,
    SPSBertForSequenceClassification,
    SPSBertModel,
    build_sps_student,
)

K = 2
LAYER_PREFIX = "bert.encoder.layer."


def make_sps(shuffle_qk: bool = True, attn: str = "sdpa", num_labels: int = 2, seed: int = 0):
    teacher = make_tiny_bert(seed, num_labels=num_labels, attn_implementation=attn)
    # BERT's init (std 0.02, zero biases) leaves attention near uniform and the Q/K biases at zero, where a missing or
    # partial swap would go unnoticed; noise on every parameter makes each of them matter.
    with torch.no_grad():
        for param in teacher.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return build_sps_student(teacher, num_layers=K, shuffle_qk=shuffle_qk).eval()


def second_pass_name(rest: str, shuffle_qk: bool) -> str:
    """Where SPS layer i's parameter `rest` sits in layer k+i of the unrolled model: Q and K trade places."""
    if shuffle_qk and rest.startswith("attention.self.query."):
        return rest.replace("query", "key", 1)
    if shuffle_qk and rest.startswith("attention.self.key."):
        return rest.replace("key", "query", 1)
    return rest


def unrolled_plain_bert(sps: SPSBertForSequenceClassification) -> BertForSequenceClassification:
    """A stock 2k-layer BERT whose layers k..2k-1 hold copies of layers 0..k-1, Q/K swapped when `shuffle_qk`."""
    k = sps.config.num_hidden_layers
    config = make_tiny_bert_config(
        num_hidden_layers=2 * k,
        num_labels=sps.config.num_labels,
        attn_implementation=sps.config._attn_implementation,
    )
    state = {}
    for key, value in sps.state_dict().items():
        if not key.startswith(LAYER_PREFIX):
            state[key] = value.clone()
            continue
        index, rest = key[len(LAYER_PREFIX) :].split(".", 1)
        state[f"{LAYER_PREFIX}{index}.{rest}"] = value.clone()
        state[f"{LAYER_PREFIX}{int(index) + k}.{second_pass_name(rest, sps.config.shuffle_qk)}"] = value.clone()
    plain = BertForSequenceClassification(config).eval()
    plain.load_state_dict(state)
    return plain


def batch(seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 90, (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    attention_mask[2, 3:] = 0
    input_ids[attention_mask == 0] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[0, 4:] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_equals_plain_k_layer_bert():
    sps = make_sps()
    assert count(sps) == count(make_tiny_bert(0, num_hidden_layers=K))
    assert count(sps) < count(unrolled_plain_bert(sps))
    assert sps.config.num_hidden_layers == K and sps.config.num_executed_layers == 2 * K


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("shuffle_qk", [True, False])
def test_forward_equals_unrolled_plain_bert(shuffle_qk, attn):
    sps = make_sps(shuffle_qk, attn)
    plain = unrolled_plain_bert(sps)
    assert sps.config._attn_implementation == plain.config._attn_implementation == attn
    with torch.no_grad():
        out = sps(**batch(), output_hidden_states=True)
        ref = plain(**batch(), output_hidden_states=True)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-6, rtol=0)
    assert len(out.hidden_states) == len(ref.hidden_states) == 2 * K + 1
    for ours, theirs in zip(out.hidden_states, ref.hidden_states):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_swap_changes_the_model():
    """Guards the equivalence test: SPS and paired sharing must differ, and the swap must matter on the input."""
    with torch.no_grad():
        sps, paired = make_sps(True)(**batch()).logits, make_sps(False)(**batch()).logits
    assert (sps - paired).abs().max() > 1e-3


def test_padding_does_not_change_real_tokens():
    sps = make_sps()
    inputs = batch()
    length = int(inputs["attention_mask"][1].sum())
    with torch.no_grad():
        padded = sps(**inputs).logits[1]
        inputs["input_ids"][1, length:] = 7  # the padded positions' content must not matter
        noisy = sps(**inputs).logits[1]
        alone = sps(**{name: tensor[1:2, :length] for name, tensor in inputs.items()}).logits[0]
    torch.testing.assert_close(padded, noisy, atol=1e-6, rtol=0)
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=0)


def test_sdpa_and_eager_agree():
    with torch.no_grad():
        sdpa, eager = make_sps(attn="sdpa")(**batch()).logits, make_sps(attn="eager")(**batch()).logits
    torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shuffle_qk", [True, False])
def test_shared_weights_get_gradients_of_both_passes(shuffle_qk):
    sps = make_sps(shuffle_qk)
    plain = unrolled_plain_bert(sps)
    labels = torch.tensor([0, 1, 1])
    sps(**batch(), labels=labels).loss.backward()
    plain(**batch(), labels=labels).loss.backward()
    plain_grads = {name: p.grad for name, p in plain.named_parameters()}
    for name, param in sps.named_parameters():
        if not name.startswith(LAYER_PREFIX):
            torch.testing.assert_close(param.grad, plain_grads[name], atol=1e-6, rtol=1e-5)
            continue
        index, rest = name[len(LAYER_PREFIX) :].split(".", 1)
        first_pass = plain_grads[f"{LAYER_PREFIX}{index}.{rest}"]
        second_pass = plain_grads[f"{LAYER_PREFIX}{int(index) + K}.{second_pass_name(rest, shuffle_qk)}"]
        assert first_pass.abs().sum() > 0 and second_pass.abs().sum() > 0
        torch.testing.assert_close(param.grad, first_pass + second_pass, atol=1e-6, rtol=1e-5)


def test_attentions_cover_every_executed_layer():
    sps = make_sps(attn="eager")
    plain = unrolled_plain_bert(sps)
    with torch.no_grad():
        out = sps(**batch(), output_attentions=True)
        ref = plain(**batch(), output_attentions=True)
        # transformers installs its output-recording hooks at the first call; later calls must not add any.
        hooks = [len(layer.attention.self._forward_hooks) for layer in sps.bert.encoder.layer]
        again = sps(**batch(), output_attentions=True)
    assert len(out.attentions) == len(again.attentions) == 2 * K
    for ours, theirs in zip(out.attentions, ref.attentions):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert [len(layer.attention.self._forward_hooks) for layer in sps.bert.encoder.layer] == hooks
    with pytest.raises(ValueError, match="attn_implementation='eager'"):
        make_sps(attn="sdpa")(**batch(), output_attentions=True)


def test_losses_and_tuple_output_match_bert():
    classifier = make_sps()
    plain = unrolled_plain_bert(classifier)
    labels = torch.tensor([0, 1, 1])
    with torch.no_grad():
        loss, logits = classifier(**batch(), labels=labels, return_dict=False)
        torch.testing.assert_close(loss, plain(**batch(), labels=labels).loss, atol=1e-6, rtol=0)
        torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, labels))
        regressor = make_sps(num_labels=1)
        scores = torch.tensor([0.5, 2.0, 4.5])
        out = regressor(**batch(), labels=scores)
    assert regressor.config.problem_type == "regression"
    torch.testing.assert_close(out.loss, torch.nn.functional.mse_loss(out.logits.squeeze(-1), scores))


def test_gradient_checkpointing_is_refused():
    with pytest.raises(ValueError, match="cannot use gradient checkpointing.*Drop `--gradient_checkpointing`"):
        make_sps().gradient_checkpointing_enable()


@pytest.fixture
def saved_sps(tmp_path):
    sps = make_sps()
    path = tmp_path / "sps_student"
    sps.save_pretrained(path)
    return sps, path


def test_save_writes_k_layers_code_and_auto_map(saved_sps):
    sps, path = saved_sps
    weights = load_file(path / "model.safetensors")
    layers = {int(key[len(LAYER_PREFIX) :].split(".")[0]) for key in weights if key.startswith(LAYER_PREFIX)}
    assert layers == set(range(K))
    assert set(weights) == set(make_tiny_bert(0, num_hidden_layers=K).state_dict())
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "hf_distill_sps_bert" and config["num_hidden_layers"] == K
    assert config["auto_map"] == {
        "AutoConfig": "configuration_sps.SPSBertConfig",
        "AutoModelForSequenceClassification": "modeling_sps.SPSBertForSequenceClassification",
    }
    assert (path / "configuration_sps.py").is_file() and (path / "modeling_sps.py").is_file()


def test_in_process_auto_classes_load_the_student(saved_sps):
    sps, path = saved_sps
    loaded = AutoModelForSequenceClassification.from_pretrained(path).eval()
    assert type(loaded) is SPSBertForSequenceClassification
    assert type(AutoConfig.from_pretrained(path)) is SPSBertConfig
    assert type(AutoModel.from_pretrained(path)) is SPSBertModel
    assert loaded.config.teacher_layer_ids == [0, 1] and loaded.config.shuffle_qk is True
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch()).logits, sps(**batch()).logits, atol=0, rtol=0)


REMOTE_LOAD = """
import sys, torch
from transformers import AutoModelForSequenceClassification
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
with torch.no_grad():
    torch.save(model(**torch.load(sys.argv[2])).logits, sys.argv[3])
"""


def test_fresh_process_loads_with_trust_remote_code(saved_sps, tmp_path):
    sps, path = saved_sps
    torch.save(batch(), tmp_path / "batch.pt")
    run_without_hf_distill(REMOTE_LOAD, tmp_path, str(path), "batch.pt", "logits.pt")
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), sps(**batch()).logits, atol=0, rtol=0)


def test_build_copies_the_chosen_teacher_layers():
    teacher = make_tiny_bert(0)
    student = build_sps_student(teacher, layer_ids=[1, 3], shuffle_qk=False)
    assert student.config.teacher_layer_ids == [1, 3] and student.config.shuffle_qk is False
    assert student.config.id2label == teacher.config.id2label
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    for key, value in student_state.items():
        if key.startswith(LAYER_PREFIX):
            index, rest = key[len(LAYER_PREFIX) :].split(".", 1)
            key = f"{LAYER_PREFIX}{[1, 3][int(index)]}.{rest}"
        assert torch.equal(value, teacher_state[key]), key
    assert not torch.equal(
        student_state[f"{LAYER_PREFIX}0.attention.self.query.weight"],
        teacher_state[f"{LAYER_PREFIX}0.attention.self.query.weight"],
    )
    assert build_sps_student(teacher, num_layers=3).config.teacher_layer_ids == [0, 1, 2]
    assert build_sps_student(teacher, layer_ids=[0, 2]).config.teacher_layer_ids == [0, 2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of `student_layers`"),
        ({"num_layers": 0}, "`student_layers` is 0"),
        ({"num_layers": 5}, r"`student_layers` is 5.*\[1, 4\]"),
        ({"layer_ids": [1, 4]}, r"`student_layer_ids` contains 4.*\[0, 3\]"),
        ({"layer_ids": [-1, 2]}, r"`student_layer_ids` contains -1"),
        ({"layer_ids": [2, 1]}, r"not in ascending order.*Use \[1, 2\]"),
        ({"layer_ids": [1, 1]}, r"repeats a layer.*\[1\]"),
        ({"layer_ids": []}, "`student_layer_ids` is empty"),
        ({"num_layers": 3, "layer_ids": [0, 1]}, "exactly one of `student_layers`"),
    ],
)
def test_build_rejects_bad_layer_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_sps_student(make_tiny_bert(0), **kwargs)


def test_a_student_saved_by_the_former_own_encoder_loads_with_the_same_outputs():
    """tests/data/sps_bert_own_encoder: a 2-layer SPS BERT student (weights noised, so that the swap matters: without
    it the logits move by 0.09) saved by commit 86f3072, whose student had its own encoder (the second pass through
    `torch.func.functional_call`), with that code's outputs. Today's stock-class student reads the same model type
    and tensors and computes the same values."""
    folder = Path(__file__).parent / "data" / "sps_bert_own_encoder"
    expected = json.loads((folder / "expected.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert type(model) is SPSBertForSequenceClassification and model.config.num_hidden_layers == 2
    with torch.no_grad():
        out = model(input_ids=torch.tensor(expected["input_ids"]),
                    attention_mask=torch.tensor(expected["attention_mask"]), output_hidden_states=True)
    torch.testing.assert_close(out.logits, torch.tensor(expected["logits"]), atol=1e-6, rtol=0)
    assert len(out.hidden_states) == expected["num_hidden_states"] == 5
    assert out.hidden_states[-1].sum().item() == pytest.approx(expected["last_hidden_state_sum"], abs=1e-4)
