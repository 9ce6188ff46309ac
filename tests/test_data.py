"""The GLUE data layer: three sources (Hub, GLUE TSV folder, csv/json files) give the same columns and label ids."""

import csv
import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from hf_distill.data import GLUE_TASKS, get_task, load_task_dataset, tokenize_dataset

N_ROWS = 6  # rows taken from each real file: enough for both labels, small enough to stay fast

# Hub-style rows from one line of the original GLUE files (already split on tabs).
TO_HUB_ROW = {
    "sst2": lambda row: {"sentence": row[0], "label": int(row[1])},
    "mrpc": lambda row: {"sentence1": row[3], "sentence2": row[4], "label": int(row[0])},
    "rte": lambda row: {
        "sentence1": row[1],
        "sentence2": row[2],
        "label": ("entailment", "not_entailment").index(row[3]),
    },
}
GLUE_FOLDERS = {"sst2": "SST-2", "mrpc": "MRPC", "rte": "RTE"}


def hub_features(task_name: str) -> Features:
    """The features of `nyu-mll/glue` (idx is int32 there; the loader widens it to int64)."""
    task = GLUE_TASKS[task_name]
    return Features(
        {
            **{column: Value("string") for column in task.text_columns},
            "label": ClassLabel(names=list(task.label_names)),
            "idx": Value("int32"),
        }
    )


