"""Unlabelled transfer data: rows the teacher labels, never read by the hard-label CE, always by the distillation
terms; loading from files and dataset folders, for sequence and token tasks; both scripts."""

import json
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import NO_DROPOUT, REPO_ROOT, make_tiny_bert, make_tiny_tokenizer
from datasets import DatasetDict
from transformers import DataCollatorWithPadding

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.data import load_task_dataset, tokenize_dataset
from hf_distill.data.conll import CONLL2003_TASK
from hf_distill.data.transfer import add_transfer_rows, load_transfer_dataset

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402
import run_glue_teacher  # noqa: E402

TRANSFER_SENTENCES = ["the plot was dull", "a great film", "he loved the acting", "the story is bad"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_transfer_rows_join_the_training_split_with_a_placeholder_label(tmp_path, tiny_sst2_dir):
    raw, task = load_task_dataset("sst2", data_dir=tiny_sst2_dir)
    path = write_jsonl(tmp_path / "transfer.jsonl", [{"sentence": s, "stars": 5} for s in TRANSFER_SENTENCES])
    transfer = load_transfer_dataset(task, transfer_file=path, max_transfer_samples=3)
    assert transfer["sentence"] == TRANSFER_SENTENCES[:3] and transfer["transfer"] == [True] * 3
    assert transfer["idx"] == [0, 1, 2]  # the other columns of the source (a label it may have) are not read
    combined = add_transfer_rows(raw, transfer)
    assert len(combined["train"]) == len(raw["train"]) + 3 and len(combined["validation"]) == len(raw["validation"])
    assert combined["train"]["transfer"] == [False] * len(raw["train"]) + [True] * 3


def test_transfer_sources_need_the_task_text_columns(tmp_path, tiny_sst2_dir):
    _, task = load_task_dataset("sst2", data_dir=tiny_sst2_dir)
    path = write_jsonl(tmp_path / "transfer.jsonl", [{"text": s} for s in TRANSFER_SENTENCES])
    with pytest.raises(ValueError, match=r"`transfer_file` .* has columns \['text'\], but not the text column\(s\) "
                                         r"\['sentence'\]"):
        load_transfer_dataset(task, transfer_file=path)
    # The labelled data's source columns name them (`text_columns`).
    assert len(load_transfer_dataset(task, transfer_file=path, text_columns=("text",))) == 4
    with pytest.raises(ValueError, match=r"pass exactly one of them"):
        load_transfer_dataset(task)
    words = write_jsonl(tmp_path / "words.jsonl", [{"sentence": ["a", "b"]}])
    with pytest.raises(ValueError, match=r"reads one text per row"):
        load_transfer_dataset(task, transfer_file=words)


def test_token_transfer_rows_get_a_tag_on_every_word(tmp_path):
    path = write_jsonl(tmp_path / "transfer.jsonl", [{"tokens": ["he", "sold", "movies"]}])
    transfer = load_transfer_dataset(CONLL2003_TASK, transfer_file=path)
    assert transfer["label"] == [[0, 0, 0]]
    row = tokenize_dataset(DatasetDict(train=transfer), make_tiny_tokenizer(), CONLL2003_TASK, 32)["train"][0]
    # The first sub-token of each word counts as a prediction (the KD term reads it); the CE skips the whole row.
    assert row["labels"] == [-100, 0, 0, 0, -100, -100] and row["transfer"] is True


def test_a_transfer_row_never_trains_the_ce_and_always_the_kd(tmp_path, tiny_sst2_dir):
    raw, task = load_task_dataset("sst2", data_dir=tiny_sst2_dir)
    path = write_jsonl(tmp_path / "transfer.jsonl", [{"sentence": s} for s in TRANSFER_SENTENCES])
    data = add_transfer_rows(raw, load_transfer_dataset(task, transfer_file=path))
    tokenizer = make_tiny_tokenizer()
    train = tokenize_dataset(data, tokenizer, task, 32)["train"]
    teacher, student = make_tiny_bert(seed=0, **NO_DROPOUT), make_tiny_bert(seed=1, num_hidden_layers=2, **NO_DROPOUT)
    args = DistillationConfig(output_dir=str(tmp_path / "out"), method="kd", alpha=0.5, temperature=2.0,
                              report_to=[], use_cpu=True)
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=train,
                                  data_collator=DataCollatorWithPadding(tokenizer))
    # Two labelled rows and two transfer rows, whose placeholder label (0) must not reach the CE.
    batch = trainer.data_collator([train[i] for i in (0, 1, len(train) - 2, len(train) - 1)])
    assert batch["transfer"].tolist() == [False, False, True, True]
    loss = trainer.compute_loss(student.train(), dict(batch))
    inputs = {k: v for k, v in batch.items() if k not in ("idx", "labels", "transfer")}
    with torch.no_grad():
        s, t = student(**inputs).logits, teacher(**inputs).logits
    kd = (F.softmax(t / 2, -1) * (F.log_softmax(t / 2, -1) - F.log_softmax(s / 2, -1))).sum(-1) * 4
    ce = F.cross_entropy(s[:2], batch["labels"][:2])
    torch.testing.assert_close(loss.detach(), 0.5 * kd.mean() + 0.5 * ce)


SCRIPT_FLAGS = ["--max_seq_length", "32", "--per_device_train_batch_size", "4", "--report_to", "none",
                "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true", "--max_steps", "2"]


def test_run_distill_with_a_transfer_file_and_the_cache(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    path = write_jsonl(tmp_path / "transfer.jsonl", [{"sentence": s} for s in TRANSFER_SENTENCES])
    out = tmp_path / "student"
    metrics = run_distill.main(["--method", "kd", "--teacher_model_name_or_path", str(tiny_teacher_dir),
                                "--task_name", "sst2", "--data_dir", str(tiny_sst2_dir), "--student_layers", "1",
                                "--transfer_file", path, "--teacher_cache", str(tmp_path / "cache"),
                                "--output_dir", str(out), *SCRIPT_FLAGS])
    assert (metrics["train_labelled_samples"], metrics["train_transfer_samples"]) == (8, 4)
    assert "8 labelled training rows and 4 unlabelled transfer rows" in (out / "README.md").read_text()
    with pytest.raises(ValueError, match=r"`transfer_file`/`transfer_dataset_name` add unlabelled rows"):
        run_glue_teacher.main(["--model_name_or_path", str(tiny_teacher_dir), "--task_name", "sst2", "--data_dir",
                               str(tiny_sst2_dir), "--transfer_file", path, "--output_dir", str(tmp_path / "t"),
                               *SCRIPT_FLAGS])
