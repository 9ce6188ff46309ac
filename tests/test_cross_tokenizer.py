"""A student with its own tokenizer: both tokenizations of one row stay together (shuffling, epochs, the cache), the
KD term against a hand computation with each model on its own ids, methods that need aligned tokens refused, token
classification aligned by word (a hand-made sentence, per-token KD by hand, evaluation), and run_distill.py end to
end."""

import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    NO_DROPOUT,
    REPO_ROOT,
    SPECIAL_TOKENS,
    WORDS,
    make_tiny_bert,
    make_tiny_bert_config,
    make_tiny_tokenizer,
)
from transformers import (
    BertForTokenClassification,
    BertTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    pipeline,
)

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.data import CONLL2003_TASK, build_compute_metrics, load_task_dataset, tokenize_dataset
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


def logits_on_own_ids(trainer, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's logits on `student_input_ids`, ..., and the teacher's on `input_ids`, ..."""
    with torch.no_grad():
        s = trainer.model(input_ids=batch["student_input_ids"], attention_mask=batch["student_attention_mask"],
                          token_type_ids=batch["student_token_type_ids"]).logits
        t = trainer.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            token_type_ids=batch["token_type_ids"]).logits
    return s, t


def kd_at_temperature_2(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Hinton's T² · KL(softmax(t/T) ‖ softmax(s/T)) per prediction, T = 2."""
    return (F.softmax(t / 2, -1) * (F.log_softmax(t / 2, -1) - F.log_softmax(s / 2, -1))).sum(-1) * 4


def test_kd_runs_each_model_on_its_own_ids(tmp_path, tiny_sst2_dir):
    trainer, _, _ = cross_trainer(tmp_path, tiny_sst2_dir, method="kd", alpha=0.5, temperature=2.0)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    loss = trainer.compute_loss(trainer.model.train(), dict(batch))
    s, t = logits_on_own_ids(trainer, batch)
    kd = kd_at_temperature_2(s, t)
    expected = 0.5 * kd.mean() + 0.5 * F.cross_entropy(s, batch["labels"])
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)


def test_methods_that_compare_tokens_are_refused(tmp_path, tiny_sst2_dir):
    with pytest.raises(ValueError, match=r"`method` 'tinybert' compares teacher and student token by token"):
        cross_trainer(tmp_path, tiny_sst2_dir, method="tinybert", tinybert_stage=1)


# -- token classification, aligned by word -------------------------------------------------------------------------
NER_SNIPPET = ("he B-PER \nloved O \nthe O \nmovies B-MISC \n\nshe B-PER \nsold O \nshares O \n\n"
               "the O \nmarket O \nrose O \n")
NER_IDS = {name: i for i, name in enumerate(CONLL2003_TASK.label_names)}


def make_student_ner_tokenizer() -> BertTokenizer:
    """Splits words where the teacher's tokenizer does not and the other way round: "loved" -> love ##d (the teacher:
    loved), "movies" -> movies (the teacher: movie ##s), "shares" -> share ##s; other ids than the teacher's."""
    words = [word for word in WORDS if word not in ("loved", "shares")]
    vocab = SPECIAL_TOKENS + list(reversed(words)) + ["##d", "movies", "share"]
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, model_max_length=64)


def ner_data(tmp_path, student_max_seq_length=32):
    (tmp_path / "conll").mkdir(exist_ok=True)
    for name in ("train.txt", "valid.txt"):
        (tmp_path / "conll" / name).write_text(NER_SNIPPET)
    raw, task = load_task_dataset("conll2003", data_dir=tmp_path / "conll")
    teacher_tokenizer = make_tiny_tokenizer()
    tokenized = tokenize_dataset(raw, teacher_tokenizer, task, 32)
    return tokenize_for_student(tokenized, raw, make_student_ner_tokenizer(), task, student_max_seq_length,
                                teacher_tokenizer), task


