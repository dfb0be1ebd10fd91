"""How the fast budget reduces a batch, and how it says so."""

from __future__ import annotations


def test_the_budget_names_each_reduction_once():
    """A model large for this machine cuts the rows and their length; the report says so once per reduction, with
    the reason, and says nothing for a small model on a batch it runs as configured."""
    import types

    import torch

    from ftdoctor.engine.budget import MAX_ROWS, MIN_TOKENS, decide

    large = torch.nn.Linear(20_000, 20_000, device="meta")  # 400M parameters, no memory
    budget = decide(large, types.SimpleNamespace(per_device_train_batch_size=32))
    assert budget.rows < MAX_ROWS and budget.max_tokens >= MIN_TOKENS
    assert budget.notes == [f"{budget.rows} of the configured 32 rows per batch (a 400M-parameter model on this "
                            "machine)", f"rows longer than {budget.max_tokens} tokens cut to their last "
                            f"{budget.max_tokens}"], budget.notes
    small = decide(torch.nn.Linear(8, 8), types.SimpleNamespace(per_device_train_batch_size=32))
    assert small.notes == [f"{MAX_ROWS} of the configured 32 rows per batch"] and small.max_tokens is None
    assert decide(torch.nn.Linear(8, 8), types.SimpleNamespace(per_device_train_batch_size=4)).notes == []