@pytest.fixture
def subset(glue_dir, tmp_path):
    """Make `(task_name) -> (folder, hub_rows)`: the first rows of the real train/dev files copied byte for byte
    into a GLUE-layout folder, and the same rows as Hub-style dicts per split."""

    def make(task_name: str) -> tuple[Path, dict[str, list[dict]]]:
        folder = tmp_path / GLUE_FOLDERS[task_name]
        folder.mkdir(exist_ok=True)
        hub_rows = {}
        for file_name, split in (("train.tsv", "train"), ("dev.tsv", "validation")):
            lines = (glue_dir / GLUE_FOLDERS[task_name] / file_name).read_bytes().split(b"\n")[: N_ROWS + 1]
            (folder / file_name).write_bytes(b"\n".join(lines) + b"\n")
            rows = [line.decode("utf-8").split("\t") for line in lines[1:]]
            hub_rows[split] = [TO_HUB_ROW[task_name](row) for row in rows]
        return folder, hub_rows

    return make


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write dict rows as csv (standard quoting), tsv (never quoted), jsonl or a json array, by suffix."""
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", newline="", encoding="utf-8") as handle:
            quoting = csv.QUOTE_NONE if path.suffix == ".tsv" else csv.QUOTE_MINIMAL
            writer = csv.DictWriter(
                handle,
                fieldnames=list(rows[0]),
                delimiter="\t" if path.suffix == ".tsv" else ",",
                quoting=quoting,
                quotechar=None if path.suffix == ".tsv" else '"',
            )
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def as_rows(dataset: DatasetDict) -> dict[str, list[dict]]:
    return {split: dataset[split].to_list() for split in dataset}


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl"])
@pytest.mark.parametrize("task_name", ["sst2", "mrpc", "rte"])
def test_tsv_folder_and_files_agree(subset, tmp_path, task_name, suffix):
    folder, hub_rows = subset(task_name)
    from_tsv, task_tsv = load_task_dataset(task_name, data_dir=folder)
    train = write_rows(tmp_path / f"train{suffix}", hub_rows["train"])
    dev = write_rows(tmp_path / f"dev{suffix}", hub_rows["validation"])
    from_files, task_files = load_task_dataset(
        task_name, train_file=train, validation_file=dev, cache_dir=str(tmp_path / "cache")
    )

    assert task_tsv == task_files == GLUE_TASKS[task_name]
    expected_features = Features({**hub_features(task_name), "idx": Value("int64")})
    for dataset in (from_tsv, from_files):
        assert list(dataset) == ["train", "validation"]
        for split in dataset.values():
            assert split.features == expected_features
            assert split.column_names == [*GLUE_TASKS[task_name].text_columns, "label", "idx"]
    assert as_rows(from_tsv) == as_rows(from_files)
    # Labels are the Hub ids (rows computed independently above) and idx the row index.
    for split in ("train", "validation"):
        assert from_tsv[split]["label"] == [row["label"] for row in hub_rows[split]]
        assert from_tsv[split]["idx"] == list(range(N_ROWS))
    assert len(set(from_tsv["train"]["label"]) | set(from_tsv["validation"]["label"])) == 2


@pytest.fixture
def fake_hub(monkeypatch):
    """Serve `datasets.load_dataset(name, config)` from hand-built Hub-like datasets (the Hub is out of reach)."""
    served = {}

    def load_dataset(path, name=None, **kwargs):
        if (path, name) not in served:
            raise AssertionError(f"unexpected Hub request {path!r}/{name!r}")
        return served[path, name]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return served


def hub_dataset(task_name: str, rows_per_split: dict[str, list[dict]]) -> DatasetDict:
    return DatasetDict(
        {
            split: Dataset.from_list(
                [{**row, "idx": i} for i, row in enumerate(rows)], features=hub_features(task_name)
            )
            for split, rows in rows_per_split.items()
        }
    )


@pytest.mark.parametrize("task_name", ["sst2", "mrpc", "rte"])
def test_hub_and_tsv_folder_agree(subset, fake_hub, task_name):
    folder, hub_rows = subset(task_name)
    fake_hub["nyu-mll/glue", task_name] = hub_dataset(task_name, {**hub_rows, "test": hub_rows["validation"][:1]})
    from_hub, task_hub = load_task_dataset(task_name)
    from_tsv, task_tsv = load_task_dataset(task_name, data_dir=folder)
    assert task_hub == task_tsv
    assert list(from_hub) == ["train", "validation"]
    for split in from_hub:
        assert from_hub[split].features == from_tsv[split].features
        assert from_hub[split]["idx"] == list(range(N_ROWS))
    assert as_rows(from_hub) == as_rows(from_tsv)


def test_hub_mnli_uses_validation_matched_and_hub_label_order(fake_hub):
    rows = [
        {"premise": "a man", "hypothesis": "a person", "label": 0},
        {"premise": "a cat", "hypothesis": "a dog", "label": 2},
    ]
    fake_hub["nyu-mll/glue", "mnli"] = hub_dataset(
        "mnli", {"train": rows, "validation_matched": rows[::-1], "validation_mismatched": rows[:1]}
    )
    dataset, task = load_task_dataset("MNLI")
    assert task.label_names == ("entailment", "neutral", "contradiction")
    assert dataset["validation"]["premise"] == ["a cat", "a man"]
    assert dataset["validation"]["label"] == [2, 0]


def test_hub_label_order_mismatch_is_an_error(fake_hub):
    features = hub_features("rte")
    features["label"] = ClassLabel(names=["not_entailment", "entailment"])
    split = Dataset.from_list([{"sentence1": "a", "sentence2": "b", "label": 0, "idx": 0}], features=features)
    fake_hub["nyu-mll/glue", "rte"] = DatasetDict(train=split, validation=split)
    with pytest.raises(ValueError, match=r"expects \['entailment', 'not_entailment'\]"):
        load_task_dataset("rte")


def test_glue_root_folder_and_mrpc_bom(glue_dir):
    assert (glue_dir / "MRPC" / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
    dataset, task = load_task_dataset("mrpc", data_dir=glue_dir, max_train_samples=2, max_eval_samples=2)
    assert task.text_columns == ("sentence1", "sentence2")
    first = dataset["train"][0]
    assert first["sentence1"] == (
        'Amrozi accused his brother, whom he called "the witness", of deliberately distorting his evidence.'
    )
    assert first["label"] == 1 and dataset["train"][1]["label"] == 0


def test_rte_string_labels_and_unbalanced_quotes(tmp_path):
    folder = tmp_path / "RTE"
    folder.mkdir()
    body = (
        "index\tsentence1\tsentence2\tlabel\n"
        '0\tHe said "yes.\tHe agreed.\tentailment\n'
        '1\t"Quoted" start\tends with a quote"\tnot_entailment\n'
    )
    (folder / "train.tsv").write_text(body, encoding="utf-8")
    (folder / "dev.tsv").write_text(body, encoding="utf-8")
    dataset, _ = load_task_dataset("rte", data_dir=folder)
    assert dataset["train"]["sentence1"] == ['He said "yes.', '"Quoted" start']
    assert dataset["train"]["sentence2"] == ["He agreed.", 'ends with a quote"']
    assert dataset["train"]["label"] == [0, 1]


def test_cola_headerless_and_stsb_scores(tmp_path):
    cola = tmp_path / "CoLA"
    cola.mkdir()
    body = "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\ngj04\t0\t*\tThe more we study verbs.\n"
    for name in ("train.tsv", "dev.tsv"):
        (cola / name).write_text(body, encoding="utf-8")
    dataset, task = load_task_dataset("CoLA", data_dir=tmp_path)
    assert task.main_metric == "matthews_correlation"
    assert dataset["train"]["sentence"][1] == "The more we study verbs."
    assert dataset["train"]["label"] == [1, 0]

    stsb = tmp_path / "STS-B"
    stsb.mkdir()
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    row = "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tA plane takes off.\t5.000\n"
    for name in ("train.tsv", "dev.tsv"):
        (stsb / name).write_text(header + row + row.replace("5.000", "3.800"), encoding="utf-8")
    dataset, task = load_task_dataset("sts-b", data_dir=stsb)
    assert task.is_regression and task.num_labels == 1 and task.main_metric == "pearson"
    assert dataset["validation"].features["label"] == Value("float32")
    assert dataset["validation"]["label"] == pytest.approx([5.0, 3.8])


@pytest.mark.parametrize(
    ("task_name", "train_rows", "dev_rows", "dev_positive", "dev_negative"),
    [("SST-2", 67349, 872, 444, 428), ("MRPC", 3668, 408, 279, 129), ("RTE", 2490, 277, 146, 131)],
)
def test_full_real_files(glue_dir, task_name, train_rows, dev_rows, dev_positive, dev_negative):
    dataset, task = load_task_dataset(task_name, data_dir=glue_dir / task_name)
    assert (len(dataset["train"]), len(dataset["validation"])) == (train_rows, dev_rows)
    assert dataset["train"]["idx"][-1] == train_rows - 1
    counts = Counter(dataset["validation"]["label"])
    # "positive" is the label sst2 calls positive, mrpc equivalent, rte entailment (id 0 for rte).
    positive = {"sst2": 1, "mrpc": 1, "rte": 0}[task.name]
    assert (counts[positive], counts[1 - positive]) == (dev_positive, dev_negative)


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("sst2", "sst2"),
        ("SST-2", "sst2"),
        ("sst-2", "sst2"),
        ("STS-B", "stsb"),
        ("MNLI", "mnli"),
        ("CoLA", "cola"),
        ("qnli", "qnli"),
        ("QQP", "qqp"),
        ("wnli", "wnli"),
        ("Rte", "rte"),
        ("mrpc", "mrpc"),
    ],
)
def test_task_name_spellings(spelling, name):
    assert get_task(spelling) is GLUE_TASKS[name]


def test_task_specs():
    assert set(GLUE_TASKS) == {"sst2", "mrpc", "rte", "cola", "stsb", "qqp", "mnli", "qnli", "wnli"}
    assert GLUE_TASKS["mrpc"].label_names == ("not_equivalent", "equivalent")
    assert GLUE_TASKS["wnli"].label_names == ("not_entailment", "entailment")
    assert GLUE_TASKS["qqp"].metric_names == ("f1", "accuracy") and GLUE_TASKS["qqp"].main_metric == "f1"
    assert GLUE_TASKS["stsb"].metric_names == ("pearson", "spearmanr")
    assert GLUE_TASKS["mnli"].validation_split == "validation_matched" and GLUE_TASKS["mnli"].num_labels == 3
    assert GLUE_TASKS["qnli"].text_columns == ("question", "sentence") and GLUE_TASKS["qnli"].is_pair
    assert not GLUE_TASKS["sst2"].is_pair and GLUE_TASKS["sst2"].main_metric == "accuracy"


def test_max_samples_take_the_first_rows(tiny_sst2_dir):
    dataset, _ = load_task_dataset("sst2", data_dir=tiny_sst2_dir, max_train_samples=3, max_eval_samples=100)
    assert dataset["train"]["idx"] == [0, 1, 2]
    assert dataset["train"]["sentence"][0] == "the movie was great fun "  # trailing space of SST-2 kept
    assert len(dataset["validation"]) == 8
    with pytest.raises(ValueError, match="`max_train_samples` is 0"):
        load_task_dataset("sst2", data_dir=tiny_sst2_dir, max_train_samples=0)


def test_custom_files_without_task(tmp_path):
    rows = [
        {"text": "good", "stars": 5},
        {"text": "bad", "stars": 1},
        {"text": "ok", "stars": 3},
        {"text": "great", "stars": 5},
    ]
    train = write_rows(tmp_path / "train.csv", rows)
    dev = write_rows(tmp_path / "dev.csv", rows[:2])
    dataset, task = load_task_dataset(
        train_file=train,
        validation_file=dev,
        text_columns=["text"],
        label_column="stars",
        cache_dir=str(tmp_path / "cache"),
    )
    assert task.name == "custom" and task.label_names == ("1", "3", "5") and task.text_columns == ("text",)
    # Raw label 5 has name "5" and id 2: custom labels are looked up by name, never taken as ids.
    assert dataset["train"]["label"] == [2, 0, 1, 2]
    assert dataset["validation"].features["label"].names == ["1", "3", "5"]

    scores = write_rows(tmp_path / "scores.jsonl", [{"a": "x", "b": "y", "y": 0.5}, {"a": "z", "b": "w", "y": 4.0}])
    dataset, task = load_task_dataset(
        train_file=scores,
        validation_file=scores,
        text_columns=["a", "b"],
        label_column="y",
        cache_dir=str(tmp_path / "cache"),
    )
    assert task.is_regression and task.is_pair and task.metric_names == ("pearson", "spearmanr")
    assert dataset["train"]["label"] == [0.5, 4.0]


def test_custom_files_with_task_map_names_and_keep_ids(tmp_path):
    rows = [{"premise": "p1", "hyp": "h1", "y": "not_entailment"}, {"premise": "p2", "hyp": "h2", "y": "0"}]
    train = write_rows(tmp_path / "train.tsv", rows)
    dataset, task = load_task_dataset(
        "rte",
        train_file=train,
        validation_file=train,
        text_columns=["premise", "hyp"],
        label_column="y",
        cache_dir=str(tmp_path / "cache"),
    )
    assert dataset["train"].column_names == ["sentence1", "sentence2", "label", "idx"]
    assert dataset["train"]["sentence2"] == ["h1", "h2"] and dataset["train"]["label"] == [1, 0]


def test_held_out_validation_keeps_train_row_indices(tmp_path):
    rows = [{"sentence": f"sentence {i}", "label": i % 2} for i in range(20)]
    train = write_rows(tmp_path / "train.csv", rows)
    dataset, _ = load_task_dataset("sst2", train_file=train, cache_dir=str(tmp_path / "cache"), seed=0)
    assert (len(dataset["train"]), len(dataset["validation"])) == (18, 2)
    assert sorted([*dataset["train"]["idx"], *dataset["validation"]["idx"]]) == list(range(20))
    for split in dataset.values():
        assert all(row["sentence"] == f"sentence {row['idx']}" for row in split)


def test_errors(tmp_path, tiny_sst2_dir):
    with pytest.raises(ValueError, match=r"`task_name` is 'sst3'.*sst2, mrpc"):
        load_task_dataset("sst3")
    with pytest.raises(ValueError, match=r"`data_dir`.*'train.tsv' and 'dev_matched.tsv'"):
        load_task_dataset("mnli", data_dir=tiny_sst2_dir)

    train = write_rows(tmp_path / "train.csv", [{"text": "fine", "label": "positive"}])
    with pytest.raises(ValueError, match=r"`text_columns` is \['sentence'\].*columns are \['text', 'label'\]"):
        load_task_dataset("sst2", train_file=train, validation_file=train)
    with pytest.raises(ValueError, match=r"`label_column` is 'stars'.*columns are \['text', 'label'\]"):
        load_task_dataset("sst2", train_file=train, validation_file=train, text_columns=["text"], label_column="stars")
    with pytest.raises(ValueError, match=r"`text_columns` is None"):
        load_task_dataset(train_file=train, validation_file=train)

    maybe = write_rows(tmp_path / "maybe.csv", [{"sentence1": "a", "sentence2": "b", "label": "maybe"}])
    with pytest.raises(ValueError, match=r"'maybe' of task 'rte' is not one of the label names"):
        load_task_dataset("rte", train_file=maybe, validation_file=maybe, cache_dir=str(tmp_path / "cache"))
    out_of_range = write_rows(tmp_path / "range.csv", [{"sentence": "a", "label": 2}])
    with pytest.raises(ValueError, match=r"an id in \[0, 1\]"):
        load_task_dataset(
            "sst2", train_file=out_of_range, validation_file=out_of_range, cache_dir=str(tmp_path / "cache")
        )

    empty = tmp_path / "empty.csv"
    empty.write_text("sentence,label\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"`train_file` .*empty.csv' holds no rows"):
        load_task_dataset("sst2", train_file=empty, validation_file=train)
    empty_tsv = tmp_path / "empty_sst2"
    empty_tsv.mkdir()
    (empty_tsv / "train.tsv").write_text("sentence\tlabel\n", encoding="utf-8")
    (empty_tsv / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="training split is empty"):
        load_task_dataset("sst2", data_dir=empty_tsv)
    with pytest.raises(ValueError, match="Pass only one data source"):
        load_task_dataset("sst2", data_dir=tiny_sst2_dir, train_file=train)


@pytest.fixture
def tiny_sst2(tiny_sst2_dir):
    return load_task_dataset("sst2", data_dir=tiny_sst2_dir)


def test_tokenize_dataset_is_unpadded(tiny_sst2, tiny_tokenizer):
    dataset, task = tiny_sst2
    tokenized = tokenize_dataset(dataset, tiny_tokenizer, task, max_seq_length=64)
    assert set(tokenized["train"].column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels", "idx"}
    assert tokenized["train"]["labels"] == dataset["train"]["label"]
    assert tokenized["train"]["idx"] == dataset["train"]["idx"]
    lengths = [len(ids) for ids in tokenized["train"]["input_ids"]]
    assert len(set(lengths)) > 1
    first = tokenized["train"][0]
    # "the movie was great fun " -> [CLS] the movie was great fun [SEP]: no [PAD], all attended.
    assert tiny_tokenizer.convert_ids_to_tokens(first["input_ids"]) == [
        "[CLS]",
        "the",
        "movie",
        "was",
        "great",
        "fun",
        "[SEP]",
    ]
    assert first["attention_mask"] == [1] * 7


def test_tokenize_dataset_truncates_pairs(tmp_path, tiny_tokenizer):
    rows = [{"sentence1": "the movie was very good and fun", "sentence2": "the film was great", "label": 0}]
    train = write_rows(tmp_path / "pairs.csv", rows)
    dataset, task = load_task_dataset("rte", train_file=train, validation_file=train, cache_dir=str(tmp_path / "c"))
    tokenized = tokenize_dataset(dataset, tiny_tokenizer, task, max_seq_length=8)
    row = tokenized["validation"][0]
    assert len(row["input_ids"]) == 8
    tokens = tiny_tokenizer.convert_ids_to_tokens(row["input_ids"])
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2 and tokens[-1] == "[SEP]"
    assert row["token_type_ids"][-1] == 1


def test_tokenize_dataset_rejects_too_long_max_seq_length(tiny_sst2, tiny_tokenizer):
    dataset, task = tiny_sst2
    with pytest.raises(ValueError, match="`max_seq_length` is 128, but the tokenizer accepts at most 64"):
        tokenize_dataset(dataset, tiny_tokenizer, task, max_seq_length=128)


def test_any_dataset_folder_through_dataset_name_with_classlabel_names(tmp_path):
    features = Features({"review": Value("string"), "stars": ClassLabel(names=["bad", "ok", "great"])})
    rows = {"review": ["the film is good", "boring", "fine", "love it"], "stars": [2, 0, 1, 2]}
    saved = DatasetDict(train=Dataset.from_dict(rows, features=features),
                        validation=Dataset.from_dict(rows, features=features))
    saved.save_to_disk(str(tmp_path / "reviews"))
    raw, task = load_task_dataset(dataset_name=str(tmp_path / "reviews"), text_columns=["review"],
                                  label_column="stars")
    assert task.name == "custom" and task.label_names == ("bad", "ok", "great")
    assert task.metric_names == ("accuracy", "macro_f1") and raw["train"]["label"] == [2, 0, 1, 2]
    # A folder of data files without a validation split: 10% of train held out, as for a train file alone.
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\n" + "".join(f"row {i},{i % 3}\n" for i in range(20)))
    raw, task = load_task_dataset(dataset_name=str(folder))
    assert (len(raw["train"]), len(raw["validation"])) == (18, 2) and task.label_names == ("0", "1", "2")
    with pytest.raises(ValueError, match=r"`dataset_name` '.*nowhere' \(`dataset_config_name` None\) does not load"):
        load_task_dataset(dataset_name=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"`data_dir` and `dataset_name` are all set"):
        load_task_dataset("sst2", data_dir=str(tmp_path), dataset_name=str(folder))


def test_macro_f1_matches_scikit_learn():
    from sklearn.metrics import f1_score

    from hf_distill.data.metrics import macro_f1

    rng = np.random.default_rng(0)
    predictions, references = rng.integers(0, 4, 50), rng.integers(0, 3, 50)
    assert macro_f1(predictions, references) == pytest.approx(f1_score(references, predictions, average="macro"))
