"""The backward stage on tiny hand-built loops: a step too small to move the sampled weights, and gradients that
are exactly zero."""

from __future__ import annotations

import pytest
from helpers import findings_at


def _loop_net(head_scale: float):
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 8)
            self.body = torch.nn.Linear(8, 16)
            self.head = torch.nn.Linear(16, 2)

        def forward(self, input_ids, labels=None):
            logits = self.head(torch.tanh(self.body(self.emb(input_ids).mean(1))))
            return {"loss": F.cross_entropy(logits, labels) if labels is not None else None, "logits": logits}

    torch.manual_seed(0)
    model = Net()
    with torch.no_grad():  # a head of large weights: a step far below their rounding (float32 keeps 7 digits)
        model.head.weight.mul_(head_scale)
        model.head.bias.fill_(head_scale)
    rows = [{"input_ids": torch.randint(0, 10, (5,)), "labels": torch.tensor(i % 2)} for i in range(8)]
    return model, DataLoader(rows, batch_size=4)


@pytest.mark.parametrize("lr, moves", [(1e-6, True), (0.0, False)])
def test_a_sampled_step_that_moves_nothing_is_checked_on_every_weight(lr, moves):
    """The backward stage steps a sample of each group (the smallest vector and matrix: here the head's). When
    that sample does not move, every weight steps before FTD503 is said: the body's small weights move at a rate
    whose steps round away on the head's."""
    import torch

    import ftdoctor

    model, loader = _loop_net(1e4)
    report = ftdoctor.preflight(
        model=model,
        dataloader=loader,
        optimizer=torch.optim.SGD(model.parameters(), lr=lr),
        stages=["forward", "backward"],
        raise_on_error=False,
    )
    assert bool(findings_at(report, "backward", "FTD503")) is not moves, report.stage("backward")
    assert report.stage("backward").evidence["moved"] >= (1 if moves else 0)


def test_a_gradient_that_is_exactly_zero_is_not_a_cut_graph():
    """Parameters in the graph whose gradient is zero for this batch (units a ReLU never lets through; a bias the
    softmax over multiple-choice logits cancels) are not cut off from the loss: no FTD501/FTD506."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    import ftdoctor

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 8)
            self.dead = torch.nn.Linear(8, 4)
            torch.nn.init.constant_(self.dead.bias, -1e3)  # its units never fire on these inputs
            self.head = torch.nn.Linear(12, 2)

        def forward(self, input_ids, labels=None):
            h = self.emb(input_ids).mean(1)
            logits = self.head(torch.cat([h, torch.relu(self.dead(h))], -1))
            return {"loss": F.cross_entropy(logits, labels) if labels is not None else None, "logits": logits}

    torch.manual_seed(0)
    model = Net()
    rows = [{"input_ids": torch.randint(0, 10, (5,)), "labels": torch.tensor(i % 2)} for i in range(8)]
    loader = DataLoader(rows, batch_size=4)
    report = ftdoctor.preflight(
        model=model,
        dataloader=loader,
        optimizer=torch.optim.AdamW(model.parameters()),
        stages=["forward", "backward"],
        raise_on_error=False,
    )
    assert not findings_at(report, "backward"), findings_at(report, "backward")
    assert report.stage("backward").status == "pass"
