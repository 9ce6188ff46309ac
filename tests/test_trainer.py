import datasets
import pytest
import torch
from conftest import NO_DROPOUT, make_tiny_bert, make_tiny_dataset, make_tiny_tokenizer
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.methods import LossInputs


def make_trainer(tmp_path, method="kd", teacher=None, student=None, train_rows=64, **config_kwargs):
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        method=method,
        max_steps=4,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        seed=0,
    )
    defaults.update(config_kwargs)
    teacher = teacher if teacher is not None else make_tiny_bert(seed=0, **NO_DROPOUT)
    student = student if student is not None else make_tiny_bert(seed=1, num_hidden_layers=2, **NO_DROPOUT)
    data = make_tiny_dataset(train_rows)
    return DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=DistillationConfig(**defaults),
        train_dataset=data,
        eval_dataset=data,
        data_collator=DataCollatorWithPadding(make_tiny_tokenizer()),
    )


@pytest.mark.parametrize(
    "method, terms", [("kd", {"loss_kd", "loss_ce"}), ("pkd", {"loss_kd", "loss_ce", "loss_pkd"})]
)
def test_training_lowers_loss_logs_every_term_and_freezes_teacher(tmp_path, method, terms):
    trainer = make_trainer(tmp_path, method=method, max_steps=30, learning_rate=3e-3)
    teacher_before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    first_eval = trainer.evaluate()
    trainer.train()
    last_eval = trainer.evaluate()
    assert last_eval["eval_loss"] < first_eval["eval_loss"]
    train_logs = [log for log in trainer.state.log_history if "loss" in log]
    assert terms <= set(train_logs[0])
    assert {f"eval_{t}" for t in terms} <= set(last_eval)
    for name, value in trainer.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[name]), name
    assert all(not p.requires_grad for p in trainer.teacher.parameters())
    assert not trainer.teacher.training


def test_total_loss_is_the_weighted_sum_of_terms(tmp_path):
    trainer = make_trainer(tmp_path, method="pkd", alpha=0.4, temperature=2.0, beta=10.0)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    trainer.model.eval()
    loss = trainer.compute_loss(trainer.model, batch)
    buffer = trainer._term_buffer["eval"]
    expected = 0.6 * buffer["loss_ce"][-1] + 0.4 * buffer["loss_kd"][-1] + 10.0 * buffer["loss_pkd"][-1]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradient_accumulation_matches_full_batch(tmp_path):
    def train_one_step(batch_size, accumulation):
        trainer = make_trainer(
            tmp_path / f"{batch_size}x{accumulation}",
            method="pkd",
            max_steps=1,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
        )
        trainer.train()
        return trainer.state.log_history[0]["loss"], trainer.model.state_dict()

    loss_full, weights_full = train_one_step(32, 1)
    loss_accumulated, weights_accumulated = train_one_step(16, 2)
    assert loss_accumulated == pytest.approx(loss_full, rel=1e-5)
    for name, value in weights_full.items():
        torch.testing.assert_close(weights_accumulated[name], value, rtol=1e-5, atol=1e-6)


def test_save_then_from_pretrained_round_trips_the_student_only(tmp_path):
    trainer = make_trainer(tmp_path, method="pkd")
    trainer.train()
    trainer.save_model(str(tmp_path / "student"))
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student").eval()
    assert reloaded.config.num_hidden_layers == 2
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    batch = {k: v for k, v in batch.items() if k not in ("labels", "idx")}
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, trainer.model(**batch).logits)
    teacher_keys = set(trainer.teacher.state_dict())
    assert set(reloaded.state_dict()) != teacher_keys  # 2-layer student, not the 4-layer teacher


def test_evaluation_during_training_and_best_model_reloading(tmp_path):
    trainer = make_trainer(
        tmp_path,
        max_steps=6,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
    )
    trainer.train()
    eval_logs = [log for log in trainer.state.log_history if "eval_loss" in log]
    assert len(eval_logs) == 3 and all("eval_loss_kd" in log for log in eval_logs)
    assert trainer.state.best_model_checkpoint is not None
    checkpoint_files = {p.name for p in (tmp_path / "out" / "checkpoint-2").iterdir()}
    assert "model.safetensors" in checkpoint_files  # the student; the teacher is never saved


