"""How the fast budget reduces a batch (the same on a busy machine as on an idle one), and how it says so."""

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
    assert budget.notes == [
        f"{budget.rows} of the configured 32 rows per batch (a 400M-parameter model)",
        f"rows longer than {budget.max_tokens} tokens cut to their last {budget.max_tokens}",
    ], budget.notes
    small = decide(torch.nn.Linear(8, 8), types.SimpleNamespace(per_device_train_batch_size=32))
    assert small.notes == [f"{MAX_ROWS} of the configured 32 rows per batch"] and small.max_tokens is None
    assert decide(torch.nn.Linear(8, 8), types.SimpleNamespace(per_device_train_batch_size=4)).notes == []


def test_the_budget_is_the_same_under_any_load(monkeypatch):
    """Decided from the model's size and the kind of device, never from a measurement: a busy machine (here, a
    clock that says every matrix product takes a second) decides the same rows and tokens as an idle one."""
    import time
    import types

    import torch

    from ftdoctor.engine.budget import decide

    model = torch.nn.Linear(4_000, 4_000, device="meta")  # 16M parameters
    args = types.SimpleNamespace(per_device_train_batch_size=16)
    idle = decide(model, args)
    ticks = iter(range(10**6))
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))
    busy = decide(model, args)
    assert (busy.rows, busy.max_tokens, busy.notes) == (idle.rows, idle.max_tokens, idle.notes)
    tiny = decide(torch.nn.Linear(300, 300), args)  # a 90k-parameter fixture model runs its 8 rows whole
    assert (tiny.rows, tiny.max_tokens) == (8, None)
