"""A student with its own tokenizer: both tokenizations of one row stay together (shuffling, epochs, the cache), the
KD term against a hand computation with each model on its own ids, methods that need aligned tokens refused, and
run_distill.py end to end."""

import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import NO_DROPOUT, REPO_ROOT, SPECIAL_TOKENS, WORDS, make_tiny_bert, make_tiny_tokenizer
from transformers import BertTokenizer, DataCollatorWithPadding

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.data import load_task_dataset, tokenize_dataset
from hf_distill.data.collation import TwoTokenizerCollator
from hf_distill.data.tokenization import tokenize_for_student

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402


def make_student_tokenizer() -> BertTokenizer:
    """The same words under other ids (reversed), so each side's ids differ but decode to the same text."""
    vocab = SPECIAL_TOKENS + list(reversed(WORDS)) + ["zebra", "##zz"]
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, model_max_length=64)


def cross_data(tiny_sst2_dir):
    raw, task = load_task_dataset("sst2", data_dir=tiny_sst2_dir)
    teacher_tokenizer, student_tokenizer = make_tiny_tokenizer(), make_student_tokenizer()
    tokenized = tokenize_dataset(raw, teacher_tokenizer, task, 32)
    return raw, task, tokenize_for_student(tokenized, raw, student_tokenizer, task, 32), student_tokenizer


def cross_trainer(tmp_path, tiny_sst2_dir, student_width=32, batch_size=3, **config):
    """A trainer (`config`: the method and its settings) of the tiny teacher on its tokenizer's ids and a student of
    `student_width` on `make_student_tokenizer`'s, over `tiny_sst2_dir`; with the raw rows and the student's
    tokenizer."""
    raw, task, data, student_tokenizer = cross_data(tiny_sst2_dir)
    student = make_tiny_bert(seed=1, num_hidden_layers=2, vocab_size=len(student_tokenizer), hidden_size=student_width,
                             **NO_DROPOUT)
    args = DistillationConfig(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True,
                              per_device_train_batch_size=batch_size, **config)
    trainer = DistillationTrainer(
        model=student, teacher_model=make_tiny_bert(seed=0, **NO_DROPOUT), args=args, train_dataset=data["train"],
        data_collator=TwoTokenizerCollator(DataCollatorWithPadding(make_tiny_tokenizer()), student_tokenizer),
    )
    return trainer, raw, student_tokenizer


def test_both_tokenizations_of_a_row_stay_together_through_shuffled_epochs_and_the_cache(tmp_path, tiny_sst2_dir):
    trainer, raw, student_tokenizer = cross_trainer(tmp_path, tiny_sst2_dir, method="kd",
                                                    teacher_cache=str(tmp_path / "cache"))
    teacher_tokenizer = make_tiny_tokenizer()
    seen = []
    for _ in range(2):  # two epochs, each shuffled
        for batch in trainer.get_train_dataloader():
            for row in range(len(batch["idx"])):
                sentence = raw["train"][int(batch["idx"][row])]["sentence"]
                for tokenizer, ids in ((teacher_tokenizer, batch["input_ids"][row]),
                                       (student_tokenizer, batch["student_input_ids"][row])):
                    expected = tokenizer(sentence)["input_ids"]
                    assert ids[: len(expected)].tolist() == expected and not ids[len(expected):].any()
                seen.append(int(batch["idx"][row]))
            # The cached teacher outputs are those of the teacher side of the same rows.
            cached = trainer.teacher_cache.lookup(batch["teacher_cache_row"]).logits
            with torch.no_grad():
                online = trainer.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                         token_type_ids=batch["token_type_ids"]).logits
            torch.testing.assert_close(cached, online, rtol=1e-5, atol=1e-6)
    assert sorted(seen) == sorted(list(range(len(raw["train"]))) * 2)
    assert not torch.equal(batch["input_ids"], batch["student_input_ids"])  # the ids really differ


