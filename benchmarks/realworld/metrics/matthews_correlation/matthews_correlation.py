"""Matthews correlation, as the hub's `evaluate` "matthews_correlation" module computes it: a local stand-in for the stand-in hub."""

import datasets
import evaluate


class MatthewsCorrelation(evaluate.Metric):
    def _info(self):
        multilabel = {
            "predictions": datasets.Sequence(datasets.Value("int64")),
            "references": datasets.Sequence(datasets.Value("int64")),
        }
        plain = {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
        return evaluate.MetricInfo(
            description="Matthews correlation",
            citation="",
            inputs_description="",
            features=datasets.Features(multilabel if self.config_name == "multilabel" else plain),
        )

    def _compute(self, predictions, references, sample_weight=None, average=None):
        from sklearn.metrics import matthews_corrcoef

        return {"matthews_correlation": float(matthews_corrcoef(references, predictions, sample_weight=sample_weight))}
