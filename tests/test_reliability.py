"""Reliability: a resumed run ends with the same student as an uninterrupted one, an interrupted run leaves no
finished-looking output, result files are written all-or-nothing, and a NaN loss stops training with its cause."""

import json
import os
import sys

import pytest
import torch
from conftest import REPO_ROOT, make_tiny_bert, make_tiny_dataset, make_tiny_tokenizer
from transformers import DataCollatorWithPadding, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from hf_distill import DistillationConfig, DistillationTrainer, cli, guards, pipeline
from hf_distill import io as hf_io
from hf_distill.students import build_bilstm_student, build_sps_student

sys.path.insert(0, str(REPO_ROOT))
import run_distill  # noqa: E402

MAX_STEPS, SAVE_STEPS = 6, 3  # 32 rows in batches of 8: checkpoint 3 is mid-epoch, and the run crosses an epoch


def make_student(kind: str, teacher):
    """A fresh student, identical on every call; BERT students keep dropout so that resuming must restore RNGs."""
    torch.manual_seed(1)
    if kind == "plain":
        return make_tiny_bert(seed=1, num_hidden_layers=2)
    if kind == "sps":
        return build_sps_student(teacher, num_layers=2)
    return build_bilstm_student(
        make_tiny_tokenizer(), num_labels=2, is_pair=False, embedding_dim=16, hidden_size=16, fc_hidden_size=16
    )


