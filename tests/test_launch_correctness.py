"""Settings that used to be silently ignored or silently wrong (issue: correct under every launch).

Each test here failed on the code before the fix it names: hard labels of augmented rows, method fields of another
method, TinyBERT stage schedules of a directly built trainer, TinyBERT stage 2 on regression, padding-dependent
TinyBERT stage 1 losses, regression labels of -100, and W_h gradients that were never cleared.
"""

import json
import math

import datasets
import pytest
import torch
from conftest import NO_DROPOUT, make_tiny_bert, make_tiny_dataset, make_tiny_tokenizer
from transformers import DataCollatorWithPadding, HfArgumentParser

from hf_distill import DistillationConfig, DistillationTrainer, get_task, losses
from hf_distill.config import METHOD_PRESETS
from hf_distill.data import load_task_dataset, tokenize_dataset
from hf_distill.methods.peakd import ptp_training_rows
from hf_distill.students.factory import StudentArguments, build_student


def config(tmp_path, **kwargs):
    defaults = dict(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True, save_strategy="no", seed=0,
                    per_device_train_batch_size=8, per_device_eval_batch_size=8, logging_steps=1)
    return DistillationConfig(**{**defaults, **kwargs})


def trainer_for(tmp_path, data, student=None, teacher=None, **kwargs):
    return DistillationTrainer(
        model=student if student is not None else make_tiny_bert(seed=1, num_hidden_layers=2, **NO_DROPOUT),
        teacher_model=teacher if teacher is not None else make_tiny_bert(seed=0, **NO_DROPOUT),
        args=config(tmp_path, **kwargs),
        train_dataset=data,
        eval_dataset=data,
        data_collator=DataCollatorWithPadding(make_tiny_tokenizer()),
    )


def with_augmented(data: datasets.Dataset, augmented_rows: set[int]) -> datasets.Dataset:
    return data.add_column("augmented", [i in augmented_rows for i in range(len(data))])


# -- 1. augmented rows train the distillation terms only ------------------------------------------------------------
def test_hard_label_ce_skips_augmented_rows_and_averages_over_labelled_rows(tmp_path):
    data = with_augmented(make_tiny_dataset(8), augmented_rows={1, 2, 5, 6, 7})
    trainer = trainer_for(tmp_path, data, method="kd", alpha=0.5, temperature=2.0)
    batch = trainer.data_collator([data[i] for i in range(8)])
    trainer.model.eval()
    loss = trainer.compute_loss(trainer.model, batch)
    with torch.no_grad():
        student = trainer.model(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask",
                                                                            "token_type_ids")}).logits
        teacher = trainer.teacher(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask",
                                                                             "token_type_ids")}).logits
    original = [0, 3, 4]
    expected_ce = sum(-torch.log_softmax(student[i], -1)[batch["labels"][i]] for i in original) / len(original)
    expected_kd = losses.kd_loss(student, teacher, 2.0)  # every row, augmented ones included
    torch.testing.assert_close(loss, 0.5 * expected_ce + 0.5 * expected_kd)

    # The CE term as logged is the mean over the labelled rows, too.
    assert trainer._term_buffer["eval"]["loss_ce"][-1].item() == pytest.approx(expected_ce.item(), rel=1e-5)

    trusting = trainer_for(tmp_path, data, method="kd", alpha=0.5, temperature=2.0, train_ce_on_augmented=True)
    trusting.model.eval()
    all_rows_ce = torch.nn.functional.cross_entropy(student, batch["labels"])
    torch.testing.assert_close(trusting.compute_loss(trusting.model, batch), 0.5 * all_rows_ce + 0.5 * expected_kd)


def test_a_batch_of_augmented_rows_only_has_a_finite_loss_without_ce(tmp_path):
    data = with_augmented(make_tiny_dataset(8), augmented_rows=set(range(8)))
    trainer = trainer_for(tmp_path, data, method="kd", alpha=0.5, temperature=2.0)
    batch = trainer.data_collator([data[i] for i in range(8)])
    trainer.model.eval()
    loss = trainer.compute_loss(trainer.model, batch)
    assert math.isfinite(loss.item()) and "loss_ce" not in trainer._term_buffer["eval"]


