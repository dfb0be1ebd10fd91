"""Live progress: a long stage tells what it is doing and about how long it has left, through the child process
to whoever shows it."""

from __future__ import annotations

from ftdoctor.core import progress


def test_step_estimates_the_time_left_and_respects_a_limit(monkeypatch):
    shown = []
    clock = iter([0.0, 3.0, 3.1, 6.0, 9.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    progress.set_sink(lambda stage, text: shown.append((stage, text)))
    try:
        progress.begin("overfit")  # t = 0
        progress.step(10, 30, "step 10/30")  # t = 3: 3 s for 10, 20 to go -> about 6 s
        progress.step(11, 30, "step 11/30")  # t = 3.1: too soon after the last update, not sent
        progress.step(20, 30, "step 20/30", seconds_left=1.2)  # t = 6: 3 s by the rate, the limit says 1
    finally:
        progress.set_sink(None)
    assert shown == [("overfit", "step 10/30 · about 6 s left"), ("overfit", "step 20/30 · about 1 s left")]


def test_without_a_sink_a_step_does_nothing():
    progress.set_sink(None)
    progress.begin("overfit")
    progress.step(1, 2, "x")  # no error, nothing to send to