def test_regression_uses_squared_errors(tmp_path):
    teacher = make_tiny_bert(seed=0, num_labels=1, **NO_DROPOUT)
    student = make_tiny_bert(seed=1, num_labels=1, num_hidden_layers=2, **NO_DROPOUT)
    trainer = make_trainer(tmp_path, teacher=teacher, student=student, alpha=0.5)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    batch["labels"] = batch["labels"].float()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "idx")}
        s, t = trainer.model(**inputs).logits.squeeze(-1), trainer.teacher(**inputs).logits.squeeze(-1)
    expected = 0.5 * ((s - batch["labels"]) ** 2).mean() + 0.5 * ((s - t) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_incompatible_teacher_and_student_fail_early(tmp_path):
    with pytest.raises(ValueError, match="teacher predicts 3 labels but the student"):
        make_trainer(tmp_path, teacher=make_tiny_bert(num_labels=3))
    with pytest.raises(ValueError, match="vocabularies differ"):
        make_trainer(tmp_path, student=make_tiny_bert(num_hidden_layers=2, vocab_size=500))
    with pytest.raises(ValueError, match="`pkd_layer_map` maps to teacher layer 7"):
        make_trainer(tmp_path, method="pkd", pkd_layer_map="7")
    with pytest.raises(ValueError, match="teacher_model"):
        DistillationTrainer(model=make_tiny_bert(), args=DistillationConfig(output_dir=str(tmp_path), report_to=[]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 1.5}, "`alpha` must be in \\[0, 1\\]"),
        ({"temperature": 0.0}, "`temperature` must be > 0"),
        ({"beta": -1.0}, "`beta` must be ≥ 0"),
        ({"method": "magic"}, "`method`='magic' is not a known"),
        ({"pkd_layer_map": "a,b"}, "`pkd_layer_map` must be a comma-separated"),
    ],
)
def test_config_rejects_bad_values(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DistillationConfig(output_dir=str(tmp_path), report_to=[], **kwargs)


def test_presets_fill_only_unset_values(tmp_path):
    config = DistillationConfig(output_dir=str(tmp_path), method="pkd", temperature=2.0, report_to=[])
    assert (config.alpha, config.temperature, config.beta) == (0.7, 2.0, 500.0)
    assert config.effective_distillation_config()["beta"] == 500.0


def test_bf16_mixed_precision_trains_with_finite_terms_and_an_fp32_teacher(tmp_path):
    trainer = make_trainer(tmp_path, method="pkd", bf16=True, max_steps=3)
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert all(torch.isfinite(torch.tensor([log["loss"], log["loss_pkd"], log["loss_kd"]])).all() for log in logs)
    assert logs[-1]["loss"] < logs[0]["loss"]
    assert all(p.dtype == torch.float32 for p in trainer.teacher.parameters())


def test_a_student_without_segment_ids_keeps_the_teachers(tmp_path):
    """Trainer prunes the columns the student's forward does not name: a DistilBERT student would lose the
    `token_type_ids` of sentence pairs, and the BERT teacher would then read every pair as one segment."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    tokenizer = make_tiny_tokenizer()
    pairs = tokenizer(["the movie was good", "a bad plot"] * 8, ["he loved it", "she said no"] * 8)
    data = datasets.Dataset.from_dict({**pairs, "labels": [1, 0] * 8})
    assert any(1 in row for row in data["token_type_ids"])
    torch.manual_seed(1)
    student = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64))
    teacher = make_tiny_bert(seed=0, **NO_DROPOUT)
    seen = {"teacher": [], "student": []}
    teacher.register_forward_pre_hook(lambda m, a, kw: seen["teacher"].append(kw.get("token_type_ids")),
                                      with_kwargs=True)
    student.register_forward_pre_hook(lambda m, a, kw: seen["student"].append(set(kw)), with_kwargs=True)
    trainer = DistillationTrainer(
        model=student, teacher_model=teacher, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer),
        args=DistillationConfig(output_dir=str(tmp_path), method="kd", max_steps=2, per_device_train_batch_size=8,
                                report_to=[], use_cpu=True, save_strategy="no"),
    )
    trainer.train()

    assert len(seen["teacher"]) == 2 and all(ids is not None and ids.eq(1).any() for ids in seen["teacher"])
    assert all("token_type_ids" not in names for names in seen["student"])


def test_pkd_maps_a_student_of_another_width_through_a_trained_projection(tmp_path):
    from safetensors.torch import load_file

    from hf_distill import losses
    from hf_distill.methods.pkd import PROJECTION_FILE

    student = make_tiny_bert(seed=1, num_hidden_layers=2, hidden_size=64, intermediate_size=64, **NO_DROPOUT)
    trainer = make_trainer(tmp_path, method="pkd", student=student, save_strategy="steps", save_steps=4)
    method = trainer.distillation_method
    projection = method.projection.maps["shared"]
    assert projection.weight.shape == (32, 64)
    batch = DataCollatorWithPadding(make_tiny_tokenizer())([trainer.train_dataset[i] for i in range(4)])
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        student_states = student(**inputs, output_hidden_states=True).hidden_states
        teacher_states = trainer.teacher(**inputs, output_hidden_states=True).hidden_states
        projected = torch.stack([student_states[s][:, 0] @ projection.weight.T + projection.bias
                                 for s, _ in method.layer_map], dim=1)
        teacher_cls = torch.stack([teacher_states[t][:, 0] for _, t in method.layer_map], dim=1)
        expected = losses.patient_loss(projected, teacher_cls, True, reduction="sum")
        _, got = method.loss_terms(LossInputs(
            student(**inputs, output_hidden_states=True), trainer.teacher(**inputs, output_hidden_states=True),
            batch["labels"], batch["attention_mask"], None, None))["loss_pkd"]
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)

    before = projection.weight.detach().clone()
    trainer.train()

    assert not torch.equal(projection.weight, before)  # in the optimizer, with the student
    saved = load_file(tmp_path / "out" / "checkpoint-4" / PROJECTION_FILE)
    assert torch.equal(saved["maps.shared.weight"], projection.weight.detach())
    assert not any("maps." in key for key in student.state_dict())  # never part of the student