def test_gradient_accumulation_with_augmented_rows_matches_one_big_batch(tmp_path):
    """The CE's denominator is the labelled rows of the whole accumulated batch, as the other terms' is its rows."""
    data = with_augmented(make_tiny_dataset(16), augmented_rows={0, 1, 2, 3, 4, 9, 10, 12})

    def first_step_gradient(batch_size, accumulation):
        trainer = trainer_for(tmp_path, data, method="kd", alpha=0.3, temperature=2.0, max_steps=1,
                              per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
                              learning_rate=0.1, optim="sgd", max_grad_norm=0.0)
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        trainer.train()
        return {n: (before[n] - p.detach()) for n, p in trainer.model.named_parameters()}

    one, four = first_step_gradient(16, 1), first_step_gradient(4, 4)
    for name in one:
        torch.testing.assert_close(four[name], one[name], rtol=1e-4, atol=1e-7, msg=name)


def test_the_loader_keeps_the_augmented_column_of_a_file(tmp_path):
    path = tmp_path / "aug.jsonl"
    rows = [{"sentence": "the movie is good", "label": "positive", "idx": 0, "augmented": False},
            {"sentence": "the film is good", "label": "positive", "idx": 0, "augmented": True},
            {"sentence": "the plot is dull", "label": "negative", "idx": 1, "augmented": False}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    raw, task = load_task_dataset("sst2", train_file=str(path), validation_file=str(path))
    assert raw["train"]["augmented"] == [False, True, False]
    tokenized = tokenize_dataset(raw, make_tiny_tokenizer(), task, 32)
    batch = DataCollatorWithPadding(make_tiny_tokenizer())([tokenized["train"][i] for i in range(3)])
    assert batch["augmented"].tolist() == [False, True, False]


def test_ptp_trains_on_original_rows_only(tmp_path):
    data = with_augmented(make_tiny_dataset(8), augmented_rows={1, 2, 3})
    assert ptp_training_rows(data, config(tmp_path, method="peakd"))["idx"] == [0, 4, 5, 6, 7]
    assert len(ptp_training_rows(data, config(tmp_path, method="peakd", train_ce_on_augmented=True))) == 8


# -- 6. regression labels of -100 are ignored -----------------------------------------------------------------------
def test_regression_labels_of_minus_100_are_ignored():
    logits = torch.tensor([[0.5], [1.0], [2.0]])
    labels = torch.tensor([-100.0, 2.0, 2.5])
    per_row = losses.hard_label_loss(logits, labels, reduction="none")
    assert per_row.tolist() == [0.0, 1.0, 0.25]
    assert losses.hard_label_loss(logits, labels).item() == pytest.approx((1.0 + 0.25) / 2)
    assert losses.hard_label_loss(logits, labels, reduction="sum").item() == pytest.approx(1.25)
    assert losses.hard_label_loss(logits[:1], labels[:1]).item() == 0.0  # no labelled row: 0, not NaN
    classification = losses.hard_label_loss(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, -100]))
    assert classification.item() == pytest.approx(-math.log(math.exp(1) / (1 + math.exp(1))))


# -- fields of another method -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method, field, value, readers",
    [
        ("kd", "pkd_layer_map", "2,4", "'pkd' / 'peakd'"),
        ("kd", "pkd_strategy", "last", "'pkd' / 'peakd'"),
        ("kd", "beta", 100.0, "'pkd' / 'peakd'"),
        ("bilstm", "normalize_patience", False, "'pkd' / 'peakd'"),
        ("kd", "tinybert_stage", 1, "'tinybert'"),
        ("pkd", "tinybert_stage1_epochs", 3.0, "'tinybert'"),
        ("bilstm", "temperature", 2.0, "'kd' / 'pkd' / 'peakd' / 'tinybert'"),
    ],
)
def test_a_field_of_another_method_is_refused(tmp_path, method, field, value, readers):
    with pytest.raises(ValueError, match=rf"`{field}`=.* applies only to `method` {readers}.*`method` is '{method}'"):
        config(tmp_path, method=method, **{field: value})


def test_a_field_left_at_its_default_passes_for_every_method(tmp_path):
    for method in METHOD_PRESETS:
        config(tmp_path, method=method, pkd_strategy="skip", tinybert_stage1_epochs=10.0, normalize_patience=True)


def test_a_student_field_of_another_student_kind_is_refused(tiny_teacher, tiny_tokenizer):
    task = get_task("sst2")
    for arguments, kind in ((StudentArguments(bilstm_pooling="max"), "'bilstm'"),
                            (StudentArguments(student_arch="bilstm", sps_shuffle_qk=False), "'sps'")):
        with pytest.raises(ValueError, match=rf"applies only to `student_arch` {kind}"):
            build_student(arguments, "kd", tiny_teacher, tiny_tokenizer, task)


