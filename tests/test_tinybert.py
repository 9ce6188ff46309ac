import json

import pytest
import torch
from conftest import NO_DROPOUT, make_tiny_bert, make_tiny_dataset, make_tiny_tokenizer
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from hf_distill import DistillationConfig, DistillationTrainer, load_task_dataset, losses, tokenize_dataset
from hf_distill.methods import LossInputs
from hf_distill.methods.projections import WidthProjections
from hf_distill.methods.tinybert import (
    PROJECTIONS_FILE,
    capture_attention,
    stage_settings,
    tinybert_layer_map,
)
from hf_distill.pipeline import train_student
from hf_distill.students.factory import build_student_from_config


def padded_batch():
    return make_tiny_tokenizer()(["the movie was great fun", "bad"], padding=True, return_tensors="pt")


def tinybert_args(tmp_path, **overrides):
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        method="tinybert",
        max_steps=3,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        seed=0,
    )
    return DistillationConfig(**{**defaults, **overrides})


def make_trainer(tmp_path, student=None, teacher=None, **overrides):
    if student is None:
        student = make_tiny_bert(seed=1, num_hidden_layers=2, hidden_size=16, **NO_DROPOUT)
    teacher = teacher if teacher is not None else make_tiny_bert(seed=0, **NO_DROPOUT)
    data = make_tiny_dataset()
    return DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=tinybert_args(tmp_path, **{"tinybert_stage": 1, **overrides}),
        train_dataset=data,
        eval_dataset=data,
        data_collator=DataCollatorWithPadding(make_tiny_tokenizer()),
    )


# -- attention capture ---------------------------------------------------------------------------------------------


def manual_scores(model, hidden_states, attention_mask, layer):
    """`Q Kᵀ/√d_head + mask` for one BERT layer, straight from the formula."""
    attention = model.bert.encoder.layer[layer].attention.self
    batch, length, _ = hidden_states.shape
    heads, head_size = attention.num_attention_heads, attention.attention_head_size
    query = attention.query(hidden_states).view(batch, length, heads, head_size).transpose(1, 2)
    key = attention.key(hidden_states).view(batch, length, heads, head_size).transpose(1, 2)
    mask = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    return query @ key.transpose(-1, -2) / head_size**0.5 + mask


def test_captured_scores_equal_manual_computation_and_leave_the_model_unchanged():
    model = make_tiny_bert(seed=0, **NO_DROPOUT)
    batch = padded_batch()
    with torch.no_grad():
        reference = model(**batch, output_hidden_states=True)
        with capture_attention(model) as scores:
            captured = model(**batch)
    assert len(scores) == model.config.num_hidden_layers
    assert scores[0].shape == (2, 4, batch["input_ids"].size(1), batch["input_ids"].size(1))
    for layer in (0, 2):
        expected = manual_scores(model, reference.hidden_states[layer], batch["attention_mask"], layer)
        torch.testing.assert_close(scores[layer], expected, rtol=1e-5, atol=1e-5)
    assert scores[0][1, 0, 0, -1] == torch.finfo(torch.float32).min  # "bad" is padded: its last key is masked
    torch.testing.assert_close(captured.logits, reference.logits)
    assert model.config._attn_implementation == "sdpa"


def test_captured_probabilities_equal_eager_attentions_and_keep_gradients():
    model = make_tiny_bert(seed=0, **NO_DROPOUT)
    batch = padded_batch()
    with capture_attention(model, target="probs") as probs:
        model(**batch)
    probs[1].sum().backward()
    assert model.bert.encoder.layer[1].attention.self.query.weight.grad is not None
    model.set_attn_implementation("eager")
    with torch.no_grad():
        eager = model(**batch, output_attentions=True).attentions
    for captured, expected in zip(probs, eager):
        torch.testing.assert_close(captured.detach(), expected)


def test_capture_records_only_its_own_model():
    student, teacher = make_tiny_bert(seed=1, num_hidden_layers=2), make_tiny_bert(seed=0)
    batch = padded_batch()
    with torch.no_grad(), capture_attention(student) as student_maps:
        teacher(**batch)
        student(**batch)
    assert len(student_maps) == 2
    assert teacher.config._attn_implementation == "sdpa"