def test_word_alignment_of_a_hand_made_sentence(tmp_path):
    row = ner_data(tmp_path)[0]["train"][0]  # he loved the movies: B-PER O O B-MISC
    teacher, student = make_tiny_tokenizer(), make_student_ner_tokenizer()
    assert teacher.convert_ids_to_tokens(row["input_ids"]) == ["[CLS]", "he", "loved", "the", "movie", "##s", "[SEP]"]
    assert student.convert_ids_to_tokens(row["student_input_ids"]) == [
        "[CLS]", "he", "love", "##d", "the", "movies", "[SEP]"]
    b_per, o, b_misc = NER_IDS["B-PER"], NER_IDS["O"], NER_IDS["B-MISC"]
    assert row["labels"] == [-100, b_per, o, o, b_misc, -100, -100]
    assert row["student_labels"] == [-100, b_per, o, -100, o, b_misc, -100]
    # The student's truncation keeps two words ([CLS] he love [SEP]): the teacher's labels drop the other two.
    row = ner_data(tmp_path, student_max_seq_length=4)[0]["train"][0]
    assert row["student_labels"] == [-100, b_per, o, -100]
    assert row["labels"] == [-100, b_per, o, -100, -100, -100, -100]


def test_label_all_tokens_cannot_be_aligned_by_word(tmp_path):
    _, task = ner_data(tmp_path)
    raw, _ = load_task_dataset("conll2003", data_dir=tmp_path / "conll")
    every = tokenize_dataset(raw, make_tiny_tokenizer(), task, 32, label_all_tokens=True)
    with pytest.raises(ValueError, match=r"`label_all_tokens` labels every sub-token.*Drop `label_all_tokens`"):
        tokenize_for_student(every, raw, make_student_ner_tokenizer(), task, 32, make_tiny_tokenizer())
    with pytest.raises(ValueError, match=r"needs the teacher's tokenizer. Pass `teacher_tokenizer`"):
        tokenize_for_student(every, raw, make_student_ner_tokenizer(), task, 32)


def make_ner_tagger(seed: int, vocab_size: int, **config) -> BertForTokenClassification:
    torch.manual_seed(seed)
    return BertForTokenClassification(make_tiny_bert_config(
        num_labels=len(NER_IDS), id2label=dict(enumerate(NER_IDS)), label2id=NER_IDS, vocab_size=vocab_size,
        **NO_DROPOUT, **config)).eval()


def ner_trainer(tmp_path, data, task, **config) -> DistillationTrainer:
    """KD (alpha 0.5, T 2) from a tiny tagger on the teacher's tokenizer into a 1-layer one on the student's."""
    student_tokenizer = make_student_ner_tokenizer()
    args = DistillationConfig(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True, method="kd", alpha=0.5,
                              temperature=2.0, per_device_train_batch_size=3, **config)
    return DistillationTrainer(
        model=make_ner_tagger(1, len(student_tokenizer), num_hidden_layers=1),
        teacher_model=make_ner_tagger(0, len(make_tiny_tokenizer())), args=args, train_dataset=data["train"],
        eval_dataset=data["validation"], compute_metrics=build_compute_metrics(task),
        data_collator=TwoTokenizerCollator(DataCollatorForTokenClassification(make_tiny_tokenizer()),
                                           student_tokenizer),
    )