# -- 3. alpha's help says each preset and Tang's convention ---------------------------------------------------------
def test_alpha_help_lists_every_preset_and_the_tang_conversion():
    parser = HfArgumentParser(DistillationConfig)
    help_text = next(action.help for action in parser._actions if action.dest == "alpha")
    for method, preset in METHOD_PRESETS.items():
        assert f"{method} {preset['alpha']:g}" in help_text
    assert "1 − this alpha" in help_text


# -- 2. TinyBERT stage schedules however the trainer is built -------------------------------------------------------
@pytest.mark.parametrize("stage, lr, epochs, scheduler, warmup", [(1, 5e-5, 10.0, "constant", 0),
                                                                   (2, 3e-5, 3.0, "linear", 0.1)])
def test_a_directly_built_tinybert_trainer_uses_its_stage_schedule(tmp_path, stage, lr, epochs, scheduler, warmup):
    trainer = trainer_for(tmp_path, make_tiny_dataset(16), method="tinybert", tinybert_stage=stage, max_steps=2)
    args = trainer.args
    assert (args.learning_rate, args.num_train_epochs, args.lr_scheduler_type.value, args.warmup_steps) == (
        lr, epochs, scheduler, warmup)
    trainer.train()
    assert trainer.state.log_history[0]["learning_rate"] == pytest.approx(lr if stage == 1 else 0.0, abs=1e-12)
    effective = args.effective_distillation_config()
    assert effective[f"tinybert_stage{stage}_learning_rate"] == args.learning_rate


def test_tinybert_stage_one_refuses_load_best_model_at_end(tmp_path):
    with pytest.raises(ValueError, match="`load_best_model_at_end` is set for TinyBERT stage 1"):
        config(tmp_path, method="tinybert", tinybert_stage=1, load_best_model_at_end=True, eval_strategy="steps")


# -- 4. TinyBERT stage 2 on regression fits the gold score ----------------------------------------------------------
def test_tinybert_stage_two_on_regression_is_mse_to_the_gold_score(tmp_path):
    data = make_tiny_dataset(8).map(lambda row: {"labels": float(row["labels"]) * 2.5 + 0.5})
    teacher = make_tiny_bert(seed=0, num_labels=1, **NO_DROPOUT)
    student = make_tiny_bert(seed=1, num_hidden_layers=2, num_labels=1, **NO_DROPOUT)
    trainer = trainer_for(tmp_path, data, student=student, teacher=teacher, method="tinybert", tinybert_stage=2)
    batch = trainer.data_collator([data[i] for i in range(8)])
    trainer.model.eval()
    loss = trainer.compute_loss(trainer.model, batch)
    with torch.no_grad():
        prediction = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   token_type_ids=batch["token_type_ids"]).logits.squeeze(-1)
        teacher_prediction = trainer.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                             token_type_ids=batch["token_type_ids"]).logits.squeeze(-1)
    torch.testing.assert_close(loss, ((prediction - batch["labels"]) ** 2).mean())
    assert set(trainer._term_buffer["eval"]) == {"loss_ce", "loss_mse"}

    # Augmented rows have no trustworthy score: they fit the teacher's prediction, averaged over all rows.
    augmented = torch.tensor([False, True, True, False, False, False, True, False])
    loss = trainer.compute_loss(trainer.model, {**batch, "augmented": augmented})
    gold = ((prediction - batch["labels"]) ** 2)[~augmented].mean()
    to_teacher = ((prediction - teacher_prediction) ** 2)[augmented].sum() / 8
    torch.testing.assert_close(loss, gold + to_teacher)


# -- 5. TinyBERT stage 1 does not depend on how far a batch is padded -----------------------------------------------
def stage1_loss(trainer, rows, pad_to=None):
    tokenizer = make_tiny_tokenizer()
    collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=pad_to) if pad_to else \
        DataCollatorWithPadding(tokenizer)
    batch = collator(rows)
    trainer.model.eval()
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, batch)


