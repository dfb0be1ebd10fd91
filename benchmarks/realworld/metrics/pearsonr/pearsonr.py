"""Pearson correlation, as the hub's `evaluate` "pearsonr" module computes it: a local stand-in for the stand-in hub."""

import datasets
import evaluate


class Pearsonr(evaluate.Metric):
    def _info(self):
        multilabel = {
            "predictions": datasets.Sequence(datasets.Value("float")),
            "references": datasets.Sequence(datasets.Value("float")),
        }
        plain = {"predictions": datasets.Value("float"), "references": datasets.Value("float")}
        return evaluate.MetricInfo(
            description="Pearson correlation",
            citation="",
            inputs_description="",
            features=datasets.Features(multilabel if self.config_name == "multilabel" else plain),
        )

    def _compute(self, predictions, references, return_pvalue=False):
        from scipy.stats import pearsonr

        r, p = pearsonr(references, predictions)
        return {"pearsonr": float(r), "p-value": float(p)} if return_pvalue else {"pearsonr": float(r)}
