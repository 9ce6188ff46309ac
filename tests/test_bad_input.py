"""Bad input is refused before any heavy work, with a message that names the argument and the fix.

Complements the checks already tested in test_data.py (loaders), test_trainer.py (config ranges, label counts,
vocabularies) and test_scripts.py (task, data_dir, layer ids, label order): each case here is one not tested there.
"""

import json
import math
import sys

import datasets
import pytest
import torch
import yaml
from conftest import REPO_ROOT, SST2_ROWS, make_tiny_bert, make_tiny_dataset, make_tiny_tokenizer
from transformers import DataCollatorWithPadding, RobertaConfig, TrainingArguments

from hf_distill import DistillationConfig, DistillationTrainer, cli, get_task
from hf_distill.students import build_bilstm_student

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402
import run_glue_teacher  # noqa: E402


def distill_argv(tmp_path, teacher_dir, data_dir, *extra):
    return ["--teacher_model_name_or_path", str(teacher_dir), "--task_name", "sst2", "--data_dir", str(data_dir),
            "--max_steps", "1", "--max_seq_length", "32", "--output_dir", str(tmp_path / "out"), "--report_to", "none",
            "--use_cpu", "true", *extra]


def refused(main, argv, match):
    """`main(argv)` raises a ValueError matching `match` before it writes anything (the effective configuration is
    written before the teacher is evaluated, the first heavy step)."""
    output_dir = argv[argv.index("--output_dir") + 1] if "--output_dir" in argv else None
    with pytest.raises(ValueError, match=match) as raised:
        main(argv)
    if output_dir is not None:
        assert not (REPO_ROOT / output_dir / "distillation_config.json").exists()
    return str(raised.value)


def save_teacher(path, **config_kwargs):
    make_tiny_bert(**config_kwargs).save_pretrained(path)
    make_tiny_tokenizer().save_pretrained(path)
    return path


def write_yaml(tmp_path, **values):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "report_to": "none", **values}))
    return str(path)


# -- arguments and config files -------------------------------------------------------------------------------
def test_unknown_method_flag_is_refused_by_the_parser(tmp_path, tiny_teacher_dir, tiny_sst2_dir, capsys):
    with pytest.raises(SystemExit):
        run_distill.main(distill_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--method", "magic"))
    assert "argument --method: invalid choice: 'magic'" in capsys.readouterr().err


def test_unknown_method_in_a_config_file(tmp_path):
    path = write_yaml(tmp_path, method="magic", teacher_model_name_or_path=str(tmp_path / "never-loaded"))
    refused(run_distill.main, [path], r"`method`='magic' is not a known distillation method. Choose one of")


def test_config_file_with_an_unknown_key_suggests_the_known_one(tmp_path):
    path = write_yaml(tmp_path, teacher_model_name_or_path="x", temprature=2.0, colour="red")
    message = refused(run_distill.main, [path], r"unknown key\(s\): 'colour', 'temprature' \(did you mean 'temp")
    assert "without '--'" in message


def test_config_file_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(["--method", "kd"]))
    refused(run_glue_teacher.main, [str(path)], r"holds a list, not a mapping of argument names to values")


@pytest.mark.parametrize(
    "setting, value",
    [("temperature", math.nan), ("temperature", math.inf), ("beta", math.inf), ("alpha", math.nan)],
)
def test_non_finite_loss_settings(tmp_path, setting, value):
    with pytest.raises(ValueError, match=rf"`{setting}` is {value}, but loss settings must be finite"):
        DistillationConfig(output_dir=str(tmp_path), report_to=[], **{setting: value})


def test_output_dir_of_a_finished_teacher_run(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "all_results.json").write_text("{}")
    argv = ["--model_name_or_path", str(tmp_path / "never-loaded"), "--task_name", "sst2", "--output_dir",
            str(tmp_path / "out")]
    refused(run_glue_teacher.main, argv, r"`output_dir` .* already holds a finished run")


def test_unknown_task_in_the_teacher_script(tmp_path, tiny_teacher_dir):
    refused(run_glue_teacher.main, ["--model_name_or_path", str(tiny_teacher_dir), "--task_name", "sst5",
                                    "--max_seq_length", "32", "--output_dir", str(tmp_path / "out")],
            r"`task_name` is 'sst5', which is not a GLUE")


