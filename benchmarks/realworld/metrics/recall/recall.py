"""Recall, as the hub's `evaluate` "recall" module computes it: a local stand-in for the stand-in hub."""

import datasets
import evaluate


class Recall(evaluate.Metric):
    def _info(self):
        multilabel = {
            "predictions": datasets.Sequence(datasets.Value("int64")),
            "references": datasets.Sequence(datasets.Value("int64")),
        }
        plain = {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
        return evaluate.MetricInfo(
            description="Recall",
            citation="",
            inputs_description="",
            features=datasets.Features(multilabel if self.config_name == "multilabel" else plain),
        )

    def _compute(
        self,
        predictions,
        references,
        labels=None,
        pos_label=1,
        average="binary",
        sample_weight=None,
        zero_division="warn",
    ):
        from sklearn.metrics import recall_score

        score = recall_score(
            references,
            predictions,
            labels=labels,
            pos_label=pos_label,
            average=average,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
        return {"recall": score.tolist() if average is None else float(score)}
