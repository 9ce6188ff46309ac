"""Methods are registered plug-ins: the registry's checks, a method written outside the package trained through
`DistillationTrainer` and found by `run_distill.py` (environment variable and entry point), and imports that flow
one way (every module imports first, on its own)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import NO_DROPOUT, REPO_ROOT, make_tiny_bert, make_tiny_dataset, make_tiny_tokenizer
from transformers import DataCollatorWithPadding

from hf_distill import DistillationConfig, DistillationMethod, DistillationTrainer, losses, register_method
from hf_distill.methods import (
    ENTRY_POINT_GROUP,
    MODULES_ENVIRONMENT_VARIABLE,
    get_method,
    load_method_plugins,
    registry,
)

PLUGINS_DIR = REPO_ROOT / "tests" / "plugins"


def test_registry_refuses_unknown_names_duplicates_and_bad_specs():
    with pytest.raises(ValueError, match=r"`method`='magic' is not a known distillation method.*'kd'.*register"):
        get_method("magic")

    class Duplicate(DistillationMethod):
        name = "kd"

    with pytest.raises(ValueError, match="A method named 'kd' is already registered"):
        register_method(Duplicate)

    class BadPreset(DistillationMethod):
        name = "bad_preset"
        presets = {"gamma": 1.0}

    with pytest.raises(ValueError, match=r"presets sets \['gamma'\]"):
        register_method(BadPreset)

    with pytest.raises(ValueError, match="takes a `DistillationMethod` subclass"):
        register_method(object)


def test_a_method_from_outside_the_package_trains_through_the_trainer(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS_DIR))
    import cosine_kd_method  # noqa: F401  (registers `cosine_kd`)

    data = make_tiny_dataset(16)
    args = DistillationConfig(output_dir=str(tmp_path), method="cosine_kd", max_steps=3, per_device_train_batch_size=8,
                              logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", seed=0)
    assert (args.alpha, args.temperature) == (0.5, 2.0)  # its presets
    with pytest.raises(ValueError, match="`beta`=1.0 applies only to `method` 'pkd' / 'peakd'"):
        DistillationConfig(output_dir=str(tmp_path), method="cosine_kd", beta=1.0, report_to=[])
    trainer = DistillationTrainer(
        model=make_tiny_bert(seed=1, num_hidden_layers=2, **NO_DROPOUT),
        teacher_model=make_tiny_bert(seed=0, **NO_DROPOUT), args=args, train_dataset=data,
        data_collator=DataCollatorWithPadding(make_tiny_tokenizer()),
    )
    batch = trainer.data_collator([data[i] for i in range(8)])
    trainer.model.eval()
    loss = trainer.compute_loss(trainer.model, batch)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        student, teacher = trainer.model(**inputs).logits, trainer.teacher(**inputs).logits
    cosine = 1 - torch.nn.functional.cosine_similarity(student, teacher, dim=-1).mean()
    expected = 0.5 * losses.kd_loss(student, teacher, 2.0) + 0.5 * losses.hard_label_loss(student, batch["labels"])
    torch.testing.assert_close(loss, expected + cosine)
    trainer.model.train()
    trainer.train()
    logged = [log for log in trainer.state.log_history if "loss" in log]
    assert {"loss_kd", "loss_ce", "loss_cosine"} <= set(logged[0])


def run_script(tmp_path, env_extra, teacher_dir, data_dir, method):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *env_extra.pop("PYTHONPATH", [])]),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env_extra}
    output = tmp_path / method
    command = [sys.executable, str(REPO_ROOT / "run_distill.py"), "--method", method, "--teacher_model_name_or_path",
               str(teacher_dir), "--task_name", "sst2", "--data_dir", str(data_dir), "--student_layers", "2",
               "--max_steps", "2", "--max_seq_length", "32", "--output_dir", str(output), "--report_to", "none",
               "--use_cpu", "true", "--disable_tqdm", "true"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return output


def test_run_distill_finds_a_plugin_module_named_in_the_environment(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    env = {"PYTHONPATH": [str(PLUGINS_DIR)], MODULES_ENVIRONMENT_VARIABLE: "cosine_kd_method"}
    output = run_script(tmp_path, env, tiny_teacher_dir, tiny_sst2_dir, "cosine_kd")
    effective = json.loads((output / "distillation_config.json").read_text())
    assert (effective["method"], effective["alpha"], effective["temperature"]) == ("cosine_kd", 0.5, 2.0)
    assert "one minus the cosine similarity" in (output / "README.md").read_text()


def test_run_distill_finds_a_plugin_of_an_installed_entry_point(tmp_path, tiny_teacher_dir, tiny_sst2_dir):
    """An installed package declares `[hf_distill.methods]` in its entry points; here its dist-info is written by
    hand on PYTHONPATH, which is all `importlib.metadata` reads."""
    site = tmp_path / "site"
    dist_info = site / "cosine_kd_plugin-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: cosine-kd-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ncosine_kd = cosine_kd_method\n")
    output = run_script(tmp_path, {"PYTHONPATH": [str(site), str(PLUGINS_DIR)]}, tiny_teacher_dir, tiny_sst2_dir,
                        "cosine_kd")
    assert json.loads((output / "distillation_config.json").read_text())["method"] == "cosine_kd"


def test_a_plugin_module_that_cannot_be_imported_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(MODULES_ENVIRONMENT_VARIABLE, "no_such_plugin_module")
    with pytest.raises(ValueError, match=rf"`{MODULES_ENVIRONMENT_VARIABLE}` names 'no_such_plugin_module'"):
        load_method_plugins()
    (tmp_path / "failing_plugin_module.py").write_text("raise RuntimeError('needs a GPU')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(MODULES_ENVIRONMENT_VARIABLE, "failing_plugin_module")
    with pytest.raises(ValueError, match=r"'failing_plugin_module', which fails to import \(RuntimeError: needs"):
        load_method_plugins()


IMPORT_EACH_MODULE = textwrap.dedent("""
    import importlib, pkgutil, sys
    import hf_distill
    names = sorted(m.name for m in pkgutil.walk_packages(hf_distill.__path__, "hf_distill."))
    for name in names if sys.argv[1] == "sorted" else reversed(names):
        for loaded in [m for m in sys.modules if m == "hf_distill" or m.startswith("hf_distill.")]:
            del sys.modules[loaded]  # as in a fresh interpreter, as far as this package goes
        importlib.import_module(name)
    print(len(names))