# -- projections and layer maps ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shared, expected_maps", [(True, 1), (False, 3)])
def test_projection_shared_or_per_layer(shared, expected_maps):
    projections = WidthProjections(16, 32, [0, 1, 2], shared=shared)
    assert len(projections.maps) == expected_maps
    hidden = torch.randn(2, 5, 16)
    out0, out2 = projections(hidden, 0), projections(hidden, 2)
    assert out0.shape == (2, 5, 32)
    assert torch.equal(out0, out2) == shared
    linear = projections.maps["shared" if shared else "2"]
    torch.testing.assert_close(out2, hidden @ linear.weight.T + linear.bias)


def test_layer_maps_uniform_explicit_and_invalid():
    assert tinybert_layer_map(2, 4) == [(0, 0), (1, 2), (2, 4)]
    assert tinybert_layer_map(2, 4, "1,3") == [(0, 0), (1, 1), (2, 3)]
    with pytest.raises(ValueError, match="`tinybert_layer_map` lists 3 teacher layers"):
        tinybert_layer_map(2, 4, "1,2,3")
    with pytest.raises(ValueError, match="teacher layer 5"):
        tinybert_layer_map(2, 4, "2,5")
    with pytest.raises(ValueError, match="teacher layer 0"):
        tinybert_layer_map(2, 4, "0,4")
    with pytest.raises(ValueError, match="multiple of the student depth M=3"):
        tinybert_layer_map(3, 4)


def test_bad_inputs_fail_before_training(tmp_path):
    narrow = make_tiny_bert(seed=1, num_hidden_layers=2, hidden_size=16)
    with pytest.raises(ValueError, match="`tinybert_use_projection`='false'.*hidden size is 16 and the teacher's 32"):
        make_trainer(tmp_path, student=narrow, tinybert_use_projection="false")
    two_heads = make_tiny_bert(seed=1, num_hidden_layers=2, num_attention_heads=2)
    with pytest.raises(ValueError, match="`num_attention_heads`=2 and the teacher 4.*--student_config"):
        make_trainer(tmp_path, student=two_heads)
    with pytest.raises(ValueError, match="lists 1 teacher layers"):
        make_trainer(tmp_path, tinybert_layer_map="2")
    with pytest.raises(ValueError, match="`gradient_checkpointing` does not work in TinyBERT stage 1"):
        make_trainer(tmp_path, gradient_checkpointing=True)
    with pytest.raises(ValueError, match="`tinybert_stage` must be 1"):
        make_trainer(tmp_path, tinybert_stage=None)
    with pytest.raises(ValueError, match="`learning_rate`=0.001 does not apply"):
        stage_settings(tinybert_args(tmp_path, learning_rate=1e-3))


# -- loss terms ----------------------------------------------------------------------------------------------------


def stage1_terms(trainer, student, batch, teacher_forward):
    """The stage-1 terms of one batch as `compute_loss` gets them: both forward passes inside the method's capture."""
    method = trainer.distillation_method
    with method.capture(trainer.teacher) as teacher_maps:
        teacher_outputs = teacher_forward(True)
    with method.capture(student) as student_maps:
        student_outputs = student(**batch, output_hidden_states=True)
    return method.loss_terms(
        LossInputs(student_outputs, teacher_outputs, None, batch["attention_mask"], student_maps, teacher_maps)
    )


