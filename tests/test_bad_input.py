"""Bad input is refused before any heavy work, with a message that names the argument and the fix.

Complements the checks already tested in test_data.py (loaders), test_trainer.py (config ranges, label counts,
vocabularies) and test_scripts.py (task, data_dir, layer ids, label order): each case here is one not tested there.
"""

import json
import math
import shutil
import sys
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from conftest import (
    REPO_ROOT,
    SST2_ROWS,
    make_tiny_bert,
    make_tiny_bert_config,
    make_tiny_dataset,
    make_tiny_tokenizer,
)
from peft import LoraConfig, TaskType, get_peft_model
from transformers import (
    BertForMaskedLM,
    BertModel,
    DataCollatorWithPadding,
    RobertaConfig,
    RobertaForSequenceClassification,
    TrainingArguments,
)

from hf_distill import DistillationConfig, DistillationTrainer, cli, get_task
from hf_distill import augment as augment_cli
from hf_distill.students import build_bilstm_student
from hf_distill.students.factory import build_student_from_config
from hf_distill.students.layer_selection import build_student_from_teacher

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402
import run_glue_teacher  # noqa: E402


def distill_argv(tmp_path, teacher_dir, data_dir, *extra):
    return ["--teacher_model_name_or_path", str(teacher_dir), "--task_name", "sst2", "--data_dir", str(data_dir),
            "--max_steps", "1", "--max_seq_length", "32", "--output_dir", str(tmp_path / "out"), "--report_to", "none",
            "--use_cpu", "true", *extra]


def _output_dir(argv):
    if "--output_dir" in argv:
        return REPO_ROOT / argv[argv.index("--output_dir") + 1]
    if argv and argv[0].endswith((".yaml", ".json")) and Path(argv[0]).is_file():
        values = yaml.safe_load(Path(argv[0]).read_text())
        if isinstance(values, dict) and "output_dir" in values:
            return REPO_ROOT / values["output_dir"]
    return None


def _files(folder):
    return sorted(str(path) for path in folder.rglob("*")) if folder is not None and folder.exists() else []


def refused(main, argv, match):
    """`main(argv)` raises a ValueError matching `match` before it writes anything (the effective configuration is
    written before the teacher is evaluated, the first heavy step; the teacher script writes nothing before it
    trains). The output folder, from the flags or the config file, is left as it was."""
    output_dir = _output_dir(argv)
    before = _files(output_dir)
    with pytest.raises(ValueError, match=match) as raised:
        main(argv)
    if output_dir is not None:
        assert not (output_dir / "distillation_config.json").exists()
        assert _files(output_dir) == before
    return str(raised.value)


def assert_gives_a_fix(message, *fixes):
    """The message names a way out: each of `fixes` appears in it."""
    for fix in fixes:
        assert fix in message, f"{fix!r} not in: {message}"


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
            r"`task_name` is 'sst5', which is not a named task")


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


def test_a_bilstm_student_is_refused_by_pkd(tmp_path):
    student = build_bilstm_student(make_tiny_tokenizer(), num_labels=2, is_pair=False, embedding_dim=16)
    with pytest.raises(ValueError, match=r"`method`='pkd' .* BiLSTMForSequenceClassification, which has no "
                                         r"transformer layers"):
        make_trainer(tmp_path, student, method="pkd")


def test_a_one_layer_student_is_refused_by_pkd(tmp_path):
    with pytest.raises(ValueError, match=r"the student runs 1 layer, so the patient term would silently vanish"):
        make_trainer(tmp_path, make_tiny_bert(num_hidden_layers=1), method="pkd")


# -- malformed model folders: teacher, teacher script, students, masked LM ------------------------------------------
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def drop_config(path):
    (path / "config.json").unlink()


def drop_tokenizer(path):
    for name in TOKENIZER_FILES:
        (path / name).unlink(missing_ok=True)


def drop_tokenizer_vocabulary(path):
    """A half-copied tokenizer: tokenizer_config.json without the vocabulary it describes."""
    for name in ("tokenizer.json", "vocab.txt"):
        (path / name).unlink(missing_ok=True)


def drop_weights(path):
    (path / "model.safetensors").unlink()


def garbage_weights(path):
    (path / "model.safetensors").write_bytes(b"not a safetensors file " * 64)


def unknown_model_type(path):
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "frobnicator"}))


