"""Token classification (NER): the CoNLL reader, sub-token label alignment, entity-level metrics, the per-token
distillation loss against a hand computation, each method training a token classifier, and both scripts end to end
on a CoNLL snippet."""

import json
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import NO_DROPOUT, REPO_ROOT, make_tiny_bert_config, make_tiny_tokenizer, run_without_hf_distill
from transformers import (
    BertForSequenceClassification,
    BertForTokenClassification,
    DataCollatorForTokenClassification,
    EvalPrediction,
)

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.data import (
    CONLL2003_TASK,
    build_compute_metrics,
    load_task_dataset,
    read_conll_file,
    tokenize_dataset,
)
from hf_distill.data.loading import are_entity_tags
from hf_distill.data.metrics import token_classification_metrics
from hf_distill.data.tokenization import align_word_labels
from hf_distill.teacher_cache import dataset_fingerprint

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402
import run_glue_teacher  # noqa: E402

# The shared copy's layout (word, tag, trailing space) mixed with the original four columns; DOCSTART lines and the
# blank lines around them separate documents, not sentences.
CONLL_SNIPPET = (
    "-DOCSTART- -X- -X- O \n\n"
    "the DT B-NP O \nmarket NN I-NP B-ORG \nrose VBD B-VP O \n\n"
    "he B-PER \nloved O \nthe O \nmovies B-MISC \n\n\n"
    "-DOCSTART- O \n\n"
    "she B-PER \nsold O \nshares O \n"
)
LABEL_IDS = {name: i for i, name in enumerate(CONLL2003_TASK.label_names)}


@pytest.fixture
def conll_dir(tmp_path):
    folder = tmp_path / "conll2003"
    folder.mkdir()
    for name in ("train.txt", "valid.txt"):
        (folder / name).write_text(CONLL_SNIPPET, encoding="utf-8")
    return folder


def make_tiny_tagger(seed: int = 0, **config_kwargs) -> BertForTokenClassification:
    torch.manual_seed(seed)
    config = make_tiny_bert_config(num_labels=9, id2label=dict(enumerate(CONLL2003_TASK.label_names)),
                                   label2id=LABEL_IDS, **config_kwargs)
    return BertForTokenClassification(config).eval()


def test_conll_reader_gives_the_hub_ids(conll_dir):
    data = read_conll_file(conll_dir / "train.txt")
    assert data["tokens"] == [["the", "market", "rose"], ["he", "loved", "the", "movies"], ["she", "sold", "shares"]]
    # The Hub's conll2003 ids: O 0, B-PER 1, B-ORG 3, B-MISC 7.
    assert data["label"] == [[0, 3, 0], [1, 0, 0, 7], [1, 0, 0]]
    assert data["idx"] == [0, 1, 2]
    assert data.features["label"].feature.names == list(CONLL2003_TASK.label_names)


def test_conll_reader_refuses_unknown_tags_and_lines_without_one(tmp_path):
    (tmp_path / "bad.txt").write_text("EU B-ORGANISATION \n")
    with pytest.raises(ValueError, match=r"line 1: the tag 'B-ORGANISATION' is not one of the task's labels"):
        read_conll_file(tmp_path / "bad.txt")
    (tmp_path / "short.txt").write_text("EU \n")
    with pytest.raises(ValueError, match=r"line 1: 'EU' has no tag"):
        read_conll_file(tmp_path / "short.txt")
    with pytest.raises(ValueError, match=r"`data_dir` is .* has no \['train.txt', 'valid.txt'\]"):
        load_task_dataset("conll2003", data_dir=tmp_path)