@pytest.mark.parametrize("make_folder", [lambda path: None, lambda path: path.mkdir()], ids=["missing", "incomplete"])
def test_resume_from_a_missing_or_incomplete_checkpoint(tmp_path, make_folder):
    checkpoint = tmp_path / "out" / "checkpoint-4"
    (tmp_path / "out").mkdir()
    make_folder(checkpoint)
    argv = distill_argv(tmp_path, tmp_path / "never-loaded", tmp_path, "--resume_from_checkpoint", str(checkpoint))
    refused(run_distill.main, argv, r"`resume_from_checkpoint` is .*checkpoint-4', which is not a complete checkpoint")


# -- models -------------------------------------------------------------------------------------------------------
def corrupt_weights(path):
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])


def corrupt_config(path):
    (path / "config.json").write_text('{"model_type": "bert", ')


@pytest.mark.parametrize("corrupt", [corrupt_weights, corrupt_config], ids=["truncated-safetensors", "bad-config"])
def test_corrupted_teacher_checkpoint(tmp_path, tiny_teacher_dir, tiny_sst2_dir, corrupt):
    corrupt(tiny_teacher_dir)
    message = refused(run_distill.main, distill_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir),
                      r"`teacher_model_name_or_path` is .*tiny_teacher', which could not be loaded")
    assert "save or download it again" in message


def test_corrupted_teacher_path_given_to_the_trainer(tmp_path, tiny_teacher_dir):
    corrupt_weights(tiny_teacher_dir)
    with pytest.raises(ValueError, match=r"`teacher_model` is .*could not be loaded: SafetensorError"):
        DistillationTrainer(model=make_tiny_bert(num_hidden_layers=2), teacher_model=str(tiny_teacher_dir),
                            args=DistillationConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True))


def test_missing_teacher_folder(tmp_path, tiny_sst2_dir):
    refused(run_distill.main, distill_argv(tmp_path, tmp_path / "no-such-teacher", tiny_sst2_dir),
            r"`teacher_model_name_or_path` is .*no-such-teacher', which could not be loaded")


def test_max_seq_length_beyond_the_teachers_positions(tmp_path):
    teacher_dir = save_teacher(tmp_path / "teacher", max_position_embeddings=16)  # its tokenizer allows 64
    # The data folder does not exist: the length check comes first, before any data is read.
    refused(run_distill.main, distill_argv(tmp_path, teacher_dir, tmp_path / "no-data"),
            r"`max_seq_length` is 32, but the teacher \(`teacher_model_name_or_path`\) reads at most 16 tokens.*"
            r"Pass `--max_seq_length 16` or less")


def test_max_seq_length_counts_robertas_padding_offset(tmp_path):
    model_dir = tmp_path / "roberta"
    RobertaConfig(vocab_size=70, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                  max_position_embeddings=34, pad_token_id=1).save_pretrained(model_dir)
    argv = ["--model_name_or_path", str(model_dir), "--task_name", "sst2", "--max_seq_length", "33",
            "--output_dir", str(tmp_path / "out")]
    refused(run_glue_teacher.main, argv, r"`max_seq_length` is 33, but the model \(`model_name_or_path`\) reads at "
            r"most 32 tokens \(max_position_embeddings=34\)")


