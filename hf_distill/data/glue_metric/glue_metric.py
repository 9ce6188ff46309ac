"""GLUE metric as an `evaluate` module, shipped with hf_distill so it loads without the network.

```python
metric = evaluate.load("path/to/hf_distill/data/glue_metric", "mrpc")  # or hf_distill.data.load_glue_metric("mrpc")
metric.compute(predictions=[1, 0, 1], references=[1, 1, 1])  # {"f1": 0.8, "accuracy": 0.666...}
```
The config name is a GLUE task ("sst2", "mrpc", "cola", "stsb", ...; "SST-2" spellings work too). The numbers come
from `hf_distill.data.metrics.compute_glue_metrics`, the same code the `Trainer` evaluation uses.
"""

import datasets
import evaluate

from hf_distill.data.glue import GLUE_TASKS
from hf_distill.data.metrics import compute_glue_metrics
from hf_distill.data.task_spec import normalize_task_name

_DESCRIPTION = """GLUE metrics per task: accuracy (SST-2, MNLI, QNLI, RTE, WNLI), F1 of class 1 and accuracy (MRPC,
QQP), Matthews correlation (CoLA), Pearson and Spearman correlation (STS-B)."""

_CITATION = """@inproceedings{wang2018glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  booktitle={Proceedings of the 2018 EMNLP Workshop BlackboxNLP},
  year={2018}
}"""

_INPUTS_DESCRIPTION = """
Args:
    predictions: predicted label ids, or predicted scores for stsb.
    references: gold label ids, or gold scores for stsb.
Returns:
    the task's metrics, e.g. {"f1": ..., "accuracy": ...} for mrpc or {"pearson": ..., "spearmanr": ...} for stsb.
"""


def glue_task(config_name: str):
    task = GLUE_TASKS.get(normalize_task_name(config_name))
    if task is None:
        raise ValueError(
            f"`task_name` is {config_name!r}, which is not a GLUE task. Use one of {', '.join(GLUE_TASKS)}."
        )
    return task


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS_DESCRIPTION)
class GlueMetric(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        task = glue_task(self.config_name)
        # float64 scores so the module returns exactly what compute_glue_metrics returns on the same inputs.
        value = datasets.Value("float64" if task.is_regression else "int64")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS_DESCRIPTION,
            features=datasets.Features({"predictions": value, "references": value}),
            reference_urls=["https://gluebenchmark.com/"],
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        return compute_glue_metrics(glue_task(self.config_name).metric_names, predictions, references)
