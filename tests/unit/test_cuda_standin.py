"""The CUDA stand-in (ftdoctor.runtime.cuda_standin): where torch has no GPU, a script's moves and allocations that
name CUDA land on the CPU; nothing else changes, and everything is put back."""

from __future__ import annotations

import pytest
import torch

from ftdoctor.runtime.cuda_standin import CudaStandIn, asked_for_missing_cuda, is_cuda

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the stand-in is for machines without a GPU")


@pytest.fixture
def standin(tmp_path):
    s = CudaStandIn(str(tmp_path))
    s.install(torch)
    try:
        yield s
    finally:
        s.restore()


def test_moves_and_allocations_that_name_cuda_land_on_the_cpu(standin):
    model = torch.nn.Linear(3, 2).cuda()
    x = torch.zeros(4, 3, device="cuda")
    y = torch.tensor([1.0, 2.0], device=torch.device("cuda", 0)).to("cuda:0", non_blocking=True)
    z = torch.ones(2).cuda(0).to(0)
    assert model(x).device.type == "cpu" and y.device.type == "cpu" and z.device.type == "cpu"
    model.to(torch.device("cuda"))
    torch.cuda.synchronize()
    torch.cuda.set_device(0)
    assert torch.cuda.memory_allocated() == 0 and torch.cuda.max_memory_allocated() == 0
    assert standin.facts()["redirected"] == 7


def test_nothing_else_changes(standin):
    t = torch.arange(6).reshape(2, 3)
    assert t.to(torch.float16).dtype == torch.float16 and t.to("cpu") is t
    assert t.to(torch.zeros(1, dtype=torch.float64)).dtype == torch.float64
    assert torch.nn.Linear(2, 2).to(torch.bfloat16).weight.dtype == torch.bfloat16
    with torch.device("meta"):
        assert torch.tensor([1, 2]).device.type == "meta"  # the device context still sees its constructors
    assert torch.cuda.is_available() is False and standin.facts() is None


def test_restore_puts_torch_back(tmp_path):
    before = (torch.Tensor.to, torch.nn.Module.to, torch.zeros, torch.cuda.synchronize)
    s = CudaStandIn(str(tmp_path))
    s.install(torch)
    assert torch.zeros is not before[2]
    s.restore()
    assert (torch.Tensor.to, torch.nn.Module.to, torch.zeros, torch.cuda.synchronize) == before
    with pytest.raises((AssertionError, RuntimeError)):
        torch.zeros(1, device="cuda")


def test_the_first_place_the_script_asked_is_its_own_line(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("import torch\nx = torch.ones(2)\ny = x.cuda()\n")
    s = CudaStandIn(str(tmp_path))
    s.install(torch)
    try:
        exec(compile(script.read_text(), str(script), "exec"), {})
    finally:
        s.restore()
    assert s.facts() == {"redirected": 1, "file": str(script), "line": 3}


def test_what_torch_raises_without_cuda_is_recognised():
    with pytest.raises(Exception) as err:
        torch.zeros(1).cuda()
    assert asked_for_missing_cuda(err.value)
    assert not asked_for_missing_cuda(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    chained = ValueError("could not place the model")
    chained.__cause__ = err.value
    assert asked_for_missing_cuda(chained)


@pytest.mark.parametrize(
    "device, expected",
    [
        ("cuda", True),
        ("cuda:1", True),
        (torch.device("cuda", 0), True),
        (0, True),
        ("cpu", False),
        (torch.device("meta"), False),
        (True, False),
        ("mps", False),
    ],
)
def test_what_names_cuda(device, expected):
    assert is_cuda(device) is expected