def other_architecture_weights(path):
    """RoBERTa weights under a BERT config.json: no tensor name matches."""
    layers = json.loads((path / "config.json").read_text())["num_hidden_layers"]
    RobertaForSequenceClassification(RobertaConfig(
        vocab_size=70, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=66)).save_pretrained(path / "roberta")
    shutil.move(path / "roberta" / "model.safetensors", path / "model.safetensors")
    shutil.rmtree(path / "roberta")


def other_width_weights(path):
    make_tiny_bert(hidden_size=48).save_pretrained(path / "wide")
    shutil.move(path / "wide" / "model.safetensors", path / "model.safetensors")
    shutil.rmtree(path / "wide")


LOAD_FIX = "save or download it again"
TOKENIZER_FIX = ").save_pretrained(folder)`"
WEIGHTS_FIX = "save the checkpoint again with `save_pretrained`"
NO_TOKENIZER = r"whose tokenizer has no vocabulary \(only the special tokens .*\[UNK\].*\)"
OTHER_WEIGHTS = r"but its weights do not fit its config.json \(BertForSequenceClassification\): \d+ of \d+ tensors"
FOLDER_PROBLEMS = {
    "no-config": (drop_config, r"which could not be loaded: the folder holds no config.json \(its files: mod",
                  LOAD_FIX),
    "no-tokenizer": (drop_tokenizer, NO_TOKENIZER, TOKENIZER_FIX),
    "tokenizer-config-only": (drop_tokenizer_vocabulary, NO_TOKENIZER, TOKENIZER_FIX),
    "no-weights": (drop_weights, r"which could not be loaded: OSError: .*no file named model.safetensors", LOAD_FIX),
    "garbage-safetensors": (garbage_weights, r"which could not be loaded: SafetensorError", LOAD_FIX),
    "truncated-safetensors": (corrupt_weights, r"which could not be loaded: SafetensorError", LOAD_FIX),
    "invalid-json-config": (corrupt_config, r"which could not be loaded: OSError: .*not a valid JSON file", LOAD_FIX),
    "unknown-model-type": (unknown_model_type, r"which could not be loaded: ValueError: .*`frobnicator`", LOAD_FIX),
    "other-architecture-weights": (other_architecture_weights, OTHER_WEIGHTS, WEIGHTS_FIX),
    "other-width-weights": (other_width_weights, r"which could not be loaded: RuntimeError: .*mismatched", LOAD_FIX),
}


# truncated-safetensors and invalid-json-config: test_corrupted_teacher_checkpoint above.
@pytest.mark.parametrize("problem", [name for name in FOLDER_PROBLEMS if name not in (
    "truncated-safetensors", "invalid-json-config")])
def test_malformed_teacher_folder(tmp_path, tiny_teacher_dir, tiny_sst2_dir, problem):
    corrupt, match, fix = FOLDER_PROBLEMS[problem]
    corrupt(tiny_teacher_dir)
    message = refused(run_distill.main, distill_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir),
                      rf"`teacher_model_name_or_path` is .*tiny_teacher', {match}")
    assert_gives_a_fix(message, fix)


@pytest.mark.parametrize("problem", ["no-config", "no-tokenizer", "truncated-safetensors", "invalid-json-config",
                                     "other-architecture-weights"])
def test_malformed_model_folder_for_the_teacher_script(tmp_path, tiny_teacher_dir, tiny_sst2_dir, problem):
    corrupt, match, fix = FOLDER_PROBLEMS[problem]
    corrupt(tiny_teacher_dir)
    message = refused(run_glue_teacher.main, teacher_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir),
                      rf"`model_name_or_path` is .*tiny_teacher', {match}")
    assert_gives_a_fix(message, fix)
    if problem == "no-tokenizer":
        assert_gives_a_fix(message, "or pass `--tokenizer_name`")


def teacher_argv(tmp_path, model_dir, data_dir, *extra):
    return ["--model_name_or_path", str(model_dir), "--task_name", "sst2", "--data_dir", str(data_dir),
            "--max_steps", "1", "--max_seq_length", "32", "--output_dir", str(tmp_path / "out"), "--report_to", "none",
            "--use_cpu", "true", *extra]