def test_stage1_terms_vanish_for_a_copy_of_the_teacher_and_match_the_formula(tmp_path):
    teacher = make_tiny_bert(seed=0, **NO_DROPOUT)
    copy = make_tiny_bert(seed=0, **NO_DROPOUT)
    batch = dict(padded_batch())

    def teacher_forward(output_hidden_states):
        with torch.no_grad():
            return teacher(**batch, output_hidden_states=output_hidden_states)

    trainer = make_trainer(tmp_path, student=copy, teacher=teacher)
    assert trainer.distillation_method.projections is None  # equal widths, "auto"
    terms = stage1_terms(trainer, trainer.model, batch, teacher_forward)
    assert all(value.item() < 1e-10 for _, value in terms.values())

    # The reference's attention normalisation, which `expected_attn` below writes out.
    trainer = make_trainer(tmp_path, teacher=teacher, tinybert_hidden_mask=True, tinybert_attention_masked_mean=False)
    student, projections = trainer.model, trainer.distillation_method.projections
    terms = stage1_terms(trainer, student, batch, teacher_forward)
    with torch.no_grad():
        student_hidden = student(**batch, output_hidden_states=True).hidden_states
        teacher_hidden = teacher(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"]
        expected_hidden = sum(
            losses.hidden_mse_loss(projections(student_hidden[m], m), teacher_hidden[2 * m], mask, reduction="sum")
            for m in (1, 2)
        )
        expected_emb = losses.hidden_mse_loss(projections(student_hidden[0], 0), teacher_hidden[0], mask, "sum")
        expected_attn = sum(
            losses.attention_score_loss(
                manual_scores(student, student_hidden[m - 1], mask, m - 1),
                manual_scores(teacher, teacher_hidden[2 * m - 1], mask, 2 * m - 1),
                mask,
                reduction="sum",
            )
            for m in (1, 2)
        )
    torch.testing.assert_close(terms["loss_hidden"][1], expected_hidden)
    torch.testing.assert_close(terms["loss_emb"][1], expected_emb)
    torch.testing.assert_close(terms["loss_attn"][1], expected_attn)


def test_stage2_is_soft_cross_entropy_at_temperature_one(tmp_path):
    student = make_tiny_bert(seed=1, num_hidden_layers=2, **NO_DROPOUT)
    trainer = make_trainer(tmp_path, student=student, tinybert_stage=2)
    batch = dict(padded_batch())
    student_outputs = trainer.model(**batch)
    terms = trainer.distillation_method.loss_terms(
        LossInputs(student_outputs, trainer.teacher(**batch), torch.tensor([1, 0]), batch["attention_mask"])
    )
    assert set(terms) == {"loss_pred"}  # alpha preset 1: no hard-label term
    teacher_probs = trainer.teacher(**batch).logits.softmax(-1)
    expected = -(teacher_probs * student_outputs.logits.log_softmax(-1)).sum()
    torch.testing.assert_close(terms["loss_pred"][1], expected)


# -- training ------------------------------------------------------------------------------------------------------


def term_history(trainer, name):
    return [log[name] for log in trainer.state.log_history if name in log and "loss" in log]


def test_two_stages_train_every_term_and_save_only_the_student(tmp_path, monkeypatch):
    student = make_tiny_bert(seed=1, num_hidden_layers=2, hidden_size=16, **NO_DROPOUT)
    teacher = make_tiny_bert(seed=0, **NO_DROPOUT)
    args = tinybert_args(tmp_path, max_steps=8, tinybert_stage1_learning_rate=3e-3, tinybert_stage2_learning_rate=3e-3)
    trainers = []
    original_init = DistillationTrainer.__init__

    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        trainers.append(self)

    monkeypatch.setattr(DistillationTrainer, "__init__", recording_init)
    collator = DataCollatorWithPadding(make_tiny_tokenizer())
    trainer, result = train_student(student, teacher, args, train_dataset=make_tiny_dataset(), data_collator=collator)
    stage1, stage2 = trainers
    assert (stage1.args.learning_rate, str(stage1.args.lr_scheduler_type.value), stage1.args.warmup_steps) == (
        3e-3, "constant", 0
    )
    assert (stage2.args.lr_scheduler_type.value, stage2.args.warmup_steps) == ("linear", 0.1)
    for name in ("loss_emb", "loss_hidden", "loss_attn"):
        history = term_history(stage1, name)
        assert len(history) == 8 and history[-1] < history[0], (name, history)
    history = term_history(stage2, "loss_pred")
    assert history[-1] < history[0] and "loss_hidden" not in stage2.state.log_history[0]
    assert trainer is stage2 and stage2.model is stage1.model and result.global_step == 8

    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "_stage1")
    assert saved.config.hidden_size == 16 and saved.config._attn_implementation == "sdpa"
    assert not any("maps" in key for key in load_file(tmp_path / "out" / "_stage1" / "model.safetensors"))


def test_projections_train_are_checkpointed_and_restored_on_resume(tmp_path):
    # SGD: Adam's update of a near-zero gradient is ±lr whatever its size, so float noise would flip its sign.
    trainer = make_trainer(tmp_path, max_steps=4, save_strategy="steps", save_steps=2, weight_decay=0.01, optim="sgd",
                           tinybert_stage1_learning_rate=0.1)
    initial = trainer.distillation_method.projections.maps["shared"].weight.detach().clone()
    trainer.train()
    trained = trainer.distillation_method.projections.state_dict()
    assert not torch.equal(trained["maps.shared.weight"], initial)
    groups = trainer.optimizer.param_groups
    assert any(p is trainer.distillation_method.projections.maps["shared"].weight for g in groups for p in g["params"])
    checkpoint = tmp_path / "out" / "checkpoint-2"
    stored = load_file(checkpoint / PROJECTIONS_FILE)
    final = load_file(tmp_path / "out" / "checkpoint-4" / PROJECTIONS_FILE)
    torch.testing.assert_close(final["maps.shared.weight"], trained["maps.shared.weight"])
    assert not torch.equal(stored["maps.shared.weight"], final["maps.shared.weight"])
    assert not any("maps" in key for key in load_file(checkpoint / "model.safetensors"))

    # Resumed at step 2, steps 3 and 4 must give the uninterrupted run's projections: only if step 2's projections and
    # their optimizer state were restored. (Resuming from the last checkpoint of a finished run is no check:
    # transformers 5.24 then trains one step beyond `max_steps`, which stage 1's constant learning rate makes show.)
    resumed = make_trainer(tmp_path, max_steps=4, save_strategy="no", weight_decay=0.01, optim="sgd",
                           tinybert_stage1_learning_rate=0.1)
    assert not torch.equal(resumed.distillation_method.projections.maps["shared"].weight, stored["maps.shared.weight"])
    resumed.train(resume_from_checkpoint=str(checkpoint))
    torch.testing.assert_close(resumed.distillation_method.projections.state_dict(), dict(final))