def test_non_positive_max_seq_length(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    refused(run_distill.main, distill_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--max_seq_length", "0"),
            r"`max_seq_length` is 0; expected a positive number of tokens")


def test_ready_made_student_with_another_label_count(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    student_dir = save_teacher(tmp_path / "student", num_hidden_layers=2, num_labels=3)
    refused(run_distill.main, distill_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir,
                                           "--student_model_name_or_path", str(student_dir)),
            r"`student_model_name_or_path`")


# -- data -----------------------------------------------------------------------------------------------------------
def test_empty_training_file(tmp_path, tiny_teacher_dir):
    (tmp_path / "train.csv").write_text("sentence,label\n")
    (tmp_path / "dev.csv").write_text("sentence,label\nthe movie was great,1\n")
    argv = ["--teacher_model_name_or_path", str(tiny_teacher_dir), "--train_file", str(tmp_path / "train.csv"),
            "--validation_file", str(tmp_path / "dev.csv"), "--text_columns", "sentence", "--output_dir",
            str(tmp_path / "out"), "--max_seq_length", "32", "--report_to", "none"]
    refused(run_distill.main, argv, r"`train_file` .*train.csv' holds no rows")


def test_nan_regression_labels(tmp_path, tiny_teacher_dir):
    data_dir = tmp_path / "STS-B"
    data_dir.mkdir()
    body = "sentence1\tsentence2\tscore\na man said\tthe man says\t4.5\na film\tthe stock rose\tnan\n"
    (data_dir / "train.tsv").write_text(body)
    (data_dir / "dev.tsv").write_text(body)
    argv = distill_argv(tmp_path, tiny_teacher_dir, data_dir, "--task_name", "stsb")
    refused(run_distill.main, argv, r"`label` column of the train split holds nan at row 1 \(1 such row\(s\)\), but "
            r"task 'stsb' needs finite scores")


def test_labels_outside_the_label_count(tmp_path, monkeypatch, tiny_teacher_dir, tiny_sst2_dir):
    """GLUE test splits mark unlabelled rows with -1: training on them must fail at loading, not inside the loss."""
    task = get_task("sst2")
    sentences = [sentence for sentence, _ in SST2_ROWS[:3]]
    split = datasets.Dataset.from_dict({"sentence": sentences, "label": [1, -1, 0], "idx": [0, 1, 2]},
                                       features=task.features)
    monkeypatch.setattr(cli, "load_task_dataset", lambda *args, **kwargs: (datasets.DatasetDict(
        train=split, validation=split), task))
    refused(run_distill.main, distill_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir),
            r"`label` column of the train split holds -1.0 at row 1 .* needs class ids in \[0, 1\] \(2 labels\)")


# -- teacher and student, Python API --------------------------------------------------------------------------------
def make_trainer(tmp_path, student, method="kd", teacher=None, **config_kwargs):
    return DistillationTrainer(
        model=student,
        teacher_model=teacher if teacher is not None else make_tiny_bert(seed=0),
        args=DistillationConfig(output_dir=str(tmp_path), method=method, max_steps=3, per_device_train_batch_size=4,
                                learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no",
                                disable_tqdm=True, **config_kwargs),
        train_dataset=make_tiny_dataset(len(SST2_ROWS)),
        data_collator=DataCollatorWithPadding(make_tiny_tokenizer()),
    )


def test_training_arguments_instead_of_a_distillation_config(tmp_path):
    with pytest.raises(ValueError, match=r"`args` must be a `DistillationConfig`.*got TrainingArguments"):
        DistillationTrainer(model=make_tiny_bert(), teacher_model=make_tiny_bert(),
                            args=TrainingArguments(output_dir=str(tmp_path), report_to=[]))


def test_teacher_and_student_with_other_label_names(tmp_path):
    teacher = make_tiny_bert(id2label={0: "negative", 1: "positive"})
    student = make_tiny_bert(num_hidden_layers=2, id2label={0: "positive", 1: "negative"})
    with pytest.raises(ValueError, match=r"Teacher labels .* and student \(`model`\) labels .* differ"):
        make_trainer(tmp_path, student, teacher=teacher)


def wide_student():
    return make_tiny_bert(seed=1, num_hidden_layers=2, hidden_size=64, intermediate_size=64)


def test_a_student_wider_than_the_teacher_distils_with_kd(tmp_path):
    trainer = make_trainer(tmp_path, wide_student())
    before = {name: value.clone() for name, value in trainer.model.state_dict().items()}
    trainer.train()
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])
    assert any(not torch.equal(before[name], value) for name, value in trainer.model.state_dict().items())


def test_a_student_of_another_width_is_refused_by_pkd(tmp_path):
    with pytest.raises(ValueError, match=r"`method`='pkd' .* the student's hidden_size is 64 and the teacher's 32. "
                                         r"Build the student at hidden_size=32"):
        make_trainer(tmp_path, wide_student(), method="pkd")


def test_a_bilstm_student_is_refused_by_pkd(tmp_path):
    student = build_bilstm_student(make_tiny_tokenizer(), num_labels=2, is_pair=False, embedding_dim=16)
    with pytest.raises(ValueError, match=r"`method`='pkd' .* BiLSTMForSequenceClassification, which has no "
                                         r"transformer layers"):
        make_trainer(tmp_path, student, method="pkd")


def test_a_one_layer_student_is_refused_by_pkd(tmp_path):
    with pytest.raises(ValueError, match=r"the student runs 1 layer, so the patient term would silently vanish"):
        make_trainer(tmp_path, make_tiny_bert(num_hidden_layers=1), method="pkd")