def test_tinybert_stage_one_loss_does_not_depend_on_batch_padding(tmp_path):
    data = make_tiny_dataset(8)
    rows = [data[i] for i in range(8)]
    trainer = trainer_for(tmp_path, data, method="tinybert", tinybert_stage=1,
                          student=make_tiny_bert(seed=1, num_hidden_layers=2, hidden_size=16, **NO_DROPOUT))
    torch.testing.assert_close(stage1_loss(trainer, rows), stage1_loss(trainer, rows, pad_to=48))
    reference = trainer_for(tmp_path, data, method="tinybert", tinybert_stage=1, tinybert_hidden_mask=False,
                            tinybert_attention_masked_mean=False,
                            student=make_tiny_bert(seed=1, num_hidden_layers=2, hidden_size=16, **NO_DROPOUT))
    # The reference's means include pads: the same rows padded further give another loss.
    assert stage1_loss(reference, rows).item() != pytest.approx(stage1_loss(reference, rows, pad_to=48).item())


def test_tinybert_stage_one_accumulation_matches_one_big_batch(tmp_path):
    data = make_tiny_dataset(8)

    def first_step(batch_size, accumulation):
        trainer = trainer_for(tmp_path, data, method="tinybert", tinybert_stage=1, max_steps=1,
                              per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
                              optim="sgd", max_grad_norm=0.0, tinybert_stage1_learning_rate=0.1,
                              student=make_tiny_bert(seed=1, num_hidden_layers=2, hidden_size=16, **NO_DROPOUT))
        trainer.train()
        return trainer.state.log_history[0]["loss"], trainer.model.classifier.weight.detach().clone(), {
            n: p.detach().clone() for n, p in trainer.model.bert.named_parameters()}

    loss_one, _, one = first_step(8, 1)
    loss_four, _, four = first_step(2, 4)
    assert loss_four == pytest.approx(loss_one, rel=1e-4)
    for name in one:
        torch.testing.assert_close(four[name], one[name], rtol=1e-4, atol=1e-6, msg=name)


# -- W_h trains like the student: gradients cleared after each step, clipped together -------------------------------
def test_projection_gradients_are_cleared_after_each_optimizer_step(tmp_path):
    trainer = trainer_for(tmp_path, make_tiny_dataset(16), method="tinybert", tinybert_stage=1, max_steps=2,
                          student=make_tiny_bert(seed=1, num_hidden_layers=2, hidden_size=16, **NO_DROPOUT))
    trainer.train()
    assert trainer.distillation_method.projections is not None
    assert all(p.grad is None for p in trainer.distillation_method.projections.parameters())


def test_max_grad_norm_clips_the_projections_with_the_student(tmp_path):
    trainer = trainer_for(tmp_path, make_tiny_dataset(8), method="tinybert", tinybert_stage=1, max_steps=1,
                          optim="sgd", max_grad_norm=1e-3, tinybert_stage1_learning_rate=1.0,
                          student=make_tiny_bert(seed=1, num_hidden_layers=2, hidden_size=16, **NO_DROPOUT))
    projections = trainer.distillation_method.projections
    before = torch.cat([p.detach().flatten().clone() for p in projections.parameters()])
    student_before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    trainer.train()
    moved = torch.cat([p.detach().flatten() for p in projections.parameters()]) - before
    student_moved = torch.cat([p.detach().flatten() for p in trainer.model.parameters()]) - student_before
    # One SGD step at lr 1 moves every trained weight by the clipped gradient: norm 1e-3 in all.
    assert torch.cat([moved, student_moved]).norm().item() == pytest.approx(1e-3, rel=1e-3)


def test_a_one_stage_tinybert_config_copies_to_the_other_stage(tmp_path):
    import dataclasses

    stage1 = config(tmp_path, method="tinybert", tinybert_stage=1, tinybert_stage1_learning_rate=1e-4)
    stage2 = dataclasses.replace(stage1, tinybert_stage=2)
    assert (stage2.learning_rate, stage2.num_train_epochs, stage2.lr_scheduler_type.value) == (3e-5, 3.0, "linear")


@pytest.mark.parametrize("stage, field, value", [
    (2, "lr_scheduler_type", "constant"),  # stage 1's schedule, but not the whole of it
    (1, "learning_rate", 3e-5),  # stage 2's learning rate in a stage-1 config
])
def test_one_field_of_the_other_stage_is_refused(tmp_path, stage, field, value):
    with pytest.raises(ValueError, match=f"`{field}`=.*does not apply to `--method tinybert`"):
        config(tmp_path, method="tinybert", tinybert_stage=stage, **{field: value})
