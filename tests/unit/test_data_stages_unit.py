"""Counts the data stages make, on hand-built datasets."""

from __future__ import annotations


def test_token_ids_beyond_the_embeddings_are_counted_in_arrow_and_in_python():
    """FTD207's count: the same answer from the Arrow path (plain and one-sequence-per-choice columns) and from the
    row-by-row path a formatted dataset takes, bounded by the rows asked for."""
    from datasets import Dataset

    from ftdoctor.facts import datasets as data

    rows = [[1, 2, 3], [4, 99, 5], [100, 6], [7]]
    flat = Dataset.from_dict({"input_ids": rows})
    assert data.values_at_least(flat, "input_ids", 99) == (2, 100)
    assert data.values_at_least(flat, "input_ids", 99, limit=2) == (1, 99)
    assert data.values_at_least(flat, "input_ids", 101) == (0, None)
    choices = Dataset.from_dict({"input_ids": [[r, [0]] for r in rows]})
    assert data.values_at_least(choices, "input_ids", 4) == (6, 100)
    torch_formatted = flat.with_format("torch")
    assert data.values_at_least(torch_formatted, "input_ids", 99) == (2, 100)
    assert data.values_at_least([{"input_ids": r} for r in rows], "input_ids", 5) == (5, 100)
