"""SQuAD v2 exact match and F1 (unanswerable questions score on the empty answer), as the hub's `evaluate`
"squad_v2" module computes them: a local stand-in for the stand-in hub, with the same keys."""

import collections
import re
import string

import datasets
import evaluate


def _normalize(text):
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(prediction, truth):
    pred, gold = _normalize(prediction).split(), _normalize(truth).split()
    if not pred or not gold:
        return float(pred == gold)
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


class SquadV2(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="SQuAD v2",
            citation="",
            inputs_description="",
            features=datasets.Features(
                {
                    "predictions": {
                        "id": datasets.Value("string"),
                        "prediction_text": datasets.Value("string"),
                        "no_answer_probability": datasets.Value("float32"),
                    },
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": datasets.Sequence(
                            {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
                        ),
                    },
                }
            ),
        )

    def _compute(self, predictions, references, no_answer_threshold=1.0):
        by_id = {p["id"]: p["prediction_text"] for p in predictions}
        scores = {"has": [], "no": []}
        for ref in references:
            pred, truths = by_id.get(ref["id"], ""), ref["answers"]["text"] or [""]
            em = max(float(_normalize(pred) == _normalize(t)) for t in truths)
            f1 = max(_f1(pred, t) for t in truths)
            scores["has" if ref["answers"]["text"] else "no"].append((em, f1))
        every = scores["has"] + scores["no"]
        n = max(len(every), 1)
        out = {
            "exact": 100.0 * sum(e for e, _ in every) / n,
            "f1": 100.0 * sum(f for _, f in every) / n,
            "total": len(every),
        }
        for key, name in (("has", "HasAns"), ("no", "NoAns")):
            if scores[key]:
                k = len(scores[key])
                out.update(
                    {
                        f"{name}_exact": 100.0 * sum(e for e, _ in scores[key]) / k,
                        f"{name}_f1": 100.0 * sum(f for _, f in scores[key]) / k,
                        f"{name}_total": k,
                    }
                )
        out.update({"best_exact": out["exact"], "best_exact_thresh": 0.0, "best_f1": out["f1"], "best_f1_thresh": 0.0})
        return out
