"""Facts about the pipeline's data and model that several stages need: label columns, classes, lengths."""

from __future__ import annotations

from collections import Counter
from typing import Any

LABEL_KEYS = ("labels", "label", "label_ids")
MAX_SCAN_ROWS = 200_000  # whole-column scans (labels, lengths) stop here on very large datasets
SCAN_TOKENS = 1_000_000  # scans that read every token stop here too (their cost is per token, not per row)


def is_hf_dataset(ds: Any) -> bool:
    """A map-style `datasets.Dataset` (rows by index, a length); a streaming one is not."""
    try:
        return (
            type(ds).__module__.startswith("datasets.")
            and hasattr(ds, "column_names")
            and hasattr(ds, "select")
            and safe_len(ds) is not None
        )
    except Exception:
        return False


def is_streaming(ds: Any) -> bool:
    return type(ds).__name__ == "IterableDataset" or (
        safe_len(ds) is None and hasattr(ds, "__iter__") and not isinstance(ds, (list, tuple, dict))
    )


STREAM_SAMPLE = 1000  # rows read from a streaming dataset to stand for it


def materialize(rows: list[dict], features: Any = None) -> Any:
    """A small map-style dataset of rows drawn from a streaming one, for the checks that scan a dataset."""
    from datasets import Dataset

    try:
        return Dataset.from_list(rows, features=features)
    except Exception:
        return Dataset.from_list(rows)


def label_key(mapping_or_columns: Any, label_names: Any = ()) -> str | None:
    """The key the labels travel under: the target's label_names first, then the usual names."""
    keys = list(mapping_or_columns)
    names = list(label_names or ()) + list(LABEL_KEYS)
    return next((k for k in names if k in keys), None)


def columns_of(ds: Any) -> list[str]:
    """The column names of a dataset, or the keys of its first row for a list of row dicts (a loop's batch)."""
    if is_hf_dataset(ds):
        return list(ds.column_names or [])
    if isinstance(ds, list) and ds and isinstance(ds[0], dict):
        return list(ds[0])
    return []


def safe_len(obj: Any) -> int | None:
    """``len(obj)``, or None for what has no length (a streaming dataset, a generator) or fails to say."""
    if isinstance(obj, type):
        return None
    try:
        return len(obj)
    except Exception:
        return None


def class_label(ds: Any, column: str) -> Any:
    """The ClassLabel feature of ``column`` (also inside a Sequence, for token classification), or None."""
    feats = getattr(ds, "features", None)
    if not feats or column not in feats:
        return None
    feat = feats[column]
    for _ in range(3):
        if type(feat).__name__ == "ClassLabel":
            return feat
        feat = getattr(feat, "feature", None)
        if isinstance(feat, list) and feat:
            feat = feat[0]
        if feat is None:
            return None
    return None


def column_values(ds: Any, column: str, limit: int = MAX_SCAN_ROWS) -> list[Any]:
    """A column as a flat Python list (nested sequences flattened), read through Arrow where possible."""
    if is_hf_dataset(ds):
        n = min(len(ds), limit)
        flat_arrow = _arrow_flat(ds, column, n)
        if flat_arrow is not None:
            return flat_arrow
        sub = ds if n == len(ds) else ds.select(range(n))
        values = sub.with_format(None)[column]
    else:
        values = [ds[i][column] for i in range(min(len(ds), 2000))]
    flat: list[Any] = []
    for v in values:
        flat.extend(flatten(v))
    return flat


def row_tokens(ds: Any, column: str, n: int) -> list[list[Any]]:
    """The first ``n`` rows of a token column, each row's tokens as one flat list (a multiple-choice row's choices
    joined), read through Arrow where possible."""
    try:
        col = ds.with_format("arrow")[:n].column(column)
        if _arrow_list(col.type):
            if _arrow_list(col.type.value_type):  # one sequence per choice: join them
                return [flatten(r) for r in col.to_pylist()]
            return col.to_pylist()
    except Exception:
        pass
    return [flatten(r) for r in ds.select(range(n)).with_format(None)[column]]


def _arrow_list(arrow_type: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type)