""")


@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_every_module_imports_first_and_on_its_own(order):
    """Each module of the package imported with no other of its modules loaded: a module that only imports after
    another one (an import cycle resolved by the order) fails here. (Third-party libraries stay loaded between
    modules, which only saves time: they cannot take part in a cycle of ours.)"""
    result = subprocess.run([sys.executable, "-c", IMPORT_EACH_MODULE, order], cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert int(result.stdout.split()[-1]) > 30


@pytest.fixture
def restored_registry():
    """Methods registered by a test are taken out of the registry again when it ends."""
    methods, names = dict(registry._METHODS), list(registry.METHOD_NAMES)
    yield
    registry._METHODS.clear()
    registry._METHODS.update(methods)
    registry.METHOD_NAMES[:] = names


def test_a_plugin_without_presets_gets_kd_defaults_and_unset_settings_are_named(tmp_path, restored_registry):
    class Bare(DistillationMethod):
        name = "bare_kd"

    register_method(Bare)
    args = DistillationConfig(output_dir=str(tmp_path), method="bare_kd", report_to=[])
    assert (args.alpha, args.temperature) == (0.7, 10.0)  # the base class's loss is KD, and so are its presets

    class NoAlpha(DistillationMethod):
        name = "no_alpha"
        presets = {"temperature": 2.0}

    register_method(NoAlpha)
    with pytest.raises(ValueError, match="`alpha` is unset and method 'no_alpha' has no preset"):
        DistillationConfig(output_dir=str(tmp_path), method="no_alpha", report_to=[])


def test_a_broken_entry_point_is_named(tmp_path, monkeypatch):
    dist_info = tmp_path / "broken_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nbroken = no_such_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"entry point 'broken' of broken-plugin \(no_such_module_anywhere\)"):
        load_method_plugins()