def test_word_labels_go_to_the_first_sub_token(conll_dir):
    raw, task = load_task_dataset("CoNLL-2003", data_dir=conll_dir)
    assert task.is_token_classification and task.main_metric == "f1"
    tokenizer = make_tiny_tokenizer()
    row = tokenize_dataset(raw, tokenizer, task, 32)["train"][1]
    tokens = tokenizer.convert_ids_to_tokens(row["input_ids"])
    assert tokens == ["[CLS]", "he", "loved", "the", "movie", "##s", "[SEP]"]
    assert row["labels"] == [-100, 1, 0, 0, 7, -100, -100]
    # label_all_tokens: a B-MISC word's continuation piece is I-MISC (id 8), as run_ner.py does.
    every = tokenize_dataset(raw, tokenizer, task, 32, label_all_tokens=True)["train"][1]
    assert every["labels"] == [-100, 1, 0, 0, 7, 8, -100]


def test_alignment_by_hand():
    word_ids = [None, 0, 0, 1, 2, 2, 2, None]
    assert align_word_labels(word_ids, [1, 0, 3], False, {1: 2, 3: 4}) == [-100, 1, -100, 0, 3, -100, -100, -100]
    assert align_word_labels(word_ids, [1, 0, 3], True, {1: 2, 3: 4}) == [-100, 1, 2, 0, 3, 4, 4, -100]


def test_token_files_and_dataset_folders_load_with_tag_names_or_ids(tmp_path):
    rows = [{"tokens": ["he", "sold", "shares"], "ner_tags": ["B-PER", "O", "O"]},
            {"tokens": ["the", "market"], "ner_tags": ["O", "B-ORG"]}]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    raw, task = load_task_dataset("conll2003", train_file=str(path), validation_file=str(path))
    assert raw["train"]["label"] == [[1, 0, 0], [0, 3]]
    # Without a task name the type follows from the columns, the labels from the sorted tags.
    raw, task = load_task_dataset(train_file=str(path), validation_file=str(path), text_columns=["tokens"],
                                  label_column="ner_tags")
    assert task.is_token_classification and task.label_names == ("B-ORG", "B-PER", "O")
    # A local dataset folder through `dataset_name`: data files, and a `save_to_disk` folder.
    folder = tmp_path / "my_ner"
    folder.mkdir()
    (folder / "train.jsonl").write_text(path.read_text())
    (folder / "validation.jsonl").write_text(path.read_text())
    raw, task = load_task_dataset(dataset_name=str(folder))
    assert task.is_token_classification and raw["validation"]["tokens"][1] == ["the", "market"]
    saved, _ = load_task_dataset("conll2003", train_file=str(path), validation_file=str(path))
    saved.save_to_disk(str(tmp_path / "saved"))
    raw, task = load_task_dataset(dataset_name=str(tmp_path / "saved"))
    assert task.label_names == CONLL2003_TASK.label_names and raw["train"]["label"] == [[1, 0, 0], [0, 3]]


def test_tags_seqeval_cannot_read_entities_from_report_token_accuracy_only(tmp_path):
    assert are_entity_tags(("O", "B-PER", "I-PER")) and are_entity_tags(("B-LOC", "E-LOC", "S-PER", "O"))
    assert not any(map(are_entity_tags, [("0", "1", "3"), ("NN", "VB", "O"), ("O",), ("B-PER", "PER")]))
    rows = [{"tokens": ["he", "sold", "shares"], "ner_tags": [1, 0, 0]},
            {"tokens": ["the", "market"], "ner_tags": [0, 3]}]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    raw, task = load_task_dataset(train_file=str(path), validation_file=str(path), text_columns=["tokens"],
                                  label_column="ner_tags")
    # Ids without names: seqeval would score every entity metric 0 on the tags "0", "1", "3".
    assert task.label_names == ("0", "1", "3") and task.metric_names == ("accuracy",)
    gold = np.array([[-100, 1, 0, 0, -100], [-100, 0, 2, -100, -100]])
    logits = np.eye(3)[np.where(gold == -100, 0, gold)] * 5.0
    logits[0, 3] = [0.0, 5.0, 0.0]  # one of the 5 labelled tokens wrong
    assert build_compute_metrics(task)(EvalPrediction(logits, gold)) == {"accuracy": pytest.approx(4 / 5)}
    # The same rows under IOB names keep the entity metrics.
    named, named_task = load_task_dataset("conll2003", train_file=str(path), validation_file=str(path))
    assert named_task.main_metric == "f1"
    assert set(build_compute_metrics(named_task)(EvalPrediction(np.eye(9)[gold.clip(0)], gold))) == {
        "f1", "precision", "recall", "accuracy"}


