"""The loop checks on hand-built records of what a loop's forward saw."""

from __future__ import annotations


def test_batch_on_another_device_is_reported():
    """The device check reads what the forward hook saw (a fake at that boundary: no second device here)."""
    from types import SimpleNamespace

    from ftdoctor.capture import LoopRecord
    from ftdoctor.checks.loop import loop_forward_conditions

    rec = LoopRecord(model_training=True, input_devices=["cpu"], param_device="cuda:0")
    pipeline = SimpleNamespace(capture=None)
    (f,) = loop_forward_conditions(rec, pipeline)
    assert f.code == "FTD411" and "v.to(device)" in f.fix
    assert not loop_forward_conditions(
        LoopRecord(model_training=True, input_devices=["cuda:0"], param_device="cuda:0"), pipeline
    )
