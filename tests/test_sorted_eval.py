"""Length-sorted evaluation and prediction (`hf_distill.sorted_eval`): the sampler's order, and predictions, labels and
metrics equal to Trainer's dataset-order pass, row for row, for sequence and token classification."""

import datasets
import numpy as np
import pytest
import torch
from conftest import (
    NO_DROPOUT,
    TINY_VOCAB,
    make_tiny_bert,
    make_tiny_bert_config,
    make_tiny_dataset,
    make_tiny_tokenizer,
)
from transformers import BertForTokenClassification, DataCollatorForTokenClassification, DataCollatorWithPadding

from hf_distill import DistillationConfig, DistillationTrainer
from hf_distill.classifier_trainer import ClassifierTrainer
from hf_distill.data import CONLL2003_TASK, build_compute_metrics, get_task
from hf_distill.sorted_eval import LengthSortedSampler, row_lengths


def config(tmp_path, **kwargs):
    return DistillationConfig(output_dir=str(tmp_path / "out"), method="kd", per_device_eval_batch_size=4,
                              report_to=[], use_cpu=True, save_strategy="no", **kwargs)


def predict_both_ways(trainer, dataset):
    """`trainer.predict` length-sorted, then in dataset order; the sampler of the sorted pass."""
    sampler = trainer._get_eval_sampler(dataset)
    sorted_output = trainer.predict(dataset)
    trainer.sort_eval_by_length = False
    unsorted_output = trainer.predict(dataset)
    trainer.sort_eval_by_length = True
    return sorted_output, unsorted_output, sampler


def test_the_sampler_reads_rows_longest_first_and_restores_dataset_order():
    sampler = LengthSortedSampler(np.array([3, 7, 2, 7, 5]))
    assert list(sampler) == [1, 3, 4, 0, 2]  # ties (the two 7s) in dataset order
    in_sampler_order = np.array([10, 30, 40, 0, 20])  # row k's value is 10 * k
    nested = {"logits": (in_sampler_order, in_sampler_order[:, None])}
    restored = sampler.restore(nested)
    np.testing.assert_array_equal(restored["logits"][0], [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(restored["logits"][1][:, 0], [0, 10, 20, 30, 40])
    assert sampler.restore(None) is None


def test_row_lengths_of_a_dataset_and_of_a_list_of_rows():
    data = make_tiny_dataset(8)
    expected = [len(ids) for ids in data["input_ids"]]
    np.testing.assert_array_equal(row_lengths(data.select([3, 1, 2, 0, 4, 5, 6, 7])),
                                  [expected[i] for i in (3, 1, 2, 0, 4, 5, 6, 7)])
    np.testing.assert_array_equal(row_lengths([{"input_ids": [1, 2]}, {"input_ids": [1]}]), [2, 1])
    assert row_lengths(data.remove_columns("input_ids")) is None


@pytest.mark.parametrize("rows", [16, 18])  # batches of 4: full ones, or a short last batch
def test_sorted_prediction_gives_the_dataset_order_results_of_the_student(tmp_path, rows):
    data = make_tiny_dataset(rows)
    trainer = DistillationTrainer(
        model=make_tiny_bert(seed=1, num_hidden_layers=2, **NO_DROPOUT),
        teacher_model=make_tiny_bert(seed=0, **NO_DROPOUT),
        args=config(tmp_path),
        eval_dataset=data,
        data_collator=DataCollatorWithPadding(make_tiny_tokenizer()),
        compute_metrics=build_compute_metrics(get_task("sst2")),
    )
    sorted_output, unsorted_output, sampler = predict_both_ways(trainer, data)
    assert isinstance(sampler, LengthSortedSampler) and list(sampler) != list(range(len(data)))
    lengths = np.array([len(ids) for ids in data["input_ids"]])
    assert (np.diff(lengths[list(sampler)]) <= 0).all()
    np.testing.assert_allclose(sorted_output.predictions, unsorted_output.predictions, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(sorted_output.label_ids, data["labels"])
    np.testing.assert_array_equal(unsorted_output.label_ids, data["labels"])
    assert sorted_output.metrics["test_accuracy"] == unsorted_output.metrics["test_accuracy"]
    if rows % 4 == 0:  # a mean of batch means, equal to the unsorted one when no batch is short
        assert sorted_output.metrics["test_loss"] == pytest.approx(unsorted_output.metrics["test_loss"], rel=1e-5)


def test_sorted_prediction_of_a_tagger_lines_up_ragged_per_token_logits(tmp_path):
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 30, size=11)
    rows = {"input_ids": [], "labels": []}
    for length in lengths:
        rows["input_ids"].append([2, *rng.integers(5, len(TINY_VOCAB), size=length - 2).tolist(), 3])
        rows["labels"].append([-100, *rng.integers(0, 9, size=length - 2).tolist(), -100])
    data = datasets.Dataset.from_dict(rows)
    torch.manual_seed(0)
    tagger = BertForTokenClassification(make_tiny_bert_config(num_labels=9, **NO_DROPOUT)).eval()
    trainer = ClassifierTrainer(
        model=tagger, args=config(tmp_path), eval_dataset=data,
        data_collator=DataCollatorForTokenClassification(make_tiny_tokenizer()),
        compute_metrics=build_compute_metrics(CONLL2003_TASK),
    )
    sorted_output, unsorted_output, sampler = predict_both_ways(trainer, data)
    assert list(sampler) != list(range(len(data)))
    # Both are padded to the longest row; -100 marks the padding in both label arrays alike.
    assert sorted_output.predictions.shape == unsorted_output.predictions.shape == (len(data), max(lengths), 9)
    np.testing.assert_array_equal(sorted_output.label_ids, unsorted_output.label_ids)
    for k, length in enumerate(lengths):  # past a row's length: pad-token outputs or -100, by batch
        np.testing.assert_allclose(sorted_output.predictions[k, :length], unsorted_output.predictions[k, :length],
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(sorted_output.label_ids[k, :length], data["labels"][k])
    for name in ("test_f1", "test_accuracy", "test_precision", "test_recall"):
        assert sorted_output.metrics[name] == pytest.approx(unsorted_output.metrics[name])


def test_drop_last_and_per_batch_results_keep_dataset_order(tmp_path):
    data = make_tiny_dataset(8)
    for kwargs in ({"dataloader_drop_last": True}, {"eval_do_concat_batches": False},
                   {"include_for_metrics": ["loss"]}):
        trainer = ClassifierTrainer(model=make_tiny_bert(), args=config(tmp_path, **kwargs))
        assert not isinstance(trainer._get_eval_sampler(data), LengthSortedSampler)
