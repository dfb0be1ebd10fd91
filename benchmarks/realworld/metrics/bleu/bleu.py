"""BLEU, as the hub's `evaluate` "bleu" module computes it (corpus BLEU over whitespace tokens, up to 4-grams,
brevity penalty): a local stand-in for the stand-in hub, with the same keys."""

import collections
import math

import datasets
import evaluate


class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="BLEU",
            citation="",
            inputs_description="",
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
        )

    def _compute(self, predictions, references, tokenizer=None, max_order=4, smooth=False):
        split = tokenizer or str.split
        references = [[r] if isinstance(r, str) else r for r in references]
        matches, possible = [0] * max_order, [0] * max_order
        pred_len = ref_len = 0
        for pred, refs in zip(predictions, references):
            p, rs = split(pred), [split(r) for r in refs]
            pred_len += len(p)
            ref_len += min((len(r) for r in rs), key=lambda n: (abs(n - len(p)), n))
            for n in range(1, max_order + 1):
                grams = collections.Counter(tuple(p[i : i + n]) for i in range(len(p) - n + 1))
                best = collections.Counter()
                for r in rs:
                    best |= collections.Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
                matches[n - 1] += sum((grams & best).values())
                possible[n - 1] += max(len(p) - n + 1, 0)
        precisions = [((m + 1) / (c + 1)) if smooth else (m / c if c else 0.0) for m, c in zip(matches, possible)]
        geo = math.exp(sum(math.log(x) for x in precisions) / max_order) if min(precisions) > 0 else 0.0
        ratio = pred_len / ref_len if ref_len else 0.0
        bp = 1.0 if ratio > 1.0 else (math.exp(1 - 1 / ratio) if ratio > 0 else 0.0)
        return {
            "bleu": geo * bp,
            "precisions": precisions,
            "brevity_penalty": bp,
            "length_ratio": ratio,
            "translation_length": pred_len,
            "reference_length": ref_len,
        }