def rows_within(ds: Any, rows: int, tokens: int, column: str = "input_ids") -> int:
    """How many of the first ``rows`` rows of ``ds`` hold at most ``tokens`` tokens of ``column`` together (at least
    one): a scan's row limit for a cost bounded in tokens."""
    return prefix_within(sequence_lengths(ds, column, rows), tokens)


def prefix_within(lengths: list[int], tokens: int) -> int:
    """How many of the first ``lengths`` add up to at most ``tokens`` (at least one, when there are any)."""
    total = 0
    for k, n in enumerate(lengths):
        total += n
        if total > tokens:
            return max(k, 1)
    return len(lengths)


def values_at_least(ds: Any, column: str, bound: int, limit: int = MAX_SCAN_ROWS) -> tuple[int, Any]:
    """How many values of ``column`` in its first ``limit`` rows (nested sequences flattened) are >= ``bound``, and
    the largest of them (None when there are none). Counted in Arrow where the column is plain Arrow data: no Python
    object per token, so 20k rows of 512 tokens cost milliseconds."""
    try:
        import pyarrow.compute as pc

        col = _arrow_column(ds, column, limit)
        over = pc.filter(col, pc.greater_equal(col, bound))
        return len(over), (pc.max(over).as_py() if len(over) else None)
    except Exception:  # not a datasets.Dataset, an extension type: the Python way below
        over = [v for v in column_values(ds, column, limit) if isinstance(v, (int, float)) and v >= bound]
        return len(over), (max(over) if over else None)


def value_counts(ds: Any, column: str, limit: int = MAX_SCAN_ROWS) -> tuple[Counter, int]:
    """Every value of ``column`` in its first ``limit`` rows (nested sequences flattened; None for a missing one)
    with its count, and how many values were read; counted in Arrow where possible. Unhashable values are left
    out."""
    try:
        import pyarrow.compute as pc

        col = _arrow_column(ds, column, limit)
        counts = pc.value_counts(col)
        return Counter(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))), len(col)
    except Exception:  # not a datasets.Dataset, values Arrow cannot count (structs): the Python way below
        values = column_values(ds, column, limit)
        return Counter(v for v in values if getattr(type(v), "__hash__", None) is not None), len(values)


def _arrow_column(ds: Any, column: str, limit: int) -> Any:
    """The first ``limit`` rows of a datasets.Dataset's ``column`` as one flat Arrow array (nested lists
    flattened); raises for anything else."""
    import pyarrow.compute as pc

    if not is_hf_dataset(ds):
        raise TypeError("not a datasets.Dataset")
    col = ds.with_format("arrow")[: min(len(ds), limit)].column(column)
    while _arrow_list(col.type):
        col = pc.list_flatten(col)
    return col


def _arrow_flat(ds: Any, column: str, n: int) -> list[Any] | None:
    """The first ``n`` rows of ``column`` flattened in Arrow (no Python object per row until the end: a 400k-row
    token column takes milliseconds, not seconds); None when the column is not plain Arrow data."""
    try:
        return _arrow_column(ds, column, n).to_pylist()
    except Exception:  # an extension type, a formatted dataset: the row-by-row way below
        return None