def test_missing_tokenizer_folder_for_the_teacher_script(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    argv = teacher_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--tokenizer_name", str(tmp_path / "no-tokenizer"))
    message = refused(run_glue_teacher.main, argv,
                      r"`tokenizer_name` is .*no-tokenizer', which could not be loaded: there is no such folder")
    assert_gives_a_fix(message, "Pass a Hub model id or a folder written by `save_pretrained`")


def save_encoder(path, model_class):
    model_class(make_tiny_bert_config()).save_pretrained(path)
    make_tiny_tokenizer().save_pretrained(path)
    return path


@pytest.mark.parametrize("model_class", [BertModel, BertForMaskedLM], ids=["bare-encoder", "masked-lm"])
def test_teacher_that_is_not_a_fine_tuned_classifier(tmp_path, tiny_sst2_dir, model_class):
    """`from_pretrained` would give it a random classifier with only a log line: the teacher would teach noise."""
    teacher_dir = save_encoder(tmp_path / "encoder", model_class)
    message = refused(run_distill.main, distill_argv(tmp_path, teacher_dir, tiny_sst2_dir),
                      rf"`teacher_model_name_or_path` is .*encoder', but the checkpoint has no trained task head "
                      rf"\(.*classifier.weight missing; its config's architectures: \['{model_class.__name__}'\]\)")
    assert_gives_a_fix(message, "Fine-tune it on the task first", "run_glue_teacher.py --model_name_or_path")


def test_teacher_path_without_a_classifier_given_to_the_trainer(tmp_path):
    teacher_dir = save_encoder(tmp_path / "encoder", BertModel)
    with pytest.raises(ValueError, match=r"`teacher_model` is .*encoder', but the checkpoint has no trained task"):
        DistillationTrainer(model=make_tiny_bert(num_hidden_layers=2), teacher_model=str(teacher_dir),
                            args=DistillationConfig(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True))


def save_lora_teacher(path, base):
    """A SEQ_CLS LoRA adapter folder (adapter, labels in config.json) whose adapter_config.json names `base`."""
    model = make_tiny_bert()
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=2, target_modules=["query", "value"])
    get_peft_model(model, config).save_pretrained(path)
    model.config.save_pretrained(path)
    adapter_config = json.loads((path / "adapter_config.json").read_text())
    (path / "adapter_config.json").write_text(json.dumps({**adapter_config, "base_model_name_or_path": str(base)}))
    return path


@pytest.mark.parametrize("with_tokenizer", [True, False], ids=["tokenizer-in-adapter", "tokenizer-from-base"])
def test_lora_teacher_whose_base_folder_is_gone(tmp_path, tiny_sst2_dir, with_tokenizer):
    adapter = save_lora_teacher(tmp_path / "adapter", base=tmp_path / "moved-base")
    if with_tokenizer:
        make_tiny_tokenizer().save_pretrained(adapter)
    message = refused(run_distill.main, distill_argv(tmp_path, adapter, tiny_sst2_dir),
                      r"`teacher_model_name_or_path` is .*adapter', a LoRA adapter whose base model .*moved-base' "
                      r"\(`base_model_name_or_path` in its adapter_config.json\) is not an existing folder")
    assert_gives_a_fix(message, "set `base_model_name_or_path` in adapter_config.json to its Hub id or current folder")