def test_token_data_errors(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"tokens": ["he", "sold"], "ner_tags": ["B-PER"]}) + "\n")
    with pytest.raises(ValueError, match=r"a row has 2 words but 1 tags"):
        load_task_dataset("conll2003", train_file=str(path), validation_file=str(path))
    path.write_text(json.dumps({"tokens": ["he"], "ner_tags": ["B-PERSON"]}) + "\n")
    with pytest.raises(ValueError, match=r"the label 'B-PERSON' of task 'conll2003' is not one of the label names"):
        load_task_dataset("conll2003", train_file=str(path), validation_file=str(path))
    path.write_text(json.dumps({"tokens": ["he"], "ner_tags": "B-PER"}) + "\n")
    with pytest.raises(ValueError, match=r"holds word lists \(token classification\), but the label column holds one"):
        load_task_dataset(train_file=str(path), validation_file=str(path), text_columns=["tokens"],
                          label_column="ner_tags")


def test_label_all_tokens_is_refused_for_a_sequence_task(tiny_sst2_dir):
    raw, task = load_task_dataset("sst2", data_dir=tiny_sst2_dir)
    with pytest.raises(ValueError, match=r"`label_all_tokens` is set, but task 'sst2' is sequence_classification"):
        tokenize_dataset(raw, make_tiny_tokenizer(), task, 32, label_all_tokens=True)


def test_entity_metrics_follow_conlleval():
    names = CONLL2003_TASK.label_names
    gold = np.array([[-100, 1, 2, 0, 3, -100], [-100, 5, 0, 0, -100, -100]])  # PER (2 tokens), ORG; LOC
    logits = np.full((2, 6, 9), -5.0)
    for row, tags in enumerate([[0, 1, 2, 0, 0, 0], [0, 5, 0, 7, 0, 0]]):  # PER right, ORG missed; LOC right + MISC
        logits[row, np.arange(6), tags] = 5.0
    metrics = token_classification_metrics(logits, gold, names)
    # 3 gold entities, 3 predicted, 2 right: precision = recall = f1 = 2/3; tokens 7 labelled, 5 right.
    assert metrics["precision"] == pytest.approx(2 / 3) and metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3) and metrics["accuracy"] == pytest.approx(5 / 7)


def trainer_for(tmp_path, conll_dir, student=None, teacher=None, **config):
    raw, task = load_task_dataset("conll2003", data_dir=conll_dir)
    tokenizer = make_tiny_tokenizer()
    tokenized = tokenize_dataset(raw, tokenizer, task, 32)
    args = DistillationConfig(output_dir=str(tmp_path / "out"), report_to=[], per_device_train_batch_size=3,
                              use_cpu=True, save_strategy="no", **config)
    return DistillationTrainer(
        model=student or make_tiny_tagger(seed=1, num_hidden_layers=2, **NO_DROPOUT),
        teacher_model=teacher or make_tiny_tagger(seed=0, **NO_DROPOUT),
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        data_collator=DataCollatorForTokenClassification(tokenizer),
        processing_class=tokenizer,
        compute_metrics=build_compute_metrics(task),
    ), tokenized


