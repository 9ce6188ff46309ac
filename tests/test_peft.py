"""LoRA teachers and students: a LoRA-fine-tuned teacher folder distils, a `PeftModel` teacher is merged, a LoRA
student is merged into a plain model (or kept as an adapter on a saved base), and the argument checks."""

import json
import sys

import pytest
import torch
from conftest import REPO_ROOT, make_tiny_bert, make_tiny_tokenizer
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.peft_utils import (
    StudentPeftArguments,
    TeacherPeftArguments,
    add_lora,
    is_peft_adapter,
    load_teacher,
    load_teacher_tokenizer,
    merge_peft_model,
)
from hf_distill.students import build_bilstm_student

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402
import run_glue_teacher  # noqa: E402

FAST = ["--max_seq_length", "32", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8",
        "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true"]
LORA = ["--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "query,value", "--lora_dropout", "0"]
SENTENCES = ["the movie was great fun", "a boring , dull film", "not good"]


def logits(model, tokenizer, sentences=SENTENCES):
    model.eval()
    with torch.no_grad():
        return model(**tokenizer(sentences, padding=True, return_tensors="pt")).logits


@pytest.fixture
def lora_teacher_dir(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    """A LoRA adapter fine-tuned on the tiny SST-2 by run_glue_teacher.py, with its metrics."""
    output = tmp_path / "lora_teacher"
    metrics = run_glue_teacher.main([
        "--model_name_or_path", str(tiny_teacher_dir), "--task_name", "sst2", "--data_dir", str(tiny_sst2_dir),
        "--use_peft", *LORA, "--max_steps", "3", "--learning_rate", "5e-2", "--output_dir", str(output), *FAST,
    ])
    return output, metrics


def test_lora_teacher_folder_is_an_adapter_with_labels_and_tokenizer(lora_teacher_dir, tiny_teacher_dir):
    folder, _ = lora_teacher_dir
    files = {path.name for path in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json", "tokenizer.json"} <= files
    assert "model.safetensors" not in files  # the adapter only, not a copy of the base
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    assert adapter_config["task_type"] == "SEQ_CLS" and adapter_config["r"] == 4
    assert set(adapter_config["target_modules"]) == {"query", "value"}
    saved = load_file(folder / "adapter_model.safetensors")
    assert any("lora_A" in key for key in saved) and any("classifier" in key for key in saved)
    assert json.loads((folder / "config.json").read_text())["id2label"] == {"0": "negative", "1": "positive"}
    assert is_peft_adapter(str(folder)) and not is_peft_adapter(str(tiny_teacher_dir))


def test_load_teacher_merges_the_adapter_onto_its_base(lora_teacher_dir, tiny_teacher_dir, tiny_tokenizer):
    folder, _ = lora_teacher_dir
    teacher = load_teacher(str(folder))
    assert type(teacher) is BertForSequenceClassification
    assert not any("lora" in name for name, _ in teacher.named_parameters())
    base = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    unmerged = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir), folder)
    torch.testing.assert_close(logits(teacher, tiny_tokenizer), logits(unmerged, tiny_tokenizer))
    assert not torch.allclose(logits(teacher, tiny_tokenizer), logits(base, tiny_tokenizer), atol=1e-4)
    assert load_teacher_tokenizer(str(folder)).get_vocab() == tiny_tokenizer.get_vocab()


def test_tokenizer_falls_back_to_the_adapter_base(lora_teacher_dir, tiny_tokenizer):
    folder, _ = lora_teacher_dir
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    assert load_teacher_tokenizer(str(folder)).get_vocab() == tiny_tokenizer.get_vocab()


def test_a_lora_teacher_folder_distils(tmp_path, lora_teacher_dir, tiny_sst2_dir):
    folder, teacher_metrics = lora_teacher_dir
    metrics = run_distill.main([
        "--method", "kd", "--teacher_model_name_or_path", str(folder), "--task_name", "sst2", "--data_dir",
        str(tiny_sst2_dir), "--student_layers", "2", "--max_steps", "2", "--output_dir", str(tmp_path / "student"),
        *FAST,
    ])
    # The merged teacher evaluates exactly as the adapter did at the end of its own run.
    assert metrics["teacher_eval_loss"] == pytest.approx(teacher_metrics["eval_loss"], abs=1e-5)
    assert metrics["teacher_eval_accuracy"] == teacher_metrics["eval_accuracy"]
    assert json.loads((tmp_path / "student" / "config.json").read_text())["num_hidden_layers"] == 2
    assert metrics["summary"][0]["size on disk (MB)"] is None  # an adapter's size is not the teacher's


def test_a_peft_model_teacher_is_merged_by_the_trainer(tmp_path, tiny_teacher, tiny_tokenizer):
    peft_teacher = get_peft_model(
        tiny_teacher, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=["query", "value"])
    )
    with torch.no_grad():
        for name, parameter in peft_teacher.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)  # a non-zero update, so merging changes the weights
    expected = logits(peft_teacher, tiny_tokenizer)
    trainer = DistillationTrainer(
        model=make_tiny_bert(seed=1, num_hidden_layers=2),
        teacher_model=peft_teacher,
        args=DistillationConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True),
    )
    assert type(trainer.teacher) is BertForSequenceClassification
    torch.testing.assert_close(logits(trainer.teacher, tiny_tokenizer), expected)