def test_per_token_kd_across_tokenizers_compares_each_word_on_both_sides(tmp_path):
    data, task = ner_data(tmp_path, student_max_seq_length=6)  # cuts "movies" from the student's first row
    trainer = ner_trainer(tmp_path, data, task)
    batch = trainer.data_collator([data["train"][i] for i in range(3)])
    assert batch["student_labels"].shape == batch["student_input_ids"].shape  # padded on the student's side
    loss = trainer.compute_loss(trainer.model.train(), dict(batch))
    s, t = logits_on_own_ids(trainer, batch)
    # By hand: the i-th labelled token on each side is the i-th word both kept (3 + 3 + 3 of 10 words).
    s, t = s[batch["student_labels"] != -100], t[batch["labels"] != -100]
    y = batch["student_labels"][batch["student_labels"] != -100]
    assert len(s) == len(t) == 9 and y.tolist() == batch["labels"][batch["labels"] != -100].tolist()
    expected = 0.5 * kd_at_temperature_2(s, t).mean() + 0.5 * F.cross_entropy(s, y)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
    # Evaluation scores the student's predictions against its own tokens' labels.
    output = trainer.predict(data["validation"])
    assert output.label_ids.shape == output.predictions.shape[:2]
    assert (output.label_ids != -100).sum() == 9 and "test_f1" in output.metrics
    # The teacher cache holds the teacher's aligned tokens: the cached loss is the online one.
    cached = ner_trainer(tmp_path, data, task, teacher_cache=str(tmp_path / "cache"))
    cached_batch = next(iter(cached.get_train_dataloader()))
    online_batch = {k: v for k, v in cached_batch.items() if k != "teacher_cache_row"}
    torch.testing.assert_close(cached.compute_loss(cached.model.train(), dict(cached_batch)),
                               trainer.compute_loss(trainer.model.train(), online_batch), rtol=1e-5, atol=1e-6)


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


def test_each_side_pads_to_its_own_max_length(tmp_path, tiny_sst2_dir, tiny_teacher_dir):
    _, _, data, student_tokenizer = cross_data(tiny_sst2_dir)
    collator = TwoTokenizerCollator(DataCollatorWithPadding(make_tiny_tokenizer(), padding="max_length",
                                                            max_length=40), student_tokenizer, student_max_length=48)
    batch = collator([data["train"][i] for i in range(3)])
    assert batch["input_ids"].shape == (3, 40) and batch["student_input_ids"].shape == (3, 48)
    with pytest.raises(ValueError, match=r"`student_max_seq_length` is 48, but the student reads the teacher's"):
        run_distill.main(["--method", "kd", "--teacher_model_name_or_path", str(tiny_teacher_dir),
                          "--task_name", "sst2", "--data_dir", str(tiny_sst2_dir), "--student_layers", "1",
                          "--student_max_seq_length", "48", "--output_dir", str(tmp_path / "out"), *SCRIPT_FLAGS])


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


def test_run_distill_into_a_tagger_with_its_own_tokenizer(tmp_path):
    ner_data(tmp_path)  # writes the snippet to tmp_path / "conll"
    teacher_dir, tokenizer_dir, out = tmp_path / "teacher", tmp_path / "student_tokenizer", tmp_path / "student"
    make_ner_tagger(0, len(make_tiny_tokenizer())).save_pretrained(teacher_dir)
    make_tiny_tokenizer().save_pretrained(teacher_dir)
    make_student_ner_tokenizer().save_pretrained(tokenizer_dir)
    common = ["--method", "kd", "--teacher_model_name_or_path", str(teacher_dir), "--task_name", "conll2003",
              "--data_dir", str(tmp_path / "conll"), "--student_tokenizer", str(tokenizer_dir),
              "--student_config", '{"num_hidden_layers": 1}', *SCRIPT_FLAGS]
    metrics = run_distill.main([*common, "--output_dir", str(out)])
    assert {"eval_f1", "teacher_eval_f1"} <= set(metrics)
    # The student tags raw text with its own tokenizer, as users run it.
    tagger = pipeline("token-classification", model=str(out), aggregation_strategy="simple")
    assert tagger.tokenizer.get_vocab() == make_student_ner_tokenizer().get_vocab()
    assert isinstance(tagger("she loved the movies"), list)
    with pytest.raises(ValueError, match=r"`label_all_tokens` labels every sub-token, but the student has its own"):
        run_distill.main([*common, "--label_all_tokens", "true", "--output_dir", str(tmp_path / "every")])