def test_lora_teacher_whose_base_is_corrupted(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    corrupt_weights(tiny_teacher_dir)
    adapter = save_lora_teacher(tmp_path / "adapter", base=tiny_teacher_dir)
    make_tiny_tokenizer().save_pretrained(adapter)
    message = refused(run_distill.main, distill_argv(tmp_path, adapter, tiny_sst2_dir),
                      r"`teacher_model_name_or_path` is .*adapter', a LoRA adapter whose base model .*tiny_teacher' "
                      r"\(`base_model_name_or_path` in its adapter_config.json\) could not be loaded: SafetensorError")
    assert_gives_a_fix(message, "Make the base model available")


def test_lora_teacher_whose_adapter_config_is_not_json(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    adapter = save_lora_teacher(tmp_path / "adapter", base=tiny_teacher_dir)
    (adapter / "adapter_config.json").write_text('{"task_type": "SEQ_CLS", ')
    message = refused(run_distill.main, distill_argv(tmp_path, adapter, tiny_sst2_dir),
                      r"`teacher_model_name_or_path` is .*adapter', which could not be loaded: JSONDecodeError")
    assert_gives_a_fix(message, LOAD_FIX)


def student_folder(tmp_path, problem):
    path = tmp_path / "student"
    if problem != "missing":
        save_teacher(path, num_hidden_layers=2)
        FOLDER_PROBLEMS[problem][0](path)
    return path


@pytest.mark.parametrize("problem", ["missing", "no-tokenizer", "invalid-json-config", "truncated-safetensors",
                                     "other-architecture-weights"])
def test_malformed_ready_made_student_folder(tmp_path, tiny_teacher_dir, tiny_sst2_dir, problem):
    student_dir = student_folder(tmp_path, problem)
    match, fix = FOLDER_PROBLEMS[problem][1:] if problem != "missing" else (
        r"which could not be loaded: there is no such folder", LOAD_FIX)
    message = refused(run_distill.main, distill_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir,
                                                     "--student_model_name_or_path", str(student_dir)),
                      rf"`student_model_name_or_path` is .*student', {match}")
    assert_gives_a_fix(message, fix)


@pytest.mark.parametrize("problem", ["missing", "no-config", "truncated-safetensors"])
def test_malformed_student_init_from_folder(tmp_path, tiny_teacher_dir, tiny_sst2_dir, problem):
    init_dir = student_folder(tmp_path, problem)
    match, fix = FOLDER_PROBLEMS[problem][1:] if problem != "missing" else (
        r"which could not be loaded: there is no such folder", LOAD_FIX)
    argv = distill_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--student_layers", "2",
                        "--student_init_from", str(init_dir))
    message = refused(run_distill.main, argv, rf"`student_init_from` is .*student', {match}")
    assert_gives_a_fix(message, fix)


def test_student_init_from_weights_of_another_architecture(tmp_path, tiny_teacher, tiny_teacher_dir):
    """Python API: every layer would silently keep its random initialisation."""
    other_architecture_weights(tiny_teacher_dir)
    with pytest.raises(ValueError, match=r"`student_init_from` is .*tiny_teacher', but its weights do not fit its "
                                         r"config.json \(BertModel\)") as raised:
        build_student_from_teacher(tiny_teacher, num_layers=2, init_from=str(tiny_teacher_dir))
    assert_gives_a_fix(str(raised.value), WEIGHTS_FIX)


def test_student_config_with_a_size_of_zero(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    argv = distill_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--student_config", '{"num_hidden_layers": 0}')
    message = refused(run_distill.main, argv,
                      r"`student_config` sets \{'num_hidden_layers': 0\}, but sizes must be whole numbers ≥ 1")
    assert_gives_a_fix(message, 'Example: \'{"num_hidden_layers": 4')


def test_student_config_with_heads_that_do_not_divide_the_width(tiny_teacher):
    with pytest.raises(ValueError, match=r"`student_config` \{'hidden_size': 30\} does not give a valid BertConfig: "
                                         r"ValueError: The hidden size \(30\) is not a multiple") as raised:
        build_student_from_config('{"hidden_size": 30}', tiny_teacher)
    assert_gives_a_fix(str(raised.value), "a hidden_size that num_attention_heads divides")


@pytest.mark.parametrize("problem", ["missing", "truncated-safetensors", "no-tokenizer"])
def test_malformed_masked_lm_for_augmentation(tmp_path, tiny_sst2_dir, problem):
    mlm = tmp_path / "mlm"
    if problem != "missing":
        save_encoder(mlm, BertForMaskedLM)
        FOLDER_PROBLEMS[problem][0](mlm)
    output = tmp_path / "aug.jsonl"
    argv = ["--task_name", "sst2", "--data_dir", str(tiny_sst2_dir), "--mlm_model_name_or_path", str(mlm),
            "--output_file", str(output), "--n_aug", "1", "--device", "cpu"]
    match = FOLDER_PROBLEMS[problem][1] if problem != "missing" else "which could not be loaded: there is no such"
    with pytest.raises(ValueError, match=rf"`mlm_model_name_or_path` is .*mlm', {match}"):
        augment_cli.main(argv)
    assert not output.exists()


# -- training settings that would fail only once training starts ---------------------------------------------------
@pytest.mark.parametrize(
    "flag, value, match",
    [
        ("per_device_train_batch_size", "0", r"`per_device_train_batch_size` is 0; expected a positive whole number. "
                                             r"Pass e.g. `--per_device_train_batch_size 32`"),
        ("per_device_eval_batch_size", "-1", r"`per_device_eval_batch_size` is -1; expected a positive whole number"),
        ("gradient_accumulation_steps", "0", r"`gradient_accumulation_steps` is 0; expected a positive whole number"),
        ("learning_rate", "nan", r"`learning_rate` is nan; expected a finite number ≥ 0. Pass e.g. `--learning_rate"),
    ],
    ids=["train-batch-0", "eval-batch-negative", "accumulation-0", "learning-rate-nan"],
)
def test_training_settings_checked_before_the_teacher_is_evaluated(tmp_path, tiny_teacher_dir, tiny_sst2_dir, flag,
                                                                   value, match):
    refused(run_distill.main, distill_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir, f"--{flag}", value), match)