def make_trainer(output_dir, method: str, student_kind: str, callbacks=(), **config_kwargs) -> DistillationTrainer:
    settings = dict(
        output_dir=str(output_dir),
        method=method,
        max_steps=MAX_STEPS,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        save_strategy="steps",
        save_steps=SAVE_STEPS,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    settings.update(config_kwargs)
    teacher = make_tiny_bert(seed=0)
    return DistillationTrainer(
        model=make_student(student_kind, teacher),
        teacher_model=teacher,
        args=DistillationConfig(**settings),
        train_dataset=make_tiny_dataset(),
        data_collator=DataCollatorWithPadding(make_tiny_tokenizer()),
        callbacks=list(callbacks),
    )


def assert_same_weights(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=0, atol=1e-6, msg=name)


def max_difference(first: dict, second: dict) -> float:
    return max((first[name] - second[name]).abs().max().item() for name in first)


class InterruptAt(TrainerCallback):
    """Raises KeyboardInterrupt (what Ctrl-C raises) at the end of an optimizer step, as if the run died there."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"interrupted at step {self.step}")


# -- resume ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method, student_kind",
    [("kd", "plain"), ("pkd", "plain"), ("bilstm", "bilstm"), ("kd", "sps"), ("peakd", "sps")],
)
def test_resuming_mid_epoch_gives_the_uninterrupted_student(tmp_path, method, student_kind):
    uninterrupted = make_trainer(tmp_path / "full", method, student_kind)
    uninterrupted.train()
    expected = uninterrupted.model.state_dict()

    checkpoint = tmp_path / "full" / f"checkpoint-{SAVE_STEPS}"
    resumed = make_trainer(tmp_path / "resumed", method, student_kind)
    resumed.train(resume_from_checkpoint=str(checkpoint))

    assert resumed.state.global_step == MAX_STEPS
    assert_same_weights(resumed.model.state_dict(), expected)
    # The resumed run did train: its weights moved away from the checkpoint's.
    at_checkpoint = make_trainer(tmp_path / "probe", method, student_kind)
    at_checkpoint._load_from_checkpoint(str(checkpoint))
    assert max_difference(at_checkpoint.model.state_dict(), expected) > 1e-4


def test_resume_comparison_detects_a_lost_optimizer_state(tmp_path):
    """The equality above is not vacuous: resuming without Adam's moments ends elsewhere."""
    uninterrupted = make_trainer(tmp_path / "full", "pkd", "plain")
    uninterrupted.train()
    checkpoint = tmp_path / "full" / f"checkpoint-{SAVE_STEPS}"
    (checkpoint / "optimizer.pt").unlink()
    resumed = make_trainer(tmp_path / "resumed", "pkd", "plain")
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert max_difference(resumed.model.state_dict(), uninterrupted.model.state_dict()) > 1e-4


def test_a_run_that_dies_resumes_from_its_last_checkpoint(tmp_path):
    uninterrupted = make_trainer(tmp_path / "full", "pkd", "plain", save_steps=2)
    uninterrupted.train()

    crashing = make_trainer(tmp_path / "crash", "pkd", "plain", save_steps=2, callbacks=[InterruptAt(5)])
    with pytest.raises(KeyboardInterrupt):
        crashing.train()
    last = get_last_checkpoint(str(tmp_path / "crash"))
    assert os.path.basename(last) == "checkpoint-4"

    resumed = make_trainer(tmp_path / "crash", "pkd", "plain", save_steps=2)
    resumed.train(resume_from_checkpoint=last)
    assert_same_weights(resumed.model.state_dict(), uninterrupted.model.state_dict())


# -- the scripts: interrupted, then resumed ----------------------------------------------------------------------
def distill_argv(output_dir, teacher_dir, data_dir, *extra):
    return [
        "--method", "pkd", "--teacher_model_name_or_path", str(teacher_dir), "--task_name", "sst2",
        "--data_dir", str(data_dir), "--student_layers", "2", "--max_steps", "4", "--save_steps", "2",
        "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--max_seq_length", "32",
        "--output_dir", str(output_dir), "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true", *extra,
    ]


def test_interrupted_script_leaves_no_finished_output_and_resumes(tmp_path, monkeypatch, tiny_teacher_dir,
                                                                  tiny_sst2_dir):
    full_dir, crash_dir = tmp_path / "full", tmp_path / "crash"
    run_distill.main(distill_argv(full_dir, tiny_teacher_dir, tiny_sst2_dir))

    class InterruptedTrainer(DistillationTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(InterruptAt(3))

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "DistillationTrainer", InterruptedTrainer)  # the trainer class the script's run uses
        with pytest.raises(KeyboardInterrupt):
            run_distill.main(distill_argv(crash_dir, tiny_teacher_dir, tiny_sst2_dir))
    left = {path.name for path in crash_dir.iterdir()}
    assert "checkpoint-2" in left
    assert not left & {"all_results.json", "summary.md", "model.safetensors", "config.json"}, left

    # No finished run there, so the same command with --resume_from_checkpoint is accepted.
    resume = ["--resume_from_checkpoint", str(crash_dir / "checkpoint-2")]
    metrics = run_distill.main(distill_argv(crash_dir, tiny_teacher_dir, tiny_sst2_dir, *resume))
    assert metrics["eval_loss"] == pytest.approx(json.loads((full_dir / "all_results.json").read_text())["eval_loss"])
    assert (crash_dir / "model.safetensors").read_bytes() == (full_dir / "model.safetensors").read_bytes()
    assert not (crash_dir / guards.STAGING_DIR_NAME).exists()


def test_a_run_that_fails_after_training_leaves_no_marker(tmp_path, monkeypatch, tiny_teacher_dir, tiny_sst2_dir):
    output = tmp_path / "out"

    def failing_evaluate(self, *args, **kwargs):
        raise RuntimeError("evaluation failed")

    with monkeypatch.context() as patch:
        patch.setattr(DistillationTrainer, "evaluate", failing_evaluate)
        with pytest.raises(RuntimeError, match="evaluation failed"):
            run_distill.main(distill_argv(output, tiny_teacher_dir, tiny_sst2_dir))
    left = {path.name for path in output.iterdir()}
    # Trained, saved, and the train metrics written as run_glue.py does; not finished.
    assert {"model.safetensors", "train_results.json", "all_results.json"} <= left, left
    assert not left & {guards.COMPLETION_MARKER, "eval_results.json", "summary.md"}, left
    cli.check_output_dir(str(output), overwrite=False)

    metrics = run_distill.main(distill_argv(output, tiny_teacher_dir, tiny_sst2_dir))  # accepted: not finished
    marker = output / guards.COMPLETION_MARKER
    assert json.loads(marker.read_text())["script"] == "run_distill.py"
    assert all(path.stat().st_mtime_ns <= marker.stat().st_mtime_ns for path in output.iterdir())  # written last
    saved = json.loads((output / "all_results.json").read_text())
    assert saved["eval_loss"] == pytest.approx(metrics["eval_loss"]) and "teacher_eval_loss" in saved
    assert saved["train_samples"] == metrics["train_samples"] and "train_loss" in saved
    with pytest.raises(ValueError, match=r"already holds a finished run \(run_complete.json\)"):
        cli.check_output_dir(str(output), overwrite=False)


def test_check_output_dir_reads_the_marker_not_all_results(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    trainer = make_trainer(output, "kd", "plain", max_steps=1, save_strategy="no")
    trainer.save_metrics("train", {"train_loss": 0.5})  # what the scripts write right after training
    assert (output / "all_results.json").is_file()
    cli.check_output_dir(str(output), overwrite=False)
    (output / guards.COMPLETION_MARKER).write_text("{}")
    with pytest.raises(ValueError, match=r"`output_dir` .* already holds a finished run"):
        cli.check_output_dir(str(output), overwrite=False)
    cli.check_output_dir(str(output), overwrite=True)
    # A folder finished before the marker existed holds all_results.json alone: still a finished run.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "all_results.json").write_text("{}")
    with pytest.raises(ValueError, match=r"already holds a finished run \(all_results.json\)"):
        cli.check_output_dir(str(legacy), overwrite=False)


# -- atomic outputs -------------------------------------------------------------------------------------------------
class FailingHandle:
    """A file handle that writes half of what it is given, then fails like a full disk or a Ctrl-C."""

    def __init__(self, handle, error: BaseException):
        self.handle, self.error = handle, error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()

    def write(self, text: str) -> None:
        self.handle.write(text[: len(text) // 2])
        self.handle.flush()
        raise self.error


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
@pytest.mark.parametrize("existed", [False, True])
def test_failed_result_writes_leave_no_file_and_keep_the_old_one(tmp_path, monkeypatch, error, existed):
    target = tmp_path / "all_results.json"
    if existed:
        target.write_text('{"eval_accuracy": 0.9}')
    real_fdopen = os.fdopen
    monkeypatch.setattr(
        hf_io.os, "fdopen", lambda fd, mode, **kwargs: FailingHandle(real_fdopen(fd, mode, **kwargs), error)
    )
    with pytest.raises(type(error)):
        hf_io.write_json_atomic(target, {"eval_accuracy": 0.5, "summary": "x" * 1000})
    with pytest.raises(type(error)):
        hf_io.write_text_atomic(tmp_path / "summary.md", "| model |\n" * 100)
    assert sorted(path.name for path in tmp_path.iterdir()) == (["all_results.json"] if existed else [])
    if existed:
        assert json.loads(target.read_text()) == {"eval_accuracy": 0.9}


def test_result_files_are_readable_like_any_file(tmp_path):
    """The renamed result file gets `open()`'s permissions (a `mkstemp` file would be private, 0600)."""
    hf_io.write_json_atomic(tmp_path / "distillation_config.json", {"method": "kd"})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "distillation_config.json").stat().st_mode & 0o777 == 0o666 & ~mask


def finished_run(tmp_path):
    """An output_dir holding a finished run: a model, its results, its completion marker."""
    output = tmp_path / "out"
    output.mkdir()
    (output / "model.safetensors").write_bytes(b"old weights")
    (output / "all_results.json").write_text('{"eval_loss_pkd": 1.0}')
    (output / "train_results.json").write_text("{}")
    (output / guards.COMPLETION_MARKER).write_text("{}")
    return output


def test_final_save_replaces_the_model_and_clears_the_marker(tmp_path):
    output = finished_run(tmp_path)
    trainer = make_trainer(output, "kd", "plain", max_steps=1, save_strategy="no")
    guards.save_final_model(trainer)
    saved = {path.name for path in output.iterdir()}
    assert {"model.safetensors", "config.json", "training_args.bin"} <= saved
    assert guards.COMPLETION_MARKER not in saved and guards.STAGING_DIR_NAME not in saved
    assert not saved & set(guards.RESULT_FILES)  # the old run's keys never merge into the new all_results.json
    reloaded = type(trainer.model).from_pretrained(output)
    assert_same_weights(reloaded.state_dict(), trainer.model.state_dict())


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_save_that_fails_midway_leaves_the_old_model_and_no_marker(tmp_path, monkeypatch, error):
    output = finished_run(tmp_path)
    trainer = make_trainer(output, "kd", "plain", max_steps=1, save_strategy="no")

    def failing_save(output_dir=None, state_dict=None):
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "model.safetensors"), "wb") as handle:
            handle.write(b"half")
        raise error

    monkeypatch.setattr(trainer, "_save", failing_save)
    with pytest.raises(type(error)):
        guards.save_final_model(trainer)
    assert (output / "model.safetensors").read_bytes() == b"old weights"
    assert not (output / guards.COMPLETION_MARKER).exists()
    cli.check_output_dir(str(output), overwrite=False)  # no longer a finished run: resuming into it is allowed

    monkeypatch.undo()
    guards.save_final_model(trainer)  # the next save clears what the failed one left
    assert not (output / guards.STAGING_DIR_NAME).exists()
    assert (output / "model.safetensors").read_bytes() != b"old weights"


# -- numerical guard ------------------------------------------------------------------------------------------------
def poison_logits_from_call(model, first_bad_call: int) -> None:
    """Make the student's classifier return NaN from its `first_bad_call`-th training forward on."""
    calls = {"count": 0}

    def hook(module, inputs, output):
        if not module.training:
            return output
        calls["count"] += 1
        return output * float("nan") if calls["count"] >= first_bad_call else output

    model.classifier.register_forward_hook(hook)


@pytest.mark.parametrize("method, terms", [("kd", ("`loss_kd` = nan", "`loss_ce` = nan")),
                                           ("bilstm", ("`loss_mse` = nan",))])
def test_nan_loss_stops_training_naming_the_terms_and_the_step(tmp_path, method, terms):
    trainer = make_trainer(tmp_path, method, "plain", save_strategy="no")
    poison_logits_from_call(trainer.model, first_bad_call=3)
    weights_before_step_3 = {}

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                weights_before_step_3.update({k: v.clone() for k, v in trainer.model.state_dict().items()})

    trainer.add_callback(Snapshot())
    with pytest.raises(FloatingPointError, match=r"training loss is nan at step 3") as raised:
        trainer.train()
    message = str(raised.value)
    assert all(term in message for term in terms), message
    assert "student logits" in message and "learning_rate" in message
    # Stopped before the optimizer step: the NaN never reached the weights.
    assert_same_weights(trainer.model.state_dict(), weights_before_step_3)


def test_finite_loss_check_names_only_the_bad_term():
    terms = {"loss_kd": (0.7, torch.tensor(1.5)), "loss_pkd": (500.0, torch.tensor(float("inf")))}
    with pytest.raises(FloatingPointError, match=r"is inf at step 12: `loss_pkd` = inf \(weight 500.0\)\.") as raised:
        guards.check_finite_loss(torch.tensor(float("inf")), terms, 12)
    assert "loss_kd" not in str(raised.value)
    guards.check_finite_loss(torch.tensor(2.0), terms | {"loss_pkd": (500.0, torch.tensor(0.1))}, 12)


def test_evaluation_reports_a_nan_loss_without_raising(tmp_path):
    trainer = make_trainer(tmp_path, "kd", "plain", save_strategy="no")
    trainer.model.classifier.register_forward_hook(lambda module, inputs, output: output * float("nan"))
    metrics = trainer.evaluate(make_tiny_dataset(8))
    assert metrics["eval_loss"] != metrics["eval_loss"]  # NaN