def test_kd_runs_each_model_on_its_own_ids(tmp_path, tiny_sst2_dir):
    trainer, _, _ = cross_trainer(tmp_path, tiny_sst2_dir, method="kd", alpha=0.5, temperature=2.0)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    loss = trainer.compute_loss(trainer.model.train(), dict(batch))
    with torch.no_grad():
        s = trainer.model(input_ids=batch["student_input_ids"], attention_mask=batch["student_attention_mask"],
                          token_type_ids=batch["student_token_type_ids"]).logits
        t = trainer.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            token_type_ids=batch["token_type_ids"]).logits
    kd = (F.softmax(t / 2, -1) * (F.log_softmax(t / 2, -1) - F.log_softmax(s / 2, -1))).sum(-1) * 4
    expected = 0.5 * kd.mean() + 0.5 * F.cross_entropy(s, batch["labels"])
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)


def test_methods_that_compare_tokens_and_token_tasks_are_refused(tmp_path, tiny_sst2_dir):
    with pytest.raises(ValueError, match=r"`method` 'tinybert' compares teacher and student token by token"):
        cross_trainer(tmp_path, tiny_sst2_dir, method="tinybert", tinybert_stage=1)
    from hf_distill.data import CONLL2003_TASK
    from hf_distill.data.conll import read_conll_file

    (tmp_path / "train.txt").write_text("EU B-ORG \nrejects O \n")
    from datasets import DatasetDict

    raw = DatasetDict(train=read_conll_file(tmp_path / "train.txt"))
    tokenized = tokenize_dataset(raw, make_tiny_tokenizer(), CONLL2003_TASK, 32)
    with pytest.raises(ValueError, match=r"token classification, whose per-token terms compare teacher and student"):
        tokenize_for_student(tokenized, raw, make_student_tokenizer(), CONLL2003_TASK, 32)


SCRIPT_FLAGS = ["--max_seq_length", "32", "--per_device_train_batch_size", "4", "--report_to", "none",
                "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true", "--max_steps", "2"]


def test_run_distill_into_a_student_with_its_own_tokenizer(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    tokenizer_dir = tmp_path / "student_tokenizer"
    make_student_tokenizer().save_pretrained(tokenizer_dir)
    out = tmp_path / "student"
    metrics = run_distill.main(["--method", "kd", "--teacher_model_name_or_path", str(tiny_teacher_dir),
                                "--task_name", "sst2", "--data_dir", str(tiny_sst2_dir),
                                "--student_tokenizer", str(tokenizer_dir),
                                "--student_config", '{"num_hidden_layers": 1}', "--output_dir", str(out),
                                *SCRIPT_FLAGS])
    assert "eval_accuracy" in metrics
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == len(make_student_tokenizer())
    # The student is saved with its own tokenizer.
    assert BertTokenizer.from_pretrained(out).get_vocab() == make_student_tokenizer().get_vocab()
    with pytest.raises(ValueError, match=r"`student_tokenizer` has another vocabulary than the teacher's, but this"):
        run_distill.main(["--method", "kd", "--teacher_model_name_or_path", str(tiny_teacher_dir),
                          "--task_name", "sst2", "--data_dir", str(tiny_sst2_dir), "--student_tokenizer",
                          str(tokenizer_dir), "--student_layers", "1", "--output_dir", str(tmp_path / "plain"),
                          *SCRIPT_FLAGS])


def test_pkd_across_tokenizers_and_widths_reads_each_side_and_trains_its_projection(tmp_path, tiny_sst2_dir):
    trainer, _, _ = cross_trainer(tmp_path, tiny_sst2_dir, student_width=48, method="pkd", max_steps=3,
                                  learning_rate=1e-3, save_strategy="no")
    projection = trainer.distillation_method.projection.maps["shared"]
    assert projection.weight.shape == (32, 48)
    before = projection.weight.detach().clone()
    trainer.train()
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])
    assert "loss_pkd" in trainer.state.log_history[0]
    assert not torch.equal(projection.weight, before)
