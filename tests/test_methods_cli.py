"""`--method bilstm` and `--method peakd` through run_distill.main on the tiny fixtures, and their loss terms."""

import json
import sys

import pytest
import torch
from conftest import NO_DROPOUT, REPO_ROOT, make_tiny_bert
from test_trainer import make_trainer
from transformers import RobertaConfig, RobertaForSequenceClassification

from hf_distill.methods.peakd import replace_classifier
from hf_distill.students import build_bilstm_student

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402


def run(tmp_path, teacher_dir, data_dir, *extra):
    out = tmp_path / "out"
    metrics = run_distill.main([
        "--teacher_model_name_or_path", str(teacher_dir), "--task_name", "sst2", "--data_dir", str(data_dir),
        "--max_steps", "3", "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--output_dir", str(out),
        "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true", *extra,
    ])
    return out, metrics


def test_bilstm_method_builds_a_bilstm_student_and_uses_logit_mse(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    out, metrics = run(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--method", "bilstm", "--bilstm_hidden_size", "8",
                       "--bilstm_fc_hidden_size", "16", "--logging_steps", "1")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "hf_distill_bilstm" and config["hidden_size"] == 8
    effective = json.loads((out / "distillation_config.json").read_text())
    assert (effective["alpha"], effective["student_arch"]) == (1.0, "bilstm")
    state = json.loads((out / "trainer_state.json").read_text()) if (out / "trainer_state.json").exists() else None
    assert "eval_loss_mse" in metrics and "eval_loss_kd" not in metrics
    assert state is None or any("loss_mse" in log for log in state["log_history"])


def test_bilstm_loss_is_alpha_weighted_logit_mse_plus_ce(tmp_path, tiny_tokenizer):
    teacher = make_tiny_bert(seed=0, **NO_DROPOUT)
    student = build_bilstm_student(tiny_tokenizer, num_labels=2, is_pair=False, teacher=teacher,
                                   embedding_init="teacher", hidden_size=8, fc_hidden_size=8, dropout=0.0)
    trainer = make_trainer(tmp_path, method="bilstm", teacher=teacher, student=student, alpha=0.25)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(6)])
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model.eval(), batch)
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "idx")}
        s, t = trainer.model(**inputs).logits, trainer.teacher(**inputs).logits
    mse = ((s - t) ** 2).sum(dim=1).mean()
    ce = torch.nn.functional.cross_entropy(s, batch["labels"])
    assert loss.item() == pytest.approx((0.25 * mse + 0.75 * ce).item(), rel=1e-5)


def test_peakd_runs_ptp_then_pkd_on_an_sps_student(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    out, metrics = run(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--method", "peakd", "--student_layers", "2",
                       "--ptp_num_train_epochs", "1")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "hf_distill_sps_bert" and config["num_hidden_layers"] == 2
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert (out / "_ptp").is_dir()  # the PTP stage ran and kept its best checkpoint there
    effective = json.loads((out / "distillation_config.json").read_text())
    assert (effective["beta"], effective["student_arch"], effective["ptp"]) == (100.0, "sps", True)
    assert "eval_loss_pkd" in metrics


def test_peakd_ablations_plain_student_without_ptp(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    out, _ = run(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--method", "peakd", "--student_layers", "2",
                 "--student_arch", "plain", "--no_ptp")
    assert json.loads((out / "config.json").read_text())["model_type"] == "bert"
    assert not (out / "_ptp").exists()


def test_ptp_threshold_outside_peakd_and_out_of_range_are_refused(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    with pytest.raises(ValueError, match="`ptp_threshold`=.* applies only to `method` 'peakd'"):
        run(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--method", "kd", "--ptp_threshold", "0.9")
    with pytest.raises(ValueError, match="ptp_threshold"):
        run(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--method", "peakd", "--ptp_threshold", "1.5")


def test_replace_classifier_gives_a_fresh_head_and_labels():
    model = make_tiny_bert()
    old_weight = model.classifier.weight.clone()
    replace_classifier(model, ("a", "b", "c", "d"))
    assert model.classifier.out_features == 4 and model.config.num_labels == 4 and model.num_labels == 4
    assert model.config.id2label == {0: "a", 1: "b", 2: "c", 3: "d"}
    replace_classifier(model, ("negative", "positive"))
    assert model.classifier.weight.shape == old_weight.shape
    assert not torch.equal(model.classifier.weight, old_weight)


def test_replace_classifier_replaces_the_output_layer_of_a_head_module():
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(RobertaConfig(vocab_size=90, hidden_size=32, num_hidden_layers=1,
                                                           num_attention_heads=4, intermediate_size=37))
    dense = model.classifier.dense
    replace_classifier(model, ("a", "b", "c", "d"))
    assert model.classifier.dense is dense  # the head's hidden layer stays, as BERT's pooler does
    assert model.classifier.out_proj.out_features == 4 and model.config.num_labels == 4
    assert model(input_ids=torch.tensor([[0, 5, 6, 2]])).logits.shape == (1, 4)


def test_replace_classifier_refuses_a_head_without_a_linear_output_layer():
    model = make_tiny_bert()
    model.classifier = torch.nn.Sequential(torch.nn.Linear(32, 2))
    with pytest.raises(ValueError, match=r"`classifier` or `classifier.out_proj`.*is a Sequential.*--ptp false"):
        replace_classifier(model, ("a", "b"))


def test_bilstm_on_a_sentence_pair_task_end_to_end(tmp_path, tiny_tokenizer):
    teacher_dir = tmp_path / "teacher"
    make_tiny_bert(seed=0).save_pretrained(teacher_dir)
    tiny_tokenizer.save_pretrained(teacher_dir)
    rows = [("the movie was good", "the film was great", 1), ("the plot is bad", "people loved it", 0)] * 4
    body = "sentence1,sentence2,label\n" + "".join(f"{a},{b},{y}\n" for a, b, y in rows)
    (tmp_path / "pairs.csv").write_text(body)
    out = tmp_path / "out"
    metrics = run_distill.main([
        "--method", "bilstm", "--teacher_model_name_or_path", str(teacher_dir), "--train_file",
        str(tmp_path / "pairs.csv"), "--validation_file", str(tmp_path / "pairs.csv"), "--text_columns",
        "sentence1,sentence2", "--max_steps", "2", "--max_seq_length", "32", "--bilstm_hidden_size", "8",
        "--output_dir", str(out), "--report_to", "none", "--use_cpu", "true",
    ])
    assert json.loads((out / "config.json").read_text())["is_pair"] is True
    assert [row["model"] for row in metrics["summary"]] == ["teacher", "student (bilstm)"]
