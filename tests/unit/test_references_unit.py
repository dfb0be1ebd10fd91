"""The reference pipelines' registry and the task datasets' words, without running a pipeline."""

from __future__ import annotations

from ftdoctor import references

TASKS = list(references.TASKS)


def test_one_reference_per_task():
    from ftdoctor.engine.pipeline import TASKS as REPORT_TASKS

    assert tuple(TASKS) == REPORT_TASKS
    for task in TASKS:
        assert references.get(task).source().lstrip().startswith('"""')


def test_task_fixtures_stay_inside_the_tokenizer_vocabulary():
    """The task datasets reuse the corpus words, so the fixture tokenizers (and their caches) are unchanged, and
    the NER set holds words that split into several WordPiece pieces."""
    from ftdoctor.fixtures import _corpus

    vocab = set(_corpus.wordpiece_vocab())

    def strings(x):
        if isinstance(x, str):
            yield x
        elif isinstance(x, dict):
            for v in x.values():
                yield from strings(v)
        elif isinstance(x, list):
            for v in x:
                yield from strings(v)

    for name, splits in _corpus.TASK_SPLITS.items():
        for split in splits:
            for row in _corpus.rows(name, split):
                for key, value in row.items():
                    if key in ("id", "title"):
                        continue
                    words = {w for s in strings(value) for w in _corpus.words(s)}
                    assert words <= vocab | set(_corpus.SPLIT_WORDS), (name, words - vocab)
    ner_words = {w.lower() for row in _corpus.rows("ner", "train") for w in row["tokens"]}
    assert {"spokeswoman", "infrastructure"} <= ner_words & set(_corpus.SPLIT_WORDS)