def test_per_token_kd_is_the_mean_over_labelled_tokens(tmp_path, conll_dir):
    trainer, tokenized = trainer_for(tmp_path, conll_dir, method="kd", alpha=0.5, temperature=2.0)
    batch = trainer.data_collator([tokenized["train"][i] for i in range(3)])
    student, teacher = trainer.model.train(), trainer.teacher
    loss = trainer.compute_loss(student, dict(batch))
    with torch.no_grad():
        student_logits = student(**{k: v for k, v in batch.items() if k != "idx"}).logits
        teacher_logits = teacher(**{k: v for k, v in batch.items() if k not in ("idx", "labels")}).logits
    # Hand computation: the labelled tokens (first sub-token of each word) only, each one prediction.
    labelled = batch["labels"] != -100
    assert int(labelled.sum()) == 10  # 3 + 4 + 3 words
    s, t, y = student_logits[labelled], teacher_logits[labelled], batch["labels"][labelled]
    kl = (F.softmax(t / 2, -1) * (F.log_softmax(t / 2, -1) - F.log_softmax(s / 2, -1))).sum(-1) * 4
    expected = 0.5 * kl.mean() + 0.5 * F.cross_entropy(s, y)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method, extra", [
    ("kd", {}),
    ("pkd", {}),
    ("tinybert", {"tinybert_stage": 1}),
    ("tinybert", {"tinybert_stage": 2}),
])
def test_each_method_trains_a_token_classifier(tmp_path, conll_dir, method, extra):
    trainer, _ = trainer_for(tmp_path, conll_dir, method=method, max_steps=2, **extra)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())
    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_f1", "eval_precision", "eval_recall", "eval_accuracy"} <= set(metrics)


def test_the_teacher_cache_stores_the_labelled_tokens_and_gives_the_online_loss(tmp_path, conll_dir):
    online, tokenized = trainer_for(tmp_path, conll_dir, method="pkd", alpha=0.5)
    cached, _ = trainer_for(tmp_path, conll_dir, method="pkd", alpha=0.5, teacher_cache=str(tmp_path / "cache"))
    assert cached.teacher_cache is not None
    for trainer in (online, cached):
        trainer.model.train()
    loader = cached.get_train_dataloader()
    batch = next(iter(loader))
    online_batch = {k: v for k, v in batch.items() if k != "teacher_cache_row"}
    torch.testing.assert_close(cached.compute_loss(cached.model, dict(batch)),
                               online.compute_loss(online.model, online_batch), rtol=1e-5, atol=1e-6)
    # The cache keys on the labelled tokens too: labelling every sub-token is another training set.
    raw, task = load_task_dataset("conll2003", data_dir=conll_dir)
    every = tokenize_dataset(raw, make_tiny_tokenizer(), task, 32, label_all_tokens=True)["train"]
    assert dataset_fingerprint(every) != dataset_fingerprint(tokenized["train"])


def test_a_batch_whose_labels_differ_from_the_cached_teacher_tokens_is_refused(tmp_path, conll_dir):
    trainer, _ = trainer_for(tmp_path, conll_dir, method="kd", teacher_cache=str(tmp_path / "cache"))
    batch = dict(next(iter(trainer.get_train_dataloader())))
    trainer.compute_loss(trainer.model, dict(batch))
    # A custom collator that unlabels a token after the cache rows were looked up: one prediction fewer.
    labels = batch["labels"].clone()
    labels[0, (labels[0] != -100).nonzero()[0]] = -100
    with pytest.raises(ValueError, match=r"the batch's `labels` select other tokens than the teacher's outputs"):
        trainer.compute_loss(trainer.model, {**batch, "labels": labels})


def test_a_teacher_and_student_with_other_heads_or_problem_types_are_refused(tmp_path, conll_dir):
    sequence_student = BertForSequenceClassification(make_tiny_bert_config(num_labels=9))
    with pytest.raises(ValueError, match=r"one predicts per token, the other per row"):
        trainer_for(tmp_path, conll_dir, student=sequence_student)
    multi_label = make_tiny_bert_config(num_labels=3, problem_type="multi_label_classification")
    with pytest.raises(ValueError, match=r"problem_type is 'multi_label_classification' but the student's"):
        DistillationTrainer(model=BertForSequenceClassification(make_tiny_bert_config(num_labels=3)),
                            teacher_model=BertForSequenceClassification(multi_label),
                            args=DistillationConfig(output_dir=str(tmp_path / "ml"), report_to=[], use_cpu=True))