def flatten(value: Any) -> list[Any]:
    """Every scalar of a value, however deeply nested (a multiple-choice row holds one sequence per choice)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        out: list[Any] = []
        for v in value:
            out.extend(flatten(v))
        return out
    return [value]


def token_length(value: Any) -> int:
    """The length of a sequence of tokens; of the longest one for a row of several (multiple choice)."""
    if hasattr(value, "shape") and getattr(value, "ndim", 0) >= 1:
        return int(value.shape[-1])
    if isinstance(value, (list, tuple)):
        if (value and isinstance(value[0], (list, tuple))) or (
            value and hasattr(value[0], "shape") and getattr(value[0], "ndim", 0) >= 1
        ):
            return max(token_length(v) for v in value)
        return len(value)
    return 0


def sequence_lengths(ds: Any, column: str = "input_ids", limit: int = MAX_SCAN_ROWS) -> list[int]:
    """Length of ``column`` in each row (Arrow list lengths; no Python objects per token)."""
    if is_hf_dataset(ds):
        import pyarrow as pa
        import pyarrow.compute as pc

        n = min(len(ds), limit)
        table = ds.with_format("arrow")[:n]
        col = table.column(column)
        if pa.types.is_list(col.type) and not pa.types.is_list(col.type.value_type):
            try:
                return [v or 0 for v in pc.list_value_length(col).to_pylist()]
            except Exception:
                pass
        return [token_length(v) if v is not None else 0 for v in col.to_pylist()]
    return [token_length(ds[i][column]) for i in range(min(len(ds), 2000))]


def rows_from_batch(batch: dict) -> list[dict] | None:
    """The rows of a collated batch, padding removed where an attention mask tells it: what the loop's batch was
    made of, for a loop that has no DataLoader to read rows from."""
    import torch

    tensors = {k: v for k, v in batch.items() if torch.is_tensor(v) and v.dim() >= 1}
    if not tensors:
        return None
    n = next(iter(tensors.values())).shape[0]
    mask = batch.get("attention_mask")
    mask = mask if torch.is_tensor(mask) and mask.dim() == 2 and mask.shape[0] == n else None
    rows = []
    for i in range(n):
        keep = mask[i].bool() if mask is not None else None
        row = {}
        for k, v in tensors.items():
            if v.shape[0] != n:
                continue
            value = v[i]
            if keep is not None and value.dim() >= 1 and value.shape[0] == keep.shape[0]:
                value = value[keep]
            row[k] = value.tolist()
        rows.append(row)
    return rows


def pad_rows(rows: list[dict], pad_id: int = 0) -> dict:
    """ftdoctor's own collator, for a loop whose batches are built by its own code: right-pad each sequence key
    (labels with -100, masks with 0, ids with ``pad_id``) and stack."""
    import torch

    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if all(isinstance(v, (int, float, bool)) for v in values):
            out[key] = torch.tensor(values)
            continue
        seqs = [torch.as_tensor(v) for v in values]
        if all(s.dim() == 0 for s in seqs):
            out[key] = torch.stack(seqs)
            continue
        longest = max(s.shape[0] for s in seqs)
        fill = -100 if "label" in key else (0 if "mask" in key or "type" in key else pad_id)
        out[key] = torch.stack([torch.cat([s, s.new_full((longest - s.shape[0], *s.shape[1:]), fill)]) for s in seqs])
    return out


def cut_row(row: dict, max_tokens: int | None) -> dict:
    """A row cut to ``max_tokens`` tokens ending at its last real one (where the answer and the end-of-sequence
    token are; a row padded to a fixed length keeps its text, not its padding), its token-aligned columns together;
    other columns stay. Packed rows keep the lengths of the documents left."""
    ids = row.get("input_ids") if isinstance(row, dict) else None
    n = _length(ids)
    if max_tokens is None or n is None or n <= max_tokens:
        return row
    end = max(max_tokens, _real_end(row.get("attention_mask"), n))
    out = {}
    for k, v in row.items():
        if k == "seq_lengths" and isinstance(v, (list, tuple)):
            out[k] = _tail_documents(list(v), max_tokens)
        elif not isinstance(v, (str, bytes, dict)) and _length(v) == n:
            out[k] = v[end - max_tokens : end]
        else:
            out[k] = v
    return out


def _real_end(mask: Any, n: int) -> int:
    """One past the last position the attention mask keeps (``n`` without a mask of the row's length)."""
    if _length(mask) != n:
        return n
    values = mask.tolist() if hasattr(mask, "tolist") else list(mask)
    if any(isinstance(v, (list, tuple)) for v in values):
        return n  # a 2-d mask (one row per token): no padding to read off
    last = next((i for i in range(n - 1, -1, -1) if values[i]), None)
    return n if last is None else last + 1


def _length(value: Any) -> int | None:
    """``len(value)``, or None for what has none (a scalar; a 0-d tensor or array, whose ``__len__`` raises)."""
    try:
        return len(value)
    except TypeError:
        return None


def _tail_documents(lengths: list[int], total: int) -> list[int]:
    out, used = [], 0
    for length in reversed(lengths):
        if used >= total:
            break
        out.append(min(length, total - used))
        used += out[-1]
    return list(reversed(out)) or [total]