# -- students of another shape and the script ----------------------------------------------------------------------


def test_student_from_config_json_or_file(tmp_path):
    teacher = make_tiny_bert(seed=0)
    spec = {"num_hidden_layers": 2, "hidden_size": 24, "intermediate_size": 48}
    student = build_student_from_config(json.dumps(spec), teacher)
    assert (student.config.num_hidden_layers, student.config.hidden_size) == (2, 24)
    assert student.config.vocab_size == teacher.config.vocab_size and student.config.num_attention_heads == 4
    path = tmp_path / "student.json"
    path.write_text(json.dumps(spec))
    assert build_student_from_config(str(path), teacher).config.intermediate_size == 48
    with pytest.raises(ValueError, match=r"\['vocab_size'\].*teacher's token ids"):
        build_student_from_config('{"vocab_size": 10}', teacher)
    with pytest.raises(ValueError, match=r"\['num_layers'\]"):
        build_student_from_config('{"num_layers": 2}', teacher)
    with pytest.raises(ValueError, match="JSON object"):
        build_student_from_config("hidden_size=24", teacher)


def run_script(tmp_path, teacher, data_dir, *extra):
    import run_distill

    output_dir = tmp_path / "tinybert"
    argv = [
        "--method", "tinybert", "--teacher_model_name_or_path", str(teacher), "--task_name", "sst2",
        "--data_dir", str(data_dir), "--output_dir", str(output_dir), "--max_steps", "2",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--report_to", "none",
        "--use_cpu", "--save_strategy", "no", "--eval_strategy", "no", "--disable_tqdm", "true",
        "--max_seq_length", "32", *extra,
    ]  # fmt: skip
    return output_dir, run_distill.main(argv)


def test_script_runs_both_stages_into_a_configured_student(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    output_dir, metrics = run_script(
        tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--student_config", '{"num_hidden_layers": 2, "hidden_size": 16}'
    )
    assert "eval_accuracy" in metrics
    config = json.loads((output_dir / "distillation_config.json").read_text())
    assert config["tinybert_stages"]["stage1"]["lr_scheduler_type"] == "constant"
    assert config["tinybert_stages"]["stage2"]["learning_rate"] == 3e-5
    for folder in (output_dir, output_dir / "_stage1"):
        assert AutoModelForSequenceClassification.from_pretrained(folder).config.hidden_size == 16


def test_minilm_teacher_into_a_narrower_student_on_real_sst2_rows(tmp_path, minilm_path, glue_dir):
    """MiniLM-L6 (hidden 384, 12 heads) into a 3-layer, hidden-192 student: W_h 192 → 384, map 1→2, 2→4, 3→6."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    teacher = AutoModelForSequenceClassification.from_pretrained(minilm_path, num_labels=2)
    spec = '{"num_hidden_layers": 3, "hidden_size": 192, "intermediate_size": 384}'
    student = build_student_from_config(spec, teacher)
    raw, task = load_task_dataset("sst2", data_dir=str(glue_dir / "SST-2"), max_train_samples=8, max_eval_samples=8)
    train = tokenize_dataset(raw, tokenizer, task, 32)["train"]
    args = tinybert_args(tmp_path, max_steps=1, per_device_train_batch_size=8)
    trainer, _ = train_student(
        student, teacher, args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer)
    )
    stage1 = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "_stage1")
    assert (stage1.config.hidden_size, stage1.config.num_attention_heads) == (192, 12)
    assert trainer.args.tinybert_stage == 2 and trainer.state.log_history[0]["loss_pred"] > 0