@pytest.mark.parametrize("script", ["run_distill", "run_glue_teacher"])
def test_a_run_of_zero_training_steps(tmp_path, tiny_teacher_dir, tiny_sst2_dir, script):
    """It would save the untrained model and all_results.json as if it had been trained."""
    make_argv, main = {"run_distill": (distill_argv, run_distill.main),
                       "run_glue_teacher": (teacher_argv, run_glue_teacher.main)}[script]
    argv = make_argv(tmp_path, tiny_teacher_dir, tiny_sst2_dir, "--max_steps", "-1", "--num_train_epochs", "0")
    message = refused(main, argv, r"`num_train_epochs` is 0.0 and `max_steps` is -1, so the run would take 0 training")
    assert_gives_a_fix(message, "Pass `--num_train_epochs 3`")


@pytest.mark.parametrize(
    "key, value, expected",
    [("per_device_train_batch_size", 8.5, "a whole number"), ("max_steps", [1, 2], "a whole number"),
     ("temperature", {"value": 2}, "a number")],
    ids=["float-for-int", "list-for-int", "mapping-for-float"],
)
def test_config_file_value_of_the_wrong_type(tmp_path, tiny_teacher_dir, tiny_sst2_dir, key, value, expected):
    path = write_yaml(tmp_path, teacher_model_name_or_path=str(tiny_teacher_dir), task_name="sst2",
                      data_dir=str(tiny_sst2_dir), max_seq_length=32, use_cpu=True, **{key: value})
    message = refused(run_distill.main, [path], rf"Config file .*run.yaml' sets `{key}` to .*, but `{key}` takes "
                                                rf"{expected}")
    assert_gives_a_fix(message, f"Write e.g. `{key}: ")


# -- data files ------------------------------------------------------------------------------------------------------
def test_validation_file_without_the_label_column(tmp_path, tiny_teacher_dir):
    (tmp_path / "train.csv").write_text("sentence,label\nthe movie was great,1\na dull film,0\n")
    (tmp_path / "dev.csv").write_text("sentence\nthe movie was great\n")
    argv = teacher_argv(tmp_path, tiny_teacher_dir, tmp_path, "--train_file", str(tmp_path / "train.csv"),
                        "--validation_file", str(tmp_path / "dev.csv"), "--text_columns", "sentence")
    argv = [item for item in argv if item not in ("--task_name", "sst2", "--data_dir", str(tmp_path))]
    message = refused(run_glue_teacher.main, argv, r"`label_column` is 'label', but `validation_file` has no such "
                                                   r"column; its columns are \['sentence'\]")
    assert_gives_a_fix(message, "Pass `label_column` naming the label column, or add it to `validation_file`")


def test_text_columns_naming_the_label_column(tmp_path, tiny_teacher_dir):
    (tmp_path / "train.csv").write_text("sentence,label\nthe movie was great,1\na dull film,0\n")
    argv = distill_argv(tmp_path, tiny_teacher_dir, tmp_path, "--train_file", str(tmp_path / "train.csv"),
                        "--validation_file", str(tmp_path / "train.csv"), "--text_columns", "sentence,label")
    argv = [item for item in argv if item not in ("--task_name", "sst2", "--data_dir", str(tmp_path))]
    message = refused(run_distill.main, argv, r"`text_columns` is \['sentence', 'label'\] with `label_column` 'label'")
    assert_gives_a_fix(message, "Name distinct text columns, other than the label's")
