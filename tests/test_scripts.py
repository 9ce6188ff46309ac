"""End to end: both scripts on real SST-2 rows with the real MiniLM, and their argument checks on tiny models."""

import json
import math
import sys

import pytest
import yaml
from conftest import REPO_ROOT, make_tiny_bert

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402
import run_glue_teacher  # noqa: E402

FAST = ["--max_seq_length", "32", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32",
        "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true"]


def test_teacher_then_distillation_on_real_sst2_with_minilm(tmp_path, glue_dir, minilm_path):
    teacher_dir = tmp_path / "teacher"
    teacher_metrics = run_glue_teacher.main([
        "--model_name_or_path", str(minilm_path), "--task_name", "SST-2", "--data_dir", str(glue_dir / "SST-2"),
        "--max_train_samples", "160", "--max_eval_samples", "64", "--max_steps", "6", "--learning_rate", "1e-4",
        "--output_dir", str(teacher_dir), *FAST,
    ])
    assert {"config.json", "model.safetensors", "tokenizer.json", "all_results.json"} <= {
        p.name for p in teacher_dir.iterdir()
    }
    assert 0.0 <= teacher_metrics["eval_accuracy"] <= 1.0

    student_dir = tmp_path / "student"
    metrics = run_distill.main([
        "--method", "pkd", "--teacher_model_name_or_path", str(teacher_dir), "--task_name", "sst2",
        "--data_dir", str(glue_dir / "SST-2"), "--max_train_samples", "160", "--max_eval_samples", "64",
        "--student_layers", "3", "--max_steps", "6", "--output_dir", str(student_dir), *FAST,
    ])
    saved = json.loads((student_dir / "all_results.json").read_text())
    assert math.isfinite(saved["eval_accuracy"]) and math.isfinite(saved["teacher_eval_accuracy"])
    assert saved["teacher_eval_accuracy"] == pytest.approx(teacher_metrics["eval_accuracy"])
    assert json.loads((student_dir / "config.json").read_text())["num_hidden_layers"] == 3
    effective = json.loads((student_dir / "distillation_config.json").read_text())
    settings = (effective["method"], effective["alpha"], effective["beta"], effective["task"])
    assert settings == ("pkd", 0.7, 500.0, "sst2")
    table = (student_dir / "summary.md").read_text()
    assert "teacher" in table and "student (pkd)" in table and "speed-up" in table
    assert [row["model"] for row in metrics["summary"]] == ["teacher", "student (pkd)"]


def test_distill_from_a_yaml_config_file(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    config = {
        "method": "kd", "teacher_model_name_or_path": str(tiny_teacher_dir), "task_name": "sst2",
        "data_dir": str(tiny_sst2_dir), "student_layer_ids": "0,2", "max_steps": 2, "alpha": 0.5,
        "temperature": 2.0, "max_seq_length": 32, "output_dir": str(tmp_path / "out"), "report_to": "none",
        "use_cpu": True,
    }
    path = tmp_path / "kd.yaml"
    path.write_text(yaml.safe_dump(config))
    run_distill.main([str(path)])
    student_config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert student_config["distillation_layer_ids"] == [0, 2]
    effective = json.loads((tmp_path / "out" / "distillation_config.json").read_text())
    assert (effective["alpha"], effective["temperature"]) == (0.5, 2.0)
    with pytest.raises(ValueError, match="`output_dir`.*already holds a finished run"):
        run_distill.main([str(path)])

    # Flags after the file override it (`--no_ptp` would now be refused: PTP is PeaKD's, and this run is kd).
    run_distill.main([str(path), "--output_dir", str(tmp_path / "other"), "--temperature", "4", "--disable_tqdm",
                      "true"])
    effective = json.loads((tmp_path / "other" / "distillation_config.json").read_text())
    assert (effective["alpha"], effective["temperature"]) == (0.5, 4.0)


def distill_args(tmp_path, teacher_dir, data_dir, *extra):
    return ["--teacher_model_name_or_path", str(teacher_dir), "--task_name", "sst2", "--data_dir", str(data_dir),
            "--max_steps", "1", "--max_seq_length", "32", "--output_dir", str(tmp_path / "out"), "--report_to", "none",
            *extra]


def test_bad_inputs_fail_before_training(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    with pytest.raises(ValueError, match="task_name"):
        run_distill.main(distill_args(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--task_name", "sst5"))
    with pytest.raises(ValueError, match="data_dir"):
        run_distill.main(distill_args(tmp_path, tiny_teacher_dir, tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="student_layer_ids"):
        run_distill.main(distill_args(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--student_layer_ids", "0,9"))
    with pytest.raises(ValueError, match="pkd_layer_map"):
        run_distill.main(distill_args(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--method", "pkd",
                                      "--student_layers", "2", "--pkd_layer_map", "8"))
    with pytest.raises(ValueError, match="No such file|does not exist"):
        run_distill.main([str(tmp_path / "missing.yaml")])


def test_teacher_whose_labels_differ_from_the_dataset_is_refused(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    config = json.loads((tiny_teacher_dir / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "positive", "1": "negative"}, {"positive": 0, "negative": 1}
    (tiny_teacher_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="id2label order.*negative"):
        run_distill.main(distill_args(tmp_path, tiny_teacher_dir, tiny_sst2_dir))


def test_three_label_teacher_on_a_two_label_task_is_refused(tmp_path, tiny_tokenizer, tiny_sst2_dir):
    teacher_dir = tmp_path / "teacher3"
    make_tiny_bert(num_labels=3).save_pretrained(teacher_dir)
    tiny_tokenizer.save_pretrained(teacher_dir)
    with pytest.raises(ValueError, match="predicts 3 labels but task 'sst2' has 2"):
        run_distill.main(distill_args(tmp_path, teacher_dir, tiny_sst2_dir))


def test_student_whose_tokenizer_outgrows_its_embeddings_is_refused(tmp_path, tiny_teacher_dir, tiny_sst2_dir,
                                                                    tiny_tokenizer):
    from transformers import BertTokenizer

    student_dir = tmp_path / "student"
    make_tiny_bert(num_hidden_layers=2).save_pretrained(student_dir)
    vocab = dict(tiny_tokenizer.get_vocab())
    vocab["zebra"] = len(vocab)
    BertTokenizer(vocab=vocab).save_pretrained(student_dir)
    # Another vocabulary than the teacher's is a cross-tokenizer run, but this one outgrows the student's embeddings.
    with pytest.raises(ValueError, match=r"The student's tokenizer has \d+ tokens, but the student embeds \d+"):
        run_distill.main(distill_args(tmp_path, tiny_teacher_dir, tiny_sst2_dir,
                                      "--student_model_name_or_path", str(student_dir)))
