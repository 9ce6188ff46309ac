"""Teacher ensembles: the target against a hand computation, the checks on the teachers, the trainer and cache
with an ensemble, and run_distill.py with several teachers."""

import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import NO_DROPOUT, REPO_ROOT, make_tiny_bert, make_tiny_dataset, make_tiny_tokenizer
from transformers import DataCollatorWithPadding

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.ensemble import TeacherEnsemble, ensemble_logits

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402


def test_the_ensemble_target_is_the_mean_of_the_teachers_probabilities_at_t():
    logits = [torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[-1.0, 3.0, 1.0]])]
    temperature = 2.0
    # By hand: each teacher's softmax at T, averaged.
    probabilities = [softmax_by_hand([v / temperature for v in row[0].tolist()]) for row in logits]
    mean = [sum(p[c] for p in probabilities) / 3 for c in range(3)]
    combined = ensemble_logits(logits, temperature, None)
    torch.testing.assert_close(F.softmax(combined / temperature, dim=-1), torch.tensor([mean]))
    # Regression: the mean prediction; multi-label: each label's mean sigmoid at T.
    scores = [torch.tensor([[1.0]]), torch.tensor([[3.0]])]
    torch.testing.assert_close(ensemble_logits(scores, 2.0, "regression"), torch.tensor([[2.0]]))
    per_label = ensemble_logits(logits, temperature, "multi_label_classification")
    expected = torch.stack([torch.sigmoid(z / temperature) for z in logits]).mean(dim=0)
    torch.testing.assert_close(torch.sigmoid(per_label / temperature), expected)


def softmax_by_hand(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_teachers_of_another_task_or_out_of_range_index_are_refused():
    two, three = make_tiny_bert(seed=0), make_tiny_bert(seed=1, num_labels=3)
    with pytest.raises(ValueError, match=r"Teacher 1 differs from teacher 0 in its id2label"):
        TeacherEnsemble([two, three])
    with pytest.raises(ValueError, match=r"`intermediate_teacher` is 2, but there are 2 teachers"):
        TeacherEnsemble([two, make_tiny_bert(seed=2)], intermediate_teacher=2)
    with pytest.raises(ValueError, match=r"needs 2 or more teachers"):
        TeacherEnsemble([two])


def ensemble_trainer(tmp_path, **config):
    teachers = [make_tiny_bert(seed=seed, **NO_DROPOUT) for seed in (0, 1, 2)]
    student = make_tiny_bert(seed=3, num_hidden_layers=2, **NO_DROPOUT)
    args = DistillationConfig(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True,
                              per_device_train_batch_size=8, **config)
    trainer = DistillationTrainer(model=student, teacher_model=teachers, args=args,
                                  train_dataset=make_tiny_dataset(16),
                                  data_collator=DataCollatorWithPadding(make_tiny_tokenizer()))
    return trainer, teachers


def test_kd_from_a_list_of_teachers_matches_the_averaged_probabilities(tmp_path):
    trainer, teachers = ensemble_trainer(tmp_path, method="kd", alpha=1.0, temperature=4.0)
    assert isinstance(trainer.teacher, TeacherEnsemble) and trainer.intermediate_teacher is teachers[0]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    loss = trainer.compute_loss(trainer.model.train(), dict(batch))
    inputs = {k: v for k, v in batch.items() if k not in ("idx", "labels")}
    with torch.no_grad():
        student = trainer.model(**inputs).logits
        target = torch.stack([F.softmax(t(**inputs).logits / 4.0, -1) for t in teachers]).mean(0)
    expected = 16.0 * (target * (target.log() - F.log_softmax(student / 4.0, -1))).sum(-1).mean()
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)


def test_pkd_reads_the_intermediate_teacher_and_the_cache_stores_the_ensemble_target(tmp_path):
    online, teachers = ensemble_trainer(tmp_path, method="pkd", intermediate_teacher=1)
    assert online.intermediate_teacher is teachers[1]
    cached, _ = ensemble_trainer(tmp_path, method="pkd", intermediate_teacher=1,
                                 teacher_cache=str(tmp_path / "cache"))
    batch = next(iter(cached.get_train_dataloader()))
    online_batch = {k: v for k, v in batch.items() if k != "teacher_cache_row"}
    torch.testing.assert_close(cached.compute_loss(cached.model.train(), dict(batch)),
                               online.compute_loss(online.model.train(), online_batch), rtol=1e-5, atol=1e-6)
    # Another temperature averages other probabilities: the cache refuses it.
    with pytest.raises(ValueError, match=r"teacher_cache"):
        ensemble_trainer(tmp_path, method="pkd", intermediate_teacher=1, temperature=3.0,
                         teacher_cache=str(tmp_path / "cache"))


def test_intermediate_teacher_with_one_teacher_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"`intermediate_teacher` is 1, but there is one teacher"):
        DistillationTrainer(model=make_tiny_bert(seed=1), teacher_model=make_tiny_bert(seed=0),
                            args=DistillationConfig(output_dir=str(tmp_path), method="kd", intermediate_teacher=1,
                                                    report_to=[], use_cpu=True))


SCRIPT_FLAGS = ["--max_seq_length", "32", "--per_device_train_batch_size", "4", "--report_to", "none",
                "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true", "--max_steps", "2"]


def test_run_distill_with_three_teachers(tmp_path, tiny_teacher_dir, tiny_tokenizer, tiny_sst2_dir):
    labels = json.loads((tiny_teacher_dir / "config.json").read_text())["id2label"]
    labels = {"id2label": {int(i): name for i, name in labels.items()},
              "label2id": {name: int(i) for i, name in labels.items()}}
    others = []
    for seed in (5, 6):
        folder = tmp_path / f"teacher{seed}"
        make_tiny_bert(seed=seed, **labels).save_pretrained(folder)
        tiny_tokenizer.save_pretrained(folder)
        others.append(str(folder))
    out = tmp_path / "student"
    metrics = run_distill.main(["--method", "kd", "--teacher_model_name_or_path", str(tiny_teacher_dir), *others,
                                "--task_name", "sst2", "--data_dir", str(tiny_sst2_dir), "--student_layers", "1",
                                "--output_dir", str(out), *SCRIPT_FLAGS])
    names = [row["model"] for row in metrics["summary"]]
    assert names == ["teacher ensemble (3)", "teacher 0", "teacher 1", "teacher 2", "student (kd)"]
    assert {"teacher_eval_accuracy", "teacher0_eval_accuracy", "teacher2_eval_accuracy"} <= set(metrics)
    saved = json.loads((out / "distillation_config.json").read_text())
    assert saved["teacher_model_name_or_path"] == [str(tiny_teacher_dir), *others]
