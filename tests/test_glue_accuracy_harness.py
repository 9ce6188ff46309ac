"""The accuracy benchmark's search: equal budgets, the defaults inside each grid, and the selection rule."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "glue_accuracy.py"


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("glue_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_searched_method_gets_the_same_number_of_settings(harness):
    assert len({len(grid) for grid in harness.SEARCH_SPACE.values()}) == 1


def test_each_grid_holds_the_default_setting_so_a_search_reuses_its_runs(harness, tmp_path):
    for method, grid in harness.SEARCH_SPACE.items():
        default = harness.default_setting(method)
        assert default in grid, method
        assert harness.cell_dir(tmp_path, method, default) == tmp_path / method
    other = harness.SEARCH_SPACE["kd"][0]
    assert harness.cell_dir(tmp_path, "kd", other) == tmp_path / "kd" / "temperature2-alpha0.2"


def test_search_picks_the_best_dev_score_first_on_ties_and_skips_failures(harness, monkeypatch, tmp_path):
    scores = {2e-5: None, 3e-5: 0.80, 5e-5: 0.83, 1e-4: 0.83}  # None: the cell failed

    def fake_cell(args, method, task, settings, task_cache, seed, extra, setting):
        accuracy = scores[setting["learning_rate"]]
        return {"status": "failed"} if accuracy is None else {"status": "ok", "results": {"eval_accuracy": accuracy}}

    monkeypatch.setattr(harness, "method_cell", fake_cell)
    raw_cells: dict = {}
    best, trials = harness.search_setting(None, "finetune", "sst2", {}, tmp_path, 42, {}, raw_cells)
    assert best == {"learning_rate": 5e-5}
    assert [trial["score"] for trial in trials] == [None, *map(pytest.approx, (80.0, 83.0, 83.0))]
    assert len(raw_cells) == 4

    scores.update({3e-5: None, 5e-5: None, 1e-4: None})
    assert harness.search_setting(None, "finetune", "sst2", {}, tmp_path, 42, {}, {})[0] == {}


def test_search_of_a_method_not_run_is_refused(harness):
    with pytest.raises(SystemExit, match="--search names \\['pkd'\\]"):
        harness.parse_args(["--methods", "kd", "--search", "kd,pkd"])


def test_options_that_change_the_cells_get_their_own_cache_folder(harness):
    default = harness.parse_args(["--quick", "--max_train_samples", "4000", "--epochs", "3"]).run_name
    assert default == "quick-n4000-e3"
    names = {
        harness.parse_args(["--quick", "--max_train_samples", "4000", "--epochs", "3", *extra]).run_name
        for extra in (["--teacher_base", "bert-base-uncased"], ["--tang_p_pos", "0.1"], ["--from_hub"])
    }
    assert len(names) == 3 and default not in names


def test_git_state_flags_code_changes_but_not_benchmark_results(harness, tmp_path):
    def git(*cmd):
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "speed.md").write_text("a table\n")
    commit, dirty = harness.git_state(tmp_path)
    assert len(commit) == 40 and not dirty
    (tmp_path / "code.py").write_text("x = 2\n")
    assert harness.git_state(tmp_path)[1]


def test_jobs_run_methods_side_by_side_with_results_in_the_calls_order(harness):
    """`--jobs`: the calls overlap (both are running before either returns), and the results keep the calls' order
    whichever finishes first."""
    import threading

    both_started = threading.Barrier(2, timeout=10)  # a serial run would wait here forever (BrokenBarrierError)

    def call(name, delay):
        def run():
            both_started.wait()
            threading.Event().wait(delay)
            return name
        return run

    assert harness.run_concurrently([call("slow", 0.2), call("fast", 0.0)], jobs=2) == ["slow", "fast"]
    assert harness.run_concurrently([lambda: 1, lambda: 2], jobs=1) == [1, 2]


def test_jobs_split_the_cores_between_concurrent_cells(harness, monkeypatch):
    monkeypatch.setattr(harness.os, "cpu_count", lambda: 16)
    harness.set_cell_threads(7)
    assert harness.CELL_THREADS == 2
    harness.set_cell_threads(1)
    assert harness.CELL_THREADS is None