# -- both scripts ---------------------------------------------------------------------------------------------------
SCRIPT_FLAGS = ["--max_seq_length", "32", "--per_device_train_batch_size", "4", "--report_to", "none",
                "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true"]


@pytest.fixture
def tiny_tagger_teacher(tmp_path, conll_dir, tiny_teacher_dir):
    """A tiny teacher fine-tuned for NER by run_glue_teacher.py (from the tiny sequence-classifier checkpoint)."""
    folder = tmp_path / "ner_teacher"
    run_glue_teacher.main(["--model_name_or_path", str(tiny_teacher_dir), "--task_name", "conll2003",
                           "--data_dir", str(conll_dir), "--max_steps", "2", "--output_dir", str(folder),
                           "--ignore_mismatched_sizes", "true", *SCRIPT_FLAGS])
    return folder


def test_both_scripts_on_a_conll_snippet(tmp_path, conll_dir, tiny_tagger_teacher):
    config = json.loads((tiny_tagger_teacher / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"] and config["id2label"]["3"] == "B-ORG"
    assert {"eval_f1", "eval_precision", "eval_recall", "eval_accuracy"} <= set(
        json.loads((tiny_tagger_teacher / "all_results.json").read_text()))
    student_dir = tmp_path / "student"
    metrics = run_distill.main(["--method", "kd", "--teacher_model_name_or_path", str(tiny_tagger_teacher),
                                "--task_name", "conll2003", "--data_dir", str(conll_dir), "--student_layers", "2",
                                "--max_steps", "2", "--output_dir", str(student_dir), *SCRIPT_FLAGS])
    assert "teacher_eval_f1" in metrics and "eval_f1" in metrics
    assert "| f1 |" in (student_dir / "summary.md").read_text()
    assert "pipeline_tag: token-classification" in (student_dir / "README.md").read_text()


def test_a_method_or_teacher_that_does_not_fit_the_task_is_refused(tmp_path, conll_dir, tiny_tagger_teacher,
                                                                   tiny_teacher_dir, tiny_sst2_dir):
    common = ["--task_name", "conll2003", "--data_dir", str(conll_dir), "--max_steps", "1", *SCRIPT_FLAGS]
    with pytest.raises(ValueError, match=r"PeaKD's PTP \(`ptp`\) relabels each example .* Pass `--ptp false`"):
        run_distill.main(["--method", "peakd", "--teacher_model_name_or_path", str(tiny_tagger_teacher),
                          "--output_dir", str(tmp_path / "peakd"), *common])
    with pytest.raises(ValueError, match=r"`teacher_model_name_or_path` is a sequence classifier .* token_class"):
        run_distill.main(["--method", "kd", "--teacher_model_name_or_path", str(tiny_teacher_dir),
                          "--output_dir", str(tmp_path / "seq"), *common])
    with pytest.raises(ValueError, match=r"`teacher_model_name_or_path` is a token classifier .* sequence_class"):
        run_distill.main(["--method", "kd", "--teacher_model_name_or_path", str(tiny_tagger_teacher),
                          "--task_name", "sst2", "--data_dir", str(tiny_sst2_dir), "--output_dir", str(tmp_path / "t"),
                          *SCRIPT_FLAGS])
    with pytest.raises(ValueError, match=r"`label_all_tokens` is set, but task 'sst2' is sequence_classification"):
        run_glue_teacher.main(["--model_name_or_path", str(tiny_teacher_dir), "--task_name", "sst2", "--data_dir",
                               str(tiny_sst2_dir), "--label_all_tokens", "true", "--output_dir", str(tmp_path / "l"),
                               *SCRIPT_FLAGS])


def test_peakd_without_ptp_trains_an_sps_tagger(tmp_path, conll_dir, tiny_tagger_teacher):
    metrics = run_distill.main(["--method", "peakd", "--ptp", "false", "--teacher_model_name_or_path",
                                str(tiny_tagger_teacher), "--task_name", "conll2003", "--data_dir", str(conll_dir),
                                "--student_layers", "2", "--max_steps", "2", "--output_dir", str(tmp_path / "sps"),
                                *SCRIPT_FLAGS])
    assert "eval_f1" in metrics
    assert json.loads((tmp_path / "sps" / "config.json").read_text())["architectures"] == [
        "SPSBertForTokenClassification"]


@pytest.mark.parametrize("method", ["bilstm", "tinybert"])
def test_bilstm_and_tinybert_taggers_from_the_script(tmp_path, conll_dir, tiny_tagger_teacher, method):
    extra = (["--bilstm_embedding_init", "random", "--bilstm_hidden_size", "8", "--bilstm_fc_hidden_size", "8"]
             if method == "bilstm" else ["--tinybert_stage1_epochs", "1", "--tinybert_stage2_epochs", "1",
                                         "--student_config", '{"num_hidden_layers": 2, "hidden_size": 16}'])
    metrics = run_distill.main(["--method", method, "--teacher_model_name_or_path", str(tiny_tagger_teacher),
                                "--task_name", "conll2003", "--data_dir", str(conll_dir), "--output_dir",
                                str(tmp_path / method), *extra, *SCRIPT_FLAGS])
    assert "eval_f1" in metrics


def test_real_minilm_teacher_and_student_on_a_conll_subset(tmp_path, minilm_path, conll_data_dir):
    """The README's NER commands on the first 64 CoNLL-2003 sentences, with the real MiniLM."""
    data = ["--task_name", "conll2003", "--data_dir", str(conll_data_dir),
            "--max_train_samples", "64", "--max_eval_samples", "32", "--max_steps", "4", "--learning_rate", "1e-4"]
    teacher = run_glue_teacher.main(["--model_name_or_path", str(minilm_path), "--output_dir", str(tmp_path / "t"),
                                     *data, *SCRIPT_FLAGS])
    assert 0.0 <= teacher["eval_f1"] <= 1.0
    student = run_distill.main(["--method", "kd", "--teacher_model_name_or_path", str(tmp_path / "t"),
                                "--student_layers", "3", "--output_dir", str(tmp_path / "s"), *data, *SCRIPT_FLAGS])
    assert student["teacher_eval_f1"] == pytest.approx(teacher["eval_f1"])
    assert json.loads((tmp_path / "s" / "config.json").read_text())["num_hidden_layers"] == 3


def test_augmentation_refuses_a_token_task(tmp_path, conll_dir):
    from hf_distill.augment import main as augment_main

    with pytest.raises(ValueError, match=r"Task 'conll2003' is token_classification, but augmentation rewrites"):
        augment_main(["--task_name", "conll2003", "--data_dir", str(conll_dir), "--output_file",
                      str(tmp_path / "aug.jsonl"), "--method", "tang"])


PLAIN_TAGGER = """
import sys
from transformers import pipeline
groups = pipeline("token-classification", model=sys.argv[1], aggregation_strategy="simple")("he sold shares")
assert groups and all("entity_group" in group for group in groups), groups
print(groups)
"""


def test_a_truncated_tagger_runs_in_the_ner_pipeline_without_hf_distill(tmp_path, conll_dir, tiny_tagger_teacher):
    student_dir = tmp_path / "student"
    run_distill.main(["--method", "kd", "--teacher_model_name_or_path", str(tiny_tagger_teacher), "--task_name",
                      "conll2003", "--data_dir", str(conll_dir), "--student_layers", "1", "--max_steps", "1",
                      "--output_dir", str(student_dir), *SCRIPT_FLAGS])
    # Random weights may tag nothing: make B-PER win everywhere, so the pipeline must group entities.
    student = BertForTokenClassification.from_pretrained(student_dir)
    with torch.no_grad():
        student.classifier.bias[LABEL_IDS["B-PER"]] += 100.0
    student.save_pretrained(student_dir)
    run_without_hf_distill(PLAIN_TAGGER, tmp_path, str(student_dir))
