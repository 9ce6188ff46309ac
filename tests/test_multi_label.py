"""Multi-label classification: the per-label KD term and BCE against hand computations, list-valued label columns,
multi-hot labels, the metrics, and both scripts end to end."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import NO_DROPOUT, make_tiny_bert

from hf_distill import losses
from hf_distill.data import load_task_dataset, tokenize_dataset
from hf_distill.data.metrics import multi_label_metrics

ROWS = [
    {"text": "the movie is good", "topics": ["film", "praise"]},
    {"text": "the stock price rose", "topics": ["market"]},
    {"text": "a boring film", "topics": ["film"]},
    {"text": "shares fell", "topics": []},
    {"text": "he loved the acting", "topics": ["film", "praise"]},
    {"text": "the market is dull", "topics": ["market"]},
]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_multi_label_kd_is_a_bernoulli_kl_per_label_times_t_squared():
    student = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    teacher = torch.tensor([[1.5, -2.0], [-1.0, 0.0]])
    temperature = 2.0
    expected = []
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        total = 0.0
        for s, t in zip(s_row, t_row, strict=True):
            p, q = sigmoid(t / temperature), sigmoid(s / temperature)
            total += p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
        expected.append(total * temperature**2)
    values = losses.multi_label_kd_loss(student, teacher, temperature, reduction="none")
    torch.testing.assert_close(values, torch.tensor(expected))
    assert losses.multi_label_kd_loss(teacher, teacher, 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_multi_label_hard_loss_sums_over_labels_and_skips_unlabelled_rows():
    logits = torch.tensor([[0.5, -1.0], [2.0, 0.0], [1.0, 1.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-100.0, -100.0]])
    first = -math.log(sigmoid(0.5)) - math.log(1 - sigmoid(-1.0))
    second = -math.log(1 - sigmoid(2.0)) - math.log(sigmoid(0.0))
    values = losses.multi_label_hard_loss(logits, labels, reduction="none")
    torch.testing.assert_close(values, torch.tensor([first, second, 0.0]))
    assert losses.multi_label_hard_loss(logits, labels).item() == pytest.approx((first + second) / 2)


def test_metrics_by_hand():
    logits = np.array([[2.0, -1.0, 3.0], [-1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])
    labels = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    metrics = multi_label_metrics(logits, labels)
    # Decisions: [1,0,1] [0,0,1] [1,1,0]. Per label (tp, predicted, actual): (1,2,1) (1,1,2) (2,2,2).
    assert metrics["micro_f1"] == pytest.approx(2 * 4 / (5 + 5))
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1.0) / 3)
    assert metrics["exact_match"] == pytest.approx(1 / 3)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_a_label_column_of_lists_makes_a_multi_label_task(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "train.jsonl", ROWS)
    raw, task = load_task_dataset(train_file=path, validation_file=path, text_columns=["text"], label_column="topics")
    assert task.is_multi_label and task.label_names == ("film", "market", "praise")
    assert task.label_config()["problem_type"] == "multi_label_classification"
    assert raw["train"]["label"][:4] == [[0, 2], [1], [0], []]
    tokenized = tokenize_dataset(raw, tiny_tokenizer, task, 32)
    assert tokenized["train"]["labels"][:4] == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]


def test_mixed_label_types_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "topics": ["film", 3]}, {"text": "b", "topics": [1]}])
    with pytest.raises(ValueError, match=r"holds values of mixed types \(\['int', 'str'\]\)"):
        load_task_dataset(train_file=path, validation_file=path, text_columns=["text"], label_column="topics")


def test_kd_trains_a_multi_label_student_with_the_per_label_terms(tmp_path, tiny_tokenizer):
    from transformers import DataCollatorWithPadding

    from hf_distill import DistillationConfig, DistillationTrainer

    path = write_jsonl(tmp_path / "train.jsonl", ROWS)
    raw, task = load_task_dataset(train_file=path, validation_file=path, text_columns=["text"], label_column="topics")
    tokenized = tokenize_dataset(raw, tiny_tokenizer, task, 32)
    labels = task.label_config()
    teacher = make_tiny_bert(seed=0, **labels, **NO_DROPOUT)
    student = make_tiny_bert(seed=1, num_hidden_layers=2, **labels, **NO_DROPOUT)
    args = DistillationConfig(output_dir=str(tmp_path / "out"), method="kd", alpha=0.5, temperature=2.0,
                              report_to=[], use_cpu=True, per_device_train_batch_size=6, max_steps=2)
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=tokenized["train"],
                                  data_collator=DataCollatorWithPadding(tiny_tokenizer))
    batch = trainer.data_collator([tokenized["train"][i] for i in range(6)])
    loss = trainer.compute_loss(student.train(), dict(batch))
    inputs = {k: v for k, v in batch.items() if k not in ("idx", "labels")}
    with torch.no_grad():
        s, t = student(**inputs).logits, teacher(**inputs).logits
    expected = 0.5 * losses.multi_label_kd_loss(s, t, 2.0) + 0.5 * losses.multi_label_hard_loss(s, batch["labels"])
    torch.testing.assert_close(loss.detach(), expected)
    trainer.train()


SCRIPT_FLAGS = ["--max_seq_length", "32", "--per_device_train_batch_size", "4", "--report_to", "none",
                "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true", "--max_steps", "2"]


def test_both_scripts_distil_a_multi_label_teacher_with_the_cache(tmp_path, tiny_teacher_dir):
    import sys

    from conftest import REPO_ROOT

    sys.path.insert(0, str(REPO_ROOT))
    import run_distill
    import run_glue_teacher

    path = write_jsonl(tmp_path / "train.jsonl", ROWS)
    data = ["--train_file", path, "--validation_file", path, "--text_column_names", "text", "--label_column_name",
            "topics"]
    teacher_dir = tmp_path / "teacher"
    teacher = run_glue_teacher.main(["--model_name_or_path", str(tiny_teacher_dir), "--ignore_mismatched_sizes",
                                     "true", "--output_dir", str(teacher_dir), *data, *SCRIPT_FLAGS])
    assert {"eval_micro_f1", "eval_macro_f1", "eval_exact_match"} <= set(teacher)
    config = json.loads((teacher_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and config["id2label"]["2"] == "praise"
    student_dir = tmp_path / "student"
    metrics = run_distill.main(["--method", "pkd", "--teacher_model_name_or_path", str(teacher_dir),
                                "--student_layers", "2", "--teacher_cache", str(tmp_path / "cache"),
                                "--output_dir", str(student_dir), *data, *SCRIPT_FLAGS])
    assert metrics["teacher_eval_micro_f1"] == pytest.approx(teacher["eval_micro_f1"])
    assert json.loads((student_dir / "config.json").read_text())["problem_type"] == "multi_label_classification"
    assert "| micro_f1 |" in (student_dir / "summary.md").read_text()
    # A single-label teacher for the same data would read its logits as a softmax: refused.
    with pytest.raises(ValueError, match=r"has problem_type .* but task 'custom' is multi_label_classification"):
        run_distill.main(["--method", "kd", "--teacher_model_name_or_path", str(tiny_teacher_dir),
                          "--output_dir", str(tmp_path / "wrong"), *data, *SCRIPT_FLAGS])