def test_load_teacher_rejects_an_adapter_without_its_classifier(tmp_path, tiny_teacher_dir):
    base = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    get_peft_model(base, LoraConfig(r=2, target_modules=["query"])).save_pretrained(tmp_path / "adapter")
    with pytest.raises(ValueError, match="`teacher_model_name_or_path`.*task_type 'SEQ_CLS'"):
        load_teacher(str(tmp_path / "adapter"))


def test_lora_student_is_merged_into_a_plain_model(tmp_path, tiny_teacher_dir, tiny_sst2_dir, tiny_teacher):
    output = tmp_path / "student"
    run_distill.main([
        "--method", "kd", "--teacher_model_name_or_path", str(tiny_teacher_dir), "--task_name", "sst2",
        "--data_dir", str(tiny_sst2_dir), "--student_layers", "2", "--student_peft", *LORA, "--max_steps", "3",
        "--learning_rate", "5e-2", "--output_dir", str(output), *FAST,
    ])
    files = {path.name for path in output.iterdir()}
    assert "model.safetensors" in files and not files & {"adapter_config.json", "adapter_model.safetensors"}
    weights = load_file(output / "model.safetensors")
    assert not any("lora" in key or "base_model" in key for key in weights)
    student = AutoModelForSequenceClassification.from_pretrained(output)
    assert type(student) is BertForSequenceClassification and student.config.num_hidden_layers == 2
    # LoRA trained the query/value projections (now merged) and the classifier; everything else stayed frozen.
    teacher_weights = tiny_teacher.state_dict()
    for key in ("bert.embeddings.word_embeddings.weight", "bert.encoder.layer.1.attention.self.key.weight",
                "bert.encoder.layer.1.output.dense.weight"):
        torch.testing.assert_close(weights[key], teacher_weights[key], msg=key)
    for key in ("bert.encoder.layer.1.attention.self.query.weight", "classifier.weight"):
        assert not torch.allclose(weights[key], teacher_weights[key]), key
    effective = json.loads((output / "distillation_config.json").read_text())
    assert (effective["student_peft"], effective["lora_r"]) == (True, 4)


def test_unmerged_lora_student_needs_a_saved_base(tmp_path, tiny_teacher_dir, tiny_sst2_dir, tiny_tokenizer):
    common = ["--method", "kd", "--teacher_model_name_or_path", str(tiny_teacher_dir), "--task_name", "sst2",
              "--data_dir", str(tiny_sst2_dir), "--student_peft", "--no_merge_student_peft", *LORA, "--max_steps",
              "2", "--output_dir", str(tmp_path / "student"), *FAST]
    with pytest.raises(ValueError, match="`merge_student_peft` is False.*--student_model_name_or_path"):
        run_distill.main([*common, "--student_layers", "2"])

    base_dir = tmp_path / "base_student"
    base = make_tiny_bert(seed=3, num_hidden_layers=2)
    base.config.id2label, base.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    base.save_pretrained(base_dir)
    tiny_tokenizer.save_pretrained(base_dir)
    run_distill.main([*common, "--student_model_name_or_path", str(base_dir)])
    files = {path.name for path in (tmp_path / "student").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files and "model.safetensors" not in files
    adapter_config = json.loads((tmp_path / "student" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(base_dir)
    card = (tmp_path / "student" / "README.md").read_text()
    assert "library_name: peft" in card and "AutoPeftModelForSequenceClassification" in card


def test_lora_arguments_are_checked():
    with pytest.raises(ValueError, match="`lora_r`"):
        TeacherPeftArguments(lora_r=0)
    with pytest.raises(ValueError, match="`lora_dropout`"):
        StudentPeftArguments(lora_dropout=1.0)
    bilstm = build_bilstm_student(make_tiny_tokenizer(), num_labels=2, is_pair=False, embedding_dim=8, hidden_size=4)
    with pytest.raises(ValueError, match="`lora_target_modules` is unset.*'hf_distill_bilstm'"):
        add_lora(bilstm, StudentPeftArguments(student_peft=True))
    assert merge_peft_model(bilstm) is bilstm
